"""`tinyeval train-and-eval`: train every cell of the matrix, evaluate each on the same suite, report.

    out/
      results.json            every cell, rewritten atomically after each cell (the report's only input)
      report.md, *.png        rendered from results.json at the end (`tinyeval report out` re-renders)
      cells/<name>/
        cell.json             the finished cell; its presence means "done": a re-run skips the cell
        log.txt               what happened to this cell, with the traceback if it failed
        train/                the trainer's run dir (config, records.jsonl, checkpoints/, adapter/)
        eval/                 `tinyeval eval`'s output (results.json, samples/)

A crashed cell resumes: training continues from its last checkpoint, and a cell whose training finished
goes straight to evaluation. Every cell is evaluated with the same `EvalConfig` but for the adapter, so
all methods see the same prompts and scoring.
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from tinyeval import quiet
from tinyeval.io import read_jsonl, write_json
from tinyeval.report.matrix import PRESETS, CellSpec
from tinyeval.report.results import Cell, CurvePoint, Results, TaskScore


@dataclass
class RunConfig:
    """One train-and-eval run: the model, the matrix preset, and overrides shared by every cell."""

    model: str
    preset: str
    out: Path
    cells: list[CellSpec]
    tasks: list[str]
    eval_limit: int | None = None
    max_gen_toks: int | None = None  # None: each task's own limit (512 gsm8k, 1024 math500)
    backend: str = "auto"
    eval_batch_size: int = 20
    seed: int = 0
    train_overrides: dict = dataclasses.field(default_factory=dict)  # e.g. {"steps": 5} for smoke runs
    data_root: str | None = None


def _log(cell_dir: Path, message: str) -> None:
    cell_dir.mkdir(parents=True, exist_ok=True)
    with open(cell_dir / "log.txt", "a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}\n")


def _train(spec: CellSpec, cfg: RunConfig, train_dir: Path) -> Path:
    """Train one cell (resuming a crashed or interrupted run); returns the adapter directory.

    A Ctrl-C during training stops the matrix (KeyboardInterrupt) with the cell unfinished: its summary says
    `interrupted`, and the next run resumes it."""
    from tinyeval.train import recipes

    adapter, summary = train_dir / "adapter", train_dir / "summary.json"
    if summary.is_file() and adapter.is_dir() and not json.loads(summary.read_text()).get("interrupted"):
        return adapter  # training finished before a later crash
    resume = (train_dir / "checkpoints").is_dir() and any((train_dir / "checkpoints").iterdir())
    knobs = dict(model=cfg.model, method=spec.method, params=spec.params, rank=spec.rank, seed=cfg.seed,
                 data_root=cfg.data_root, **cfg.train_overrides)
    preset = PRESETS[cfg.preset].train_preset[spec.algo]
    done = recipes.run(spec.algo, *recipes.build(spec.algo, preset, **knobs), train_dir, resume=resume,
                       progress=False)
    if done["interrupted"]:
        raise KeyboardInterrupt(f"cell {spec.name}: training interrupted at step {done['steps']}")
    return adapter


def _curve(train_dir: Path) -> list[CurvePoint]:
    path = train_dir / "records.jsonl"
    if not path.is_file():
        return []
    keep = ("step", "reward_mean", "strict", "lenient", "loss", "heldout_loss")
    return [CurvePoint(**{k: r[k] for k in keep if k in r}) for r in read_jsonl(path, warn=lambda m: _log(
        train_dir.parent, m)) if r]


def _scores(record: dict) -> dict[str, TaskScore]:
    names = {f.name for f in dataclasses.fields(TaskScore)}
    return {task: TaskScore(**{k: v for k, v in s.items() if k in names}) for task, s in record["tasks"].items()}


def run_cell(spec: CellSpec, cfg: RunConfig, plan_row: dict, on_state=lambda state: None) -> Cell:
    """Train (unless base) and evaluate one cell; cached when its cell.json exists. `on_state` hears
    "training" and "evaluating" as the cell enters each phase."""
    from tinyeval.eval.run import EvalConfig, evaluate

    cell_dir = cfg.out / "cells" / spec.name
    done = cell_dir / "cell.json"
    if done.is_file():
        return Cell.from_dict(json.loads(done.read_text()))
    _log(cell_dir, f"start {spec.name}")
    adapter = None
    if spec.algo is not None:
        on_state("training")
        adapter = _train(spec, cfg, cell_dir / "train")
        _log(cell_dir, f"trained -> {adapter}")
    on_state("evaluating")
    record = evaluate(EvalConfig(model=cfg.model, tasks=cfg.tasks, out=cell_dir / "eval", adapter=adapter,
                                 backend=cfg.backend, limit=cfg.eval_limit, max_gen_toks=cfg.max_gen_toks,
                                 batch_size=cfg.eval_batch_size, seed=cfg.seed,
                                 data_root=cfg.data_root,
                                 extra={"cell": spec.name}))
    _log(cell_dir, f"evaluated in {record['seconds']} s")
    cell = Cell(name=spec.name, method=spec.method, algo=spec.algo, trainable=plan_row["trainable"],
                bytes_bf16=plan_row["bytes_bf16"], bytes_fp32=plan_row["bytes_fp32"], status="done",
                scores=_scores(record), curve=_curve(cell_dir / "train"))
    write_json(done, cell.to_dict())
    return cell


def run(cfg: RunConfig, plan_rows: dict[str, dict], on_cell=lambda cell: None,
        on_state=lambda name, state: None, verbose: bool = False) -> Results:
    """Every cell in order; a failing cell is recorded as failed and the matrix goes on.

    Each cell's third-party output (vLLM, lm-eval, transformers, progress bars) goes to its log.txt unless
    `verbose`; `on_state(name, state)` hears queued -> training -> evaluating -> done | cached | failed."""
    results = Results(model=cfg.model, preset=cfg.preset, tasks=list(cfg.tasks), cells=[],
                      created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for spec in cfg.cells:
        cell_dir = cfg.out / "cells" / spec.name
        cached = (cell_dir / "cell.json").is_file()
        try:
            with quiet.into(cell_dir / "log.txt", verbose):
                cell = run_cell(spec, cfg, plan_rows[spec.name], lambda state: on_state(spec.name, state))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one broken cell must not lose the others' hours of work
            _log(cell_dir, "failed:\n" + traceback.format_exc())
            cell = Cell(name=spec.name, method=spec.method, algo=spec.algo, status="failed",
                        **plan_rows[spec.name], error=f"{type(e).__name__}: {e}")
        results.cells.append(cell)
        write_json(cfg.out / "results.json", results.to_dict())
        on_state(spec.name, "cached" if cached and cell.status == "done" else cell.status)
        on_cell(cell)
    return results
