"""The terminal every command shares: one rich console, `emit` for tables or JSON, the shared CLI flags.

Area commands import from here, never from `tinyeval.cli` (which imports them to register them).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tinyeval.io import dumps_json

# Piped output (CI logs) would otherwise wrap every table at rich's fallback width of 80 columns.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)
err_console = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
DataRoot = Annotated[Optional[str], typer.Option("--data-root", help="Data root (default: $TINYEVAL_DATA).")]


def emit(rows: list[dict], title: str, as_json: bool) -> None:
    """Render `rows` as a rich table, or as JSON on stdout for machines (CI jobs, scripts)."""
    if as_json:
        sys.stdout.write(dumps_json(rows) + "\n")
        return
    table = Table(title=title)
    for key in rows[0] if rows else []:
        table.add_column(key, overflow="fold")
    for row in rows:
        table.add_row(*(f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v) for v in row.values()))
    console.print(table)
