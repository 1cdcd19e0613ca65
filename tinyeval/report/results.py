"""The train-and-eval results file: one schema that the runner writes and every report is rendered from.

`results.json` is the single source of truth: `tinyeval report DIR` re-renders the table, report.md and the
plots from it alone, so a CI job can archive one file and reproduce every view of a run. It holds no timings
(those are in run.json), so the same matrix gives the same bytes whatever the engine and the worker count.

Schema (version 2): `ResultsJson` below. Each cell (`CellJson`) keeps one `SeedJson` per seed of its chosen
learning rate, each with its own scores and training curve, and how the learning rate was chosen (`LrChoiceJson`:
every candidate's dev-split accuracy). A task score keeps its per-item correctness (`correct`, 0/1 in item
order) so that deltas against the base model are paired: the same items, so the CI is much tighter than for two
independent proportions. Means over seeds and their intervals are computed by the views (`report.stats`), never
stored. A version-1 file (one seed, no sweep) is read as version 2 with a single seed 0.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

from tinyeval.errors import TinyevalError

SCHEMA_VERSION = 2


class TaskScoreJson(TypedDict):
    """`TaskScore` in results.json and a unit's unit.json."""

    metric: str
    value: float
    stderr: float | None
    n: int
    strict: float | None
    lenient: float | None
    correct: list[int] | None
    ids: NotRequired[list[str] | None]  # per-item id (a twin item: its original's), so tasks pair item by item
    strict_correct: NotRequired[list[int] | None]  # per-item 0/1 strict (math tasks)
    lenient_correct: NotRequired[list[int] | None]  # per-item 0/1 lenient


class CurvePoint(TypedDict, total=False):
    """One training step of a seed's curve (GRPO: reward_mean, strict, lenient; SFT: loss, heldout_loss)."""

    step: int
    reward_mean: float
    strict: float
    lenient: float
    loss: float
    heldout_loss: float


class SeedJson(TypedDict):
    """One seed of a cell, trained at the chosen learning rate and evaluated on the test suite."""

    seed: int
    lr: float | None  # null for the base model (not trained)
    status: Literal["done", "failed"]
    scores: dict[str, TaskScoreJson]
    curve: list[CurvePoint]
    error: str | None
    liveness: NotRequired[dict | None]  # eval.liveness.LivenessJson of the scored model (null: base, or not kept)


class CandidateJson(TypedDict):
    """One learning rate of a cell's sweep, scored on the dev split."""

    lr: float
    dev_accuracy: float | None  # mean over the seeds that finished (null: none did)
    per_seed: dict[str, float]  # seed -> dev accuracy (JSON keys are strings)


class LrChoiceJson(TypedDict):
    """How a cell's learning rate was chosen: on the dev split carved from its training set, never the test set."""

    task: str  # the training task the dev items come from
    dev_rows: list[int]  # [start, end): row indices of the dev items in the task's training split
    train_rows: int  # training used only rows [0, train_rows) (they exclude every dev row)
    rule: str
    candidates: list[CandidateJson]
    chosen: float | None  # null: no candidate finished


class CellJson(TypedDict):
    """Each entry of results.json's `cells`."""

    name: str
    method: str
    algo: str | None
    trainable: int
    bytes_bf16: int
    bytes_fp32: int
    status: Literal["planned", "done", "partial", "failed"]  # partial: some seeds failed
    lr: float | None  # the learning rate its seeds trained at (chosen, or the preset's); null for base
    lr_choice: LrChoiceJson | None  # null without a sweep
    seeds: list[SeedJson]
    error: str | None


class CleanFromJson(TypedDict):
    """The audit a run's clean columns leave items out by: benchmark -> the ids it flags (sorted)."""

    audit: str
    flagged: dict[str, list[str]]


class ResultsJson(TypedDict):
    """train-and-eval's results.json (schema version 2)."""

    version: int
    model: str
    preset: str
    tasks: list[str]
    seeds: list[int]
    lr_sweep: dict[str, list[float]] | None  # algo -> learning rates tried; null: one per cell, the preset's
    cells: list[CellJson]
    clean_from: NotRequired[CleanFromJson | None]  # `--clean-from`: the audit and the ids it flags


@dataclass
class TaskScore:
    """One task's result for one seed of a cell; `strict`/`lenient` are set for math tasks (format vs correctness).
    In a mean over seeds (`stats.mean_score`) `correct` holds each item's mean correctness."""

    metric: str
    value: float
    stderr: float | None = None
    n: int = 0
    strict: float | None = None
    lenient: float | None = None
    correct: list[int] | list[float] | None = None  # per-item 0/1 of the primary metric, item order fixed by the task
    ids: list[str] | None = None  # per-item ids (absent in files written before they were kept)
    strict_correct: list[int] | list[float] | None = None
    lenient_correct: list[int] | list[float] | None = None

    @classmethod
    def from_dict(cls, raw: dict) -> TaskScore:
        return cls(**raw)


@dataclass
class SeedRun:
    seed: int
    lr: float | None = None
    status: str = "done"  # done | failed
    scores: dict[str, TaskScore] = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)  # per-step training records (step, reward, ...)
    error: str | None = None
    liveness: dict | None = None  # eval.liveness.LivenessJson: the adapter was proven live before scoring

    @classmethod
    def from_dict(cls, raw: dict) -> SeedRun:
        return cls(**{**raw, "scores": {t: TaskScore.from_dict(s) for t, s in raw.get("scores", {}).items()}})


@dataclass
class Cell:
    """One row of the method matrix: how it was trained, how its learning rate was chosen, what each seed scored."""

    name: str
    method: str  # base | tinylora | lora-xs | lora | full
    algo: str | None = None  # grpo | sft | None for the untrained base
    trainable: int = 0
    bytes_bf16: int = 0
    bytes_fp32: int = 0
    status: str = "planned"  # planned | done | partial | failed
    lr: float | None = None
    lr_choice: dict | None = None  # LrChoiceJson
    seeds: list[SeedRun] = field(default_factory=list)
    error: str | None = None

    @property
    def series(self) -> str:
        return "base" if self.algo is None else self.algo.upper()

    @property
    def is_control(self) -> bool:
        """GRPO on a reward that cannot teach the task (matrix.CONTROL_REWARDS: names end -random / -format)."""
        return self.name.endswith(("-random", "-format"))

    @property
    def done_seeds(self) -> list[SeedRun]:
        return [s for s in self.seeds if s.status == "done"]

    def to_dict(self) -> CellJson:
        return CellJson(**asdict(self))

    @classmethod
    def from_dict(cls, raw: dict) -> Cell:
        return cls(**{**raw, "seeds": [SeedRun.from_dict(s) for s in raw.get("seeds", [])]})


@dataclass
class Results:
    model: str
    preset: str
    tasks: list[str]
    cells: list[Cell]
    seeds: list[int] = field(default_factory=lambda: [0])
    lr_sweep: dict[str, list[float]] | None = None
    version: int = SCHEMA_VERSION
    clean_from: dict | None = None  # CleanFromJson

    def cell(self, name: str) -> Cell:
        for c in self.cells:
            if c.name == name:
                return c
        raise TinyevalError(f"no cell named '{name}' in results (cells: {', '.join(c.name for c in self.cells)})")

    def to_dict(self) -> ResultsJson:
        return ResultsJson(version=self.version, model=self.model, preset=self.preset, tasks=self.tasks,
                           seeds=self.seeds, lr_sweep=self.lr_sweep, cells=[c.to_dict() for c in self.cells],
                           clean_from=self.clean_from)

    @classmethod
    def from_dict(cls, raw: dict) -> Results:
        if raw.get("version") == 1:
            raw = _from_version_1(raw)
        if raw.get("version") != SCHEMA_VERSION:
            raise TinyevalError(f"results.json has schema version {raw.get('version')}, expected {SCHEMA_VERSION}")
        return cls(model=raw["model"], preset=raw["preset"], tasks=list(raw["tasks"]),
                   cells=[Cell.from_dict(c) for c in raw["cells"]], seeds=list(raw["seeds"]),
                   lr_sweep=raw["lr_sweep"], clean_from=raw.get("clean_from"))


def _from_version_1(raw: dict) -> dict:
    """A version-1 file (one seed per cell, no sweep, a `created` time) as version 2."""
    def cell(c: dict) -> dict:
        seed = {"seed": 0, "lr": None, "status": "failed" if c["status"] == "failed" else "done",
                "scores": c.get("scores", {}), "curve": c.get("curve", []), "error": c.get("error")}
        kept = {k: c[k] for k in ("name", "method", "algo", "trainable", "bytes_bf16", "bytes_fp32", "status")}
        return {**kept, "lr": None, "lr_choice": None, "seeds": [seed] if c["status"] != "planned" else [],
                "error": c.get("error")}

    return {"version": SCHEMA_VERSION, "model": raw["model"], "preset": raw["preset"], "tasks": raw["tasks"],
            "seeds": [0], "lr_sweep": None, "cells": [cell(c) for c in raw["cells"]]}


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
