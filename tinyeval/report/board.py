"""The live table of `tinyeval train-and-eval`: one row per unit (cell, seed, learning rate) with its state, the
worker running it, its training step, latest reward, elapsed time and ETA, and a count of units queued / running /
done / failed.

Everything is read from disk at each refresh, so units on other processes, or on other Ray nodes sharing the run
directory, need no callback: the state and worker from the unit's status.json (written by `unit.run_job`; a file
left by an earlier run is told apart by its run id), the step, reward and step time from its
`train/records.jsonl`. The runner adds only what no file says: each outcome as it arrives (`finished`), e.g. a
worker killed before it could write "failed". Rendered by `tinyeval.quiet.live`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

_STYLE = {"training": "bold yellow", "scoring": "bold magenta", "evaluating": "bold cyan", "started": "yellow",
          "done": "green", "cached": "green", "failed": "red", "interrupted": "red"}
RUNNING = ("started", "training", "scoring", "evaluating")


@dataclass
class UnitRow:
    key: str  # cell/seed-S/lr-L
    unit_dir: Path
    total_steps: int | None  # None: not trained (base), or the dataset size is unknown
    outcome: str | None = None  # the latest outcome heard: done | cached | failed | interrupted
    heard: float = 0.0  # when it was heard
    seconds: float | None = None


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


def _status(unit_dir: Path) -> dict | None:
    try:
        return json.loads((unit_dir / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class Board:
    """State of every unit of a run; `table()` renders it (called by the live display at each refresh)."""

    def __init__(self, title: str, rows: list[UnitRow], run_id: str, max_rows: int = 30) -> None:
        self.title, self.run_id, self.max_rows = title, run_id, max_rows
        self.rows = {r.key: r for r in rows}

    def finished(self, key: str, outcome: str, seconds: float | None = None) -> None:
        row = self.rows[key]
        row.outcome, row.heard, row.seconds = outcome, time.time(), seconds

    def state(self, row: UnitRow) -> tuple[str, str, float | None]:
        """(state, worker, elapsed seconds) of a unit: a running job's status.json, else the latest outcome."""
        status = _status(row.unit_dir)
        current = status is not None and status.get("run") == self.run_id
        worker = status.get("worker", "–") if current else "–"
        if current and status.get("state") in RUNNING and status.get("since", 0) > row.heard:
            return status["state"], worker, time.time() - status["since"]
        if row.outcome is not None:
            return row.outcome, worker if row.outcome != "cached" else "–", row.seconds
        return "queued", "–", None

    def _progress(self, row: UnitRow, state: str) -> tuple[str, str, str]:
        """(step, reward, ETA) columns of one unit."""
        total = "?" if row.total_steps is None else str(row.total_steps)
        records = latest_records(row.unit_dir / "train")
        if not records:
            return (f"0/{total}" if state == "training" else "–"), "–", "–"
        last = records[-1]
        done = last.get("step", 0)
        reward = next((f"{k.removesuffix('_mean')} {last[k]:.3g}" for k in ("reward_mean", "loss") if k in last), "–")
        eta = "–"
        if state == "training" and row.total_steps is not None:
            per_step = sum(r.get("step_s", 0.0) for r in records) / len(records)
            eta = _clock(per_step * max(0, row.total_steps - done)) + " + eval"
        return f"{done}/{total}", reward, eta

    def table(self) -> Table:
        states = {key: self.state(row) for key, row in self.rows.items()}
        counts: dict[str, int] = {}
        for state, _, _ in states.values():
            group = "running" if state in RUNNING else "done" if state == "cached" else state
            counts[group] = counts.get(group, 0) + 1
        shown = [k for k in self.rows if len(self.rows) <= self.max_rows or states[k][0] not in ("queued", "done",
                                                                                              "cached")]
        caption = " · ".join(f"{counts.get(g, 0)} {g}" for g in ("queued", "running", "done", "failed"))
        if len(shown) < len(self.rows):
            caption += f" (showing the {len(shown)} running or failed of {len(self.rows)} units)"
        t = Table(title=self.title, caption=caption)
        for col in ("unit", "state", "worker", "step", "reward", "elapsed", "ETA"):
            t.add_column(col, justify="left" if col in ("unit", "state", "worker") else "right")
        for key in shown:
            state, worker, elapsed = states[key]
            step, reward, eta = self._progress(self.rows[key], state)
            t.add_row(key, f"[{_STYLE.get(state, 'dim')}]{state}[/]", worker, step, reward, _clock(elapsed), eta)
        return t
