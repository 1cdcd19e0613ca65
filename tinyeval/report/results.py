"""The train-and-eval results file: one schema that the runner writes and every report is rendered from.

`results.json` is the single source of truth: `tinyeval report DIR` re-renders the table, report.md and the
plots from it alone, so a CI job can archive one file and reproduce every view of a run.

Schema (version 1): `ResultsJson` below, each cell a `CellJson` (also written alone as cells/<name>/cell.json).
A task score keeps its per-item correctness (`correct`, 0/1 in item order) so that deltas against the base
model are paired: the same items, so the CI is much tighter than for two independent proportions.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, TypedDict

from tinyeval.errors import TinyevalError

SCHEMA_VERSION = 1


class TaskScoreJson(TypedDict):
    """`TaskScore` in results.json and cell.json."""

    metric: str
    value: float
    stderr: float | None
    n: int
    strict: float | None
    lenient: float | None
    correct: list[int] | None


class CurvePoint(TypedDict, total=False):
    """One training step in `Cell.curve` (GRPO: reward_mean, strict, lenient; SFT: loss, heldout_loss)."""

    step: int
    reward_mean: float
    strict: float
    lenient: float
    loss: float
    heldout_loss: float


class CellJson(TypedDict):
    """`cells/<name>/cell.json` (present only for a finished cell) and each entry of results.json's `cells`."""

    name: str
    method: str
    algo: str | None
    trainable: int
    bytes_bf16: int
    bytes_fp32: int
    status: Literal["planned", "done", "failed"]
    scores: dict[str, TaskScoreJson]
    curve: list[CurvePoint]
    error: str | None


class ResultsJson(TypedDict):
    """train-and-eval's results.json (schema version 1)."""

    version: int
    model: str
    preset: str
    tasks: list[str]
    created: str
    cells: list[CellJson]


@dataclass
class TaskScore:
    """One task's result for one cell; `strict`/`lenient` are set for math tasks (format vs correctness)."""

    metric: str
    value: float
    stderr: float | None = None
    n: int = 0
    strict: float | None = None
    lenient: float | None = None
    correct: list[int] | None = None  # per-item 0/1 of the primary metric, item order fixed by the task


@dataclass
class Cell:
    """One row of the method matrix: how it was trained and what it scored."""

    name: str
    method: str  # base | tinylora | lora-xs | lora | full
    algo: str | None = None  # grpo | sft | None for the untrained base
    trainable: int = 0
    bytes_bf16: int = 0
    bytes_fp32: int = 0
    status: str = "planned"  # planned | done | failed
    scores: dict[str, TaskScore] = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)  # per-step training records (step, reward, ...)
    error: str | None = None

    @property
    def series(self) -> str:
        return "base" if self.algo is None else self.algo.upper()

    def to_dict(self) -> CellJson:
        return CellJson(**asdict(self))

    @classmethod
    def from_dict(cls, raw: dict) -> Cell:
        return cls(**{**raw, "scores": {t: TaskScore(**s) for t, s in raw.get("scores", {}).items()}})


@dataclass
class Results:
    model: str
    preset: str
    tasks: list[str]
    cells: list[Cell]
    created: str = ""
    version: int = SCHEMA_VERSION

    def cell(self, name: str) -> Cell:
        for c in self.cells:
            if c.name == name:
                return c
        raise TinyevalError(f"no cell named '{name}' in results (cells: {', '.join(c.name for c in self.cells)})")

    def to_dict(self) -> ResultsJson:
        return ResultsJson(**asdict(self))

    @classmethod
    def from_dict(cls, raw: dict) -> Results:
        if raw.get("version") != SCHEMA_VERSION:
            raise TinyevalError(f"results.json has schema version {raw.get('version')}, expected {SCHEMA_VERSION}")
        cells = [Cell.from_dict(c) for c in raw["cells"]]
        return cls(model=raw["model"], preset=raw["preset"], tasks=list(raw["tasks"]), cells=cells,
                   created=raw.get("created", ""))


def load(path: str | Path) -> Results:
    """Read results.json (a run directory or the file itself); a clear error when absent or malformed."""
    p = Path(path)
    p = p / "results.json" if p.is_dir() else p
    if not p.is_file():
        raise TinyevalError(f"no results.json at {p}")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
        return Results.from_dict(raw)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise TinyevalError(f"{p}: not a tinyeval results file ({type(e).__name__}: {e})") from None


@dataclass(frozen=True)
class Delta:
    """Score difference against the base model with a 95% confidence interval."""

    value: float
    low: float
    high: float
    paired: bool

    def __str__(self) -> str:
        return f"{self.value * 100:+.1f} [{self.low * 100:+.1f}, {self.high * 100:+.1f}]"


def delta(score: TaskScore, base: TaskScore, z: float = 1.959964) -> Delta | None:
    """score - base, 95% CI: paired over items when both kept per-item results, else independent.

    Paired: the mean of per-item differences d_i, CI mean ± z·sd(d)/√n — the same items were scored, so
    item difficulty cancels. Independent: ± z·√(se₁² + se₂²) from each score's own standard error.
    """
    diff = score.value - base.value
    if score.correct is not None and base.correct is not None and len(score.correct) == len(base.correct) > 1:
        d = [a - b for a, b in zip(score.correct, base.correct)]
        mean = sum(d) / len(d)
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
        half = z * sd / math.sqrt(len(d))
        return Delta(mean, mean - half, mean + half, True)
    if score.stderr is None or base.stderr is None:
        return None
    half = z * math.sqrt(score.stderr**2 + base.stderr**2)
    return Delta(diff, diff - half, diff + half, False)
