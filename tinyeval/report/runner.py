"""`tinyeval train-and-eval`: train every unit (cell, seed, learning rate) of the matrix, choose each cell's learning
rate on its dev split, evaluate the chosen learning rate's seeds on the test suite, report.

    out/
      results.json        every cell with its chosen learning rate and per-seed scores (the report's only input;
                          no timings, so the same matrix gives the same bytes on any engine and worker count)
      run.json            how this run went: engine, workers, each unit's worker, attempts and seconds
      report.md, *.png    rendered from results.json at the end (`tinyeval report out` re-renders)
      cells/<cell>/seed-<S>/lr-<L>/   one unit: status.json, log.txt, train/, dev.json, eval/, unit.json

Two rounds. Round 1 trains every unit; with a sweep, each unit is then scored on its cell's dev split (carved from
the training set, see `selection`), without one it is evaluated on the test suite right away. Round 2 (sweeps
only) evaluates the chosen learning rate's seeds. Each round runs its jobs on an engine (`engines`: local workers
or Ray); a job that fails is retried once, then recorded as failed while the rest go on. A unit whose work is
already on disk is not scheduled again, and a crashed or killed one resumes training from its last checkpoint.
A Ctrl-C stops training at a checkpoint; such a unit is not done, and the next run resumes it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from tinyeval.io import write_json
from tinyeval.report import engines, selection
from tinyeval.report.matrix import CellSpec, learning_rates, train_configs
from tinyeval.report.results import Cell, Results, SeedRun, TaskScore
from tinyeval.report.unit import Job, Outcome, Settings, Unit, finished


@dataclass
class RunConfig:
    """One train-and-eval run: the model, the matrix preset, seeds and learning rates, how units are evaluated, and
    where they run."""

    model: str
    preset: str
    out: Path
    cells: list[CellSpec]
    tasks: list[str]
    eval_limit: int | None = None
    max_gen_toks: int | None = None  # None: each task's own limit (512 gsm8k, 1024 math500)
    backend: str = "auto"
    eval_batch_size: int = 20
    seeds: list[int] = field(default_factory=lambda: [0])
    lr_sweep: dict[str, tuple[float, ...]] | None = None  # algo -> learning rates; None: the train preset's lr
    dev_items: int = 256
    train_overrides: dict = field(default_factory=dict)  # e.g. {"steps": 5} for smoke runs
    data_root: str | None = None
    verbose: bool = False
    engine: str = "local"
    workers: int | None = None  # None: one per GPU, or per CPU core
    gpus_per_unit: int = 1
    address: str | None = None
    clean_from: Path | None = None  # an audit directory: the report adds each cell's Δ on the unflagged items

    def settings(self) -> Settings:
        return Settings(self.model, self.preset, self.out, tuple(self.tasks), self.eval_limit, self.max_gen_toks,
                        self.backend, self.eval_batch_size, tuple(sorted(self.train_overrides.items())),
                        self.data_root, self.verbose)


class UnitRunJson(TypedDict):
    """One job of the run: a unit's phases, once per attempt."""

    unit: str
    phases: str  # train+dev | train+test | test
    status: str  # done | failed | interrupted | cached (finished by an earlier run)
    worker: str | None
    attempt: int
    seconds: float


class RunJson(TypedDict):
    """run.json: how the run went (kept out of results.json, which must not depend on it)."""

    started: str
    engine: str
    workers: int | None  # null: auto
    gpus_per_unit: int
    address: str | None
    wall_s: float
    units: list[UnitRunJson]


def plan_units(cfg: RunConfig) -> dict[str, list[Unit]]:
    """Per cell, its units: the base model once (the first seed), a trained cell per learning rate per seed."""
    units = {}
    for cell in cfg.cells:
        if cell.algo is None:
            units[cell.name] = [Unit(cell, cfg.seeds[0], None)]
            continue
        lrs = learning_rates(cfg.model, cfg.preset, cell, cfg.lr_sweep, cfg.train_overrides.get("lr"))
        units[cell.name] = [Unit(cell, seed, lr) for lr in lrs for seed in cfg.seeds]
    return units


def run(cfg: RunConfig, plan_rows: dict[str, dict], done=lambda outcome: None, run_id: str = "") -> Results:
    """Both rounds on the engine, then results.json and run.json; `done(outcome)` hears every unit that finishes."""
    start, started = time.time(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run_id = run_id or started
    units = plan_units(cfg)
    sweeping = cfg.lr_sweep is not None
    devs = {c.name: _carve(cfg, c) for c in cfg.cells if c.algo is not None} if sweeping else {}

    def job(unit: Unit, phases: tuple[str, ...]) -> Job:
        return Job(unit, phases, cfg.settings(), devs.get(unit.cell.name), run=run_id)

    # Round 1: train every unit, then score it on the dev split (a sweep) or on the test suite (no sweep).
    history: list[Outcome] = []  # every outcome of both rounds, for run.json

    def heard(outcome: Outcome) -> None:
        history.append(outcome)
        done(outcome)

    trained = ("train", "dev") if sweeping else ("train", "test")
    outcomes = schedule(cfg, [job(u, ("test",) if u.lr is None else trained) for u in _all(units)], heard)
    # The learning rate of each cell: the best on its dev split (the only one without a sweep).
    chosen = {name: _choose(cfg, cell, outcomes, devs.get(name)) for name, cell in units.items()}
    # Round 2: the chosen learning rate's seeds on the test suite.
    if sweeping:
        picked = [u for u in _all(units) if u.lr is not None and u.lr == chosen[u.cell.name][0]
                  and outcomes[u.key].status in ("done", "cached")]
        outcomes.update(schedule(cfg, [job(u, ("test",)) for u in picked], heard))

    swept = {a: list(v) for a, v in (cfg.lr_sweep or {}).items() if any(c.algo == a.split(":")[0] for c in cfg.cells)}
    results = Results(model=cfg.model, preset=cfg.preset, tasks=list(cfg.tasks), seeds=list(cfg.seeds),
                      lr_sweep=swept if sweeping else None,
                      cells=[_cell(cfg, spec, plan_rows[spec.name], units[spec.name], chosen[spec.name], outcomes)
                             for spec in cfg.cells], clean_from=_clean_from(cfg.clean_from))
    write_json(cfg.out / "results.json", results.to_dict())
    write_json(cfg.out / "run.json", RunJson(
        started=started, engine=cfg.engine, workers=cfg.workers, gpus_per_unit=cfg.gpus_per_unit, address=cfg.address,
        wall_s=round(time.time() - start, 1),
        units=[UnitRunJson(unit=o.key, phases=o.phases, status=o.status, worker=o.worker, attempt=o.attempt,
                           seconds=o.seconds) for o in history]))
    return results


def _clean_from(audit_dir: Path | None) -> dict | None:
    if audit_dir is None:
        return None
    from tinyeval.audit.clean import flagged_items

    return {"audit": str(audit_dir), "flagged": {k: sorted(v) for k, v in flagged_items(audit_dir).items()}}


def _all(units: dict[str, list[Unit]]) -> list[Unit]:
    return [u for cell in units.values() for u in cell]


def schedule(cfg: RunConfig, jobs: list[Job], done=lambda outcome: None) -> dict[str, Outcome]:
    """Outcome of every job: jobs already done on disk are `cached`; the rest run on the engine, a failed one once
    more; a Ctrl-C (an interrupted unit) stops the run with KeyboardInterrupt once the engine has stopped."""
    outcomes: dict[str, Outcome] = {}
    for j in jobs:
        if finished(j.unit, cfg.out, j.phases):
            outcomes[j.unit.key] = Outcome(j.unit.key, "+".join(j.phases), "cached", None, 0)
            done(outcomes[j.unit.key])

    def heard(outcome: Outcome) -> None:
        outcomes[outcome.key] = outcome
        done(outcome)
        if outcome.status == "interrupted":
            raise KeyboardInterrupt(f"{outcome.key}: interrupted")

    for attempt in (1, 2):
        todo = [dataclasses.replace(j, attempt=attempt) for j in jobs
                if j.unit.key not in outcomes or outcomes[j.unit.key].status == "failed"]
        engines.run(cfg.engine, todo, cfg.workers, cfg.gpus_per_unit, cfg.address, heard)
    return outcomes


def _carve(cfg: RunConfig, cell: CellSpec) -> selection.DevSplit:
    task = train_configs(cfg.model, cfg.preset, cell)[0].task
    return selection.carve(cell.algo, task, cfg.dev_items, cfg.data_root)


def _dev_accuracy(cfg: RunConfig, unit: Unit) -> float | None:
    path = unit.dir(cfg.out) / "dev.json"
    return json.loads(path.read_text())["accuracy"] if path.is_file() else None


def _choose(cfg: RunConfig, units: list[Unit], outcomes: dict[str, Outcome],
            dev: selection.DevSplit | None) -> tuple[float | None, dict | None]:
    """(learning rate, LrChoiceJson or None): the dev split's choice in a sweep, else the one learning rate."""
    if dev is None:
        return units[0].lr, None
    per_seed: dict[float, dict[int, float]] = {}
    for u in units:
        accuracy = _dev_accuracy(cfg, u) if outcomes[u.key].status in ("done", "cached") else None
        per_seed.setdefault(u.lr, {})
        if accuracy is not None:
            per_seed[u.lr][u.seed] = accuracy
    lr = selection.choose(per_seed)
    candidates = [{"lr": x, "dev_accuracy": sum(s.values()) / len(s) if s else None,
                   "per_seed": {str(k): v for k, v in sorted(s.items())}} for x, s in per_seed.items()]
    return lr, {"task": dev.task, "dev_rows": list(dev.rows), "train_rows": dev.train_rows, "rule": selection.RULE,
                "candidates": candidates, "chosen": lr}


def _seed_run(cfg: RunConfig, unit: Unit, outcome: Outcome | None) -> SeedRun:
    path = unit.dir(cfg.out) / "unit.json"
    if path.is_file():
        raw = json.loads(path.read_text())
        return SeedRun(raw["seed"], raw["lr"], "done", {t: TaskScore(**s) for t, s in raw["scores"].items()},
                       raw["curve"], liveness=raw.get("liveness"))
    return SeedRun(unit.seed, unit.lr, "failed", error=outcome.error if outcome else "not evaluated")


def _cell(cfg: RunConfig, spec: CellSpec, sizes: dict, units: list[Unit], chosen: tuple[float | None, dict | None],
          outcomes: dict[str, Outcome]) -> Cell:
    lr, choice = chosen
    if choice is not None and lr is None:
        return Cell(spec.name, spec.method, spec.algo, **sizes, status="failed", lr_choice=choice,
                    error="no learning rate finished training and dev scoring")
    seeds = [_seed_run(cfg, u, outcomes.get(u.key)) for u in units if u.lr == lr]
    n_done = sum(s.status == "done" for s in seeds)
    status = "done" if n_done == len(seeds) else "partial" if n_done else "failed"
    error = next((s.error for s in seeds if s.error), None)
    return Cell(spec.name, spec.method, spec.algo, **sizes, status=status, lr=lr, lr_choice=choice, seeds=seeds,
                error=error)

