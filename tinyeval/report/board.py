"""The live table of `tinyeval train-and-eval`: one row per cell with its state, training step, latest reward,
elapsed time and ETA.

The runner reports each cell's state (`update`); the step, reward and step time are read from the cell's
`train/records.jsonl` at every refresh, so the trainer needs no callback and the table shows exactly what is on
disk. Rendered by `tinyeval.quiet.live` while third-party output goes to each cell's log.txt.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

_STYLE = {"training": "bold yellow", "evaluating": "bold cyan", "done": "green", "cached": "green", "failed": "red"}


@dataclass
class CellRow:
    name: str
    train_dir: Path
    total_steps: int | None  # None: not trained (base), or the dataset size is unknown
    state: str = "queued"  # queued | training | evaluating | done | cached | failed
    started: float | None = None
    finished: float | None = None


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def latest_records(train_dir: Path, last: int = 10) -> list[dict]:
    """The last `last` whole records of `train_dir/records.jsonl` ([] while there are none); a line being
    written (no newline yet) is not read."""
    path = train_dir / "records.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for line in text.split("\n")[:-1][-last:]:  # the part after the last newline is still being written
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class Board:
    """State of every cell of a run; `table()` renders it (called by the live display at each refresh)."""

    def __init__(self, title: str, rows: list[CellRow]) -> None:
        self.title = title
        self.rows = {r.name: r for r in rows}

    def update(self, name: str, state: str) -> None:
        row = self.rows[name]
        row.state = state
        now = time.time()
        if state in ("training", "evaluating") and row.started is None:
            row.started = now
        if state in ("done", "cached", "failed"):
            row.finished = now

    def _progress(self, row: CellRow) -> tuple[str, str, str]:
        """(step, reward, ETA) columns of one cell."""
        total = "?" if row.total_steps is None else str(row.total_steps)
        records = latest_records(row.train_dir)
        if not records:
            return (f"0/{total}" if row.state == "training" else "–"), "–", "–"
        last = records[-1]
        done = last.get("step", 0)
        reward = next((f"{k.removesuffix('_mean')} {last[k]:.3g}" for k in ("reward_mean", "loss") if k in last), "–")
        eta = "–"
        if row.state == "training" and row.total_steps is not None:
            per_step = sum(r.get("step_s", 0.0) for r in records) / len(records)
            eta = _clock(per_step * max(0, row.total_steps - done)) + " + eval"
        return f"{done}/{total}", reward, eta

    def table(self) -> Table:
        t = Table(title=self.title)
        for col in ("cell", "state", "step", "reward", "elapsed", "ETA"):
            t.add_column(col, justify="left" if col in ("cell", "state") else "right")
        now = time.time()
        for row in self.rows.values():
            step, reward, eta = self._progress(row)
            elapsed = None if row.started is None else (row.finished or now) - row.started
            t.add_row(row.name, f"[{_STYLE.get(row.state, 'dim')}]{row.state}[/]", step, reward, _clock(elapsed), eta)
        return t
