"""`tinyeval report`: re-render a run's table, report.md and plots from its results.json alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def render_run(run_dir: Path, fail_under: list[str], as_json: bool) -> None:
    """Write report.md and the plots beside results.json, print the table, and apply the CI gate."""
    from tinyeval.cli import console, emit
    from tinyeval.io import write_text
    from tinyeval.report import plots, render
    from tinyeval.report.results import load

    results = load(run_dir)
    out = run_dir if run_dir.is_dir() else run_dir.parent
    thresholds = [render.parse_threshold(s) for s in fail_under]
    written = plots.render_all(results, out)
    write_text(out / "report.md", render.markdown(results, written))
    if as_json:
        emit(render.rows(results), "", as_json=True)
    else:
        console.print(render.table(results))
        console.print(f"report: {out / 'report.md'}" + (f"; plots: {', '.join(written)}" if written else ""))
    failures = render.gate(results, thresholds)
    for line in failures:
        print(f"FAIL {line}", file=sys.stderr)
    if failures:
        raise typer.Exit(1)


def report(
    run_dir: Annotated[Path, typer.Argument(help="A train-and-eval output directory (or its results.json).")],
    fail_under: Annotated[Optional[list[str]], typer.Option(
        "--fail-under", help="CI gate: TASK=VALUE or CELL/TASK=VALUE (fraction); exit 1 if any score is below.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Re-render a run's table, report.md and PNG plots from results.json; optionally gate CI on scores."""
    render_run(run_dir, fail_under or [], as_json)
