"""One unit of the matrix, (cell, seed, learning rate), and the work a worker does on it.

    cells/<cell>/seed-<S>/lr-<L>/      (lr-none for the base model, which is not trained)
      status.json    where the unit is: state, worker, attempt, pid (`StatusJson`; the live table reads it)
      log.txt        what happened, with tracebacks; every third-party line of its worker while it ran
      train/         the trainer's run dir (config, records.jsonl, checkpoints/, adapter/, summary.json)
      dev.json       its dev-split accuracy (`DevJson`), when the cell's learning rate is swept
      eval/          `tinyeval eval`'s output on the test suite
      unit.json      its test scores and training curve (`UnitJson`): only the chosen learning rate's units

A job asks for some of the phases `train`, `dev`, `test`. Each phase has its own mark of completion (a finished,
not interrupted summary.json with its adapter; dev.json; unit.json, all written atomically), so a job re-run after a
crash or a kill skips what is done and training resumes from its last checkpoint. `run_job` never raises: it
returns an `Outcome` (done, failed with the error, or interrupted by Ctrl-C), whichever process it ran in.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

from tinyeval import quiet
from tinyeval.eval.liveness import LivenessJson
from tinyeval.io import read_jsonl, write_json
from tinyeval.report.matrix import PRESETS, CellSpec
from tinyeval.report.results import CurvePoint, TaskScoreJson
from tinyeval.report.selection import DevSplit


@dataclass(frozen=True)
class Unit:
    cell: CellSpec
    seed: int
    lr: float | None  # None: the base model, not trained

    @property
    def key(self) -> str:
        return f"{self.cell.name}/seed-{self.seed}/lr-{'none' if self.lr is None else f'{self.lr:g}'}"

    def dir(self, out: Path) -> Path:
        return out / "cells" / self.key


@dataclass(frozen=True)
class Settings:
    """What every unit of a run shares: the model, the training preset, the test suite and how it is evaluated."""

    model: str
    preset: str
    out: Path
    tasks: tuple[str, ...]
    eval_limit: int | None = None
    max_gen_toks: int | None = None  # None: each task's own limit (512 gsm8k, 1024 math500)
    backend: str = "auto"
    eval_batch_size: int = 20
    train_overrides: tuple[tuple[str, object], ...] = ()  # e.g. (("steps", 5),) for smoke runs
    data_root: str | None = None
    verbose: bool = False


@dataclass(frozen=True)
class Job:
    unit: Unit
    phases: tuple[str, ...]  # in order, from train | dev | test
    settings: Settings
    dev: DevSplit | None = None  # the cell's dev split (a sweep), else None: training reads the whole split
    attempt: int = 1
    run: str = ""  # the id of the train-and-eval run that scheduled it (the live table tells runs apart by it)


@dataclass
class Outcome:
    key: str
    phases: str  # the job's phases, joined by "+"
    status: str  # done | failed | interrupted | cached
    worker: str | None = None
    attempt: int = 1
    seconds: float = 0.0
    error: str | None = None


class StatusJson(TypedDict):
    """status.json of a unit: rewritten as the unit moves on (atomically; never read for results)."""

    state: Literal["started", "training", "scoring", "evaluating", "done", "failed", "interrupted"]
    run: str
    worker: str
    attempt: int
    pid: int
    since: float  # Unix time the unit's job started
    error: str | None


class DevJson(TypedDict):
    lr: float
    seed: int
    correct: list[int]  # per dev item, in `DevSplit.rows` order
    accuracy: float
    liveness: NotRequired[LivenessJson]  # the merged model that answered was proven to be the adapter


class UnitJson(TypedDict):
    seed: int
    lr: float | None
    scores: dict[str, TaskScoreJson]
    curve: list[CurvePoint]
    liveness: LivenessJson | None  # the proof that the scored model was this unit's adapter (null: base model)


# ---- the phases -----------------------------------------------------------------------------------------

def log(unit_dir: Path, message: str) -> None:
    unit_dir.mkdir(parents=True, exist_ok=True)
    with open(unit_dir / "log.txt", "a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}\n")


def train_settings(job: Job):
    """(LoopConfig, objective config) of the unit: the train preset, its cell, seed and learning rate, one CPU
    thread where there is no GPU (so results do not depend on how many units share the machine), the overrides,
    and training limited to the rows before the dev split."""
    import torch

    from tinyeval.train import recipes

    s, unit = job.settings, job.unit
    overrides = dict(s.train_overrides)
    if job.dev is not None:
        overrides["limit"] = min(overrides.get("limit") or job.dev.train_rows, job.dev.train_rows)
    if unit.cell.reward == "random":  # p: the base policy's mean of the reward the controlled cell trains on
        overrides.update(reward="random", random_p_from=_preset_reward(s.preset))
    elif unit.cell.reward:
        overrides["reward"] = unit.cell.reward
    knobs = dict(model=s.model, method=unit.cell.method, params=unit.cell.params, rank=unit.cell.rank,
                 tying=unit.cell.tying, seed=unit.seed,
                 lr=unit.lr, data_root=s.data_root, threads=None if torch.cuda.is_available() else 1, **overrides)
    return recipes.build(unit.cell.algo, PRESETS[s.preset].train_preset[unit.cell.algo], **knobs)


def _preset_reward(preset: str) -> str:
    from tinyeval.train.config import GRPO_PRESETS, GRPOConfig

    return GRPO_PRESETS[PRESETS[preset].train_preset["grpo"]].get("reward", GRPOConfig.reward)


def _trained(train_dir: Path) -> bool:
    summary = train_dir / "summary.json"
    return summary.is_file() and (train_dir / "adapter").is_dir() and not json.loads(summary.read_text())["interrupted"]


def _train(job: Job, unit_dir: Path) -> None:
    """Train (resuming a crashed or interrupted run). A Ctrl-C stops it with a checkpoint: KeyboardInterrupt."""
    from tinyeval.train import recipes
    from tinyeval.train.loop import latest_checkpoint

    train_dir = unit_dir / "train"
    if _trained(train_dir):
        return
    checkpoint = latest_checkpoint(train_dir) if (train_dir / "checkpoints").is_dir() else None
    log(unit_dir, f"train: {'resume from ' + checkpoint.name if checkpoint else 'from scratch'}")
    done = recipes.run(job.unit.cell.algo, *train_settings(job), train_dir, resume=checkpoint is not None,
                       progress=False)
    if done["interrupted"]:
        raise KeyboardInterrupt(f"{job.unit.key}: training interrupted at step {done['steps']}")
    log(unit_dir, f"trained {done['steps']} steps in {done['seconds']:.1f} s")


def _dev(job: Job, unit_dir: Path) -> None:
    from tinyeval.report import selection

    if (unit_dir / "dev.json").is_file():
        return
    loop, objective = train_settings(job)
    max_new = getattr(objective, "max_new_tokens", None) or job.settings.max_gen_toks or 512
    correct, proof = selection.score(job.dev, job.settings.model, unit_dir / "train" / "adapter", loop.dtype,
                                     max_new, job.settings.data_root)
    write_json(unit_dir / "dev.json", DevJson(lr=job.unit.lr, seed=job.unit.seed, correct=correct,
                                              accuracy=sum(correct) / len(correct), liveness=proof))
    log(unit_dir, f"dev accuracy {sum(correct)}/{len(correct)}")


def curve(train_dir: Path) -> list[CurvePoint]:
    path = train_dir / "records.jsonl"
    if not path.is_file():
        return []
    keep = ("step", "reward_mean", "strict", "lenient", "loss", "heldout_loss")
    return [CurvePoint(**{k: r[k] for k in keep if k in r})
            for r in read_jsonl(path, warn=lambda m: log(train_dir.parent, m)) if r]


def _keeps_engines() -> bool:
    """A local worker (or the CLI running the jobs itself) keeps its vLLM engine from unit to unit
    (`tinyeval.eval.engine_pool`); a Ray task does not: Ray reuses or ends its worker processes at will."""
    import sys

    return "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def _test(job: Job, unit_dir: Path) -> None:
    from tinyeval.eval.run import EvalConfig, evaluate

    if (unit_dir / "unit.json").is_file():
        return
    s, unit = job.settings, job.unit
    record = evaluate(EvalConfig(model=s.model, tasks=list(s.tasks), out=unit_dir / "eval",
                                 adapter=None if unit.lr is None else unit_dir / "train" / "adapter",
                                 backend=s.backend, limit=s.eval_limit, max_gen_toks=s.max_gen_toks,
                                 batch_size=s.eval_batch_size, seed=unit.seed, data_root=s.data_root,
                                 keep_engine=_keeps_engines(), extra={"unit": unit.key}))
    keep = TaskScoreJson.__annotations__
    scores = {task: {k: v for k, v in score.items() if k in keep} for task, score in record["tasks"].items()}
    write_json(unit_dir / "unit.json", UnitJson(seed=unit.seed, lr=unit.lr, scores=scores, curve=curve(
        unit_dir / "train"), liveness=record["liveness"]))
    log(unit_dir, f"evaluated in {record['seconds']} s")


PHASES: dict[str, tuple[str, Callable[[Job, Path], None]]] = {  # name -> (state shown, work)
    "train": ("training", _train),
    "dev": ("scoring", _dev),
    "test": ("evaluating", _test),
}


def finished(unit: Unit, out: Path, phases: tuple[str, ...]) -> bool:
    """Whether every phase of `phases` already finished for `unit` (its job can be skipped)."""
    d = unit.dir(out)
    marks = {"train": lambda: _trained(d / "train"), "dev": lambda: (d / "dev.json").is_file(),
             "test": lambda: (d / "unit.json").is_file()}
    return all(marks[p]() for p in phases)


# ---- a job in a worker -----------------------------------------------------------------------------------

def _status(job: Job, unit_dir: Path, worker: str, since: float, state: str, error: str | None = None) -> None:
    write_json(unit_dir / "status.json", StatusJson(state=state, run=job.run, worker=worker, attempt=job.attempt,
                                                    pid=os.getpid(), since=since, error=error))


def run_job(job: Job, worker: str) -> Outcome:
    """Do the job's phases for its unit in this process, its third-party output in the unit's log.txt."""
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(1)  # one thread per CPU unit: the same sums in every worker, whatever the worker count
    unit_dir = job.unit.dir(job.settings.out)
    start = time.time()
    unit_dir.mkdir(parents=True, exist_ok=True)
    _status(job, unit_dir, worker, start, "started")
    log(unit_dir, f"{job.unit.key}: {'+'.join(job.phases)} on {worker}, attempt {job.attempt}")
    try:
        with quiet.into(unit_dir / "log.txt", job.settings.verbose):
            for phase in job.phases:
                state, work = PHASES[phase]
                _status(job, unit_dir, worker, start, state)
                work(job, unit_dir)
        status, error = "done", None
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted (Ctrl-C): the next run resumes it"
    except Exception as e:  # one broken unit must not lose the others' hours of work
        log(unit_dir, "failed:\n" + traceback.format_exc())
        status, error = "failed", f"{type(e).__name__}: {e}"
    _status(job, unit_dir, worker, start, status, error)
    return Outcome(job.unit.key, "+".join(job.phases), status, worker, job.attempt, round(time.time() - start, 1),
                   error)
