"""The corpus scan, top to bottom: recipe -> index -> shard tasks -> engine -> merge + confirm -> reports.

    tinyeval audit gsm8k --corpus 'data/*.jsonl.zst' --corpus hf://allenai/c4:en:validation --out runs/audit
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tinyeval.errors import TinyevalError


@dataclass(frozen=True)
class AuditOptions:
    """Everything one scan needs; the CLI fills it from flags."""

    bench: str  # recipe name in audits/ or a recipe .yaml path
    corpus: tuple[str, ...]  # paths, globs, directories or hf://dataset[:config[:split]]
    out: str  # output directory: report.json, report.md, run.json
    engine: str = "local"  # local | ray
    workers: int | None = None  # default: all cores
    address: str | None = None  # Ray cluster address (engine ray); None starts a local Ray
    text_field: str = "text"
    n: int | None = None  # override the recipe's n
    min_span: int | None = None  # override the recipe's thresholds.min_span
    decontaminate: str | None = None  # directory for the corpus without contaminated documents / spans
    decontaminate_mode: str = "docs"  # docs | spans
    data_root: str | None = None
    limit: int | None = None  # index only the first N benchmark items (smoke runs)
    overrides: dict = field(default_factory=dict)  # extra recipe overrides (tests, benchmarks)

    def __post_init__(self) -> None:
        if not self.corpus:
            raise TinyevalError("no corpus given: pass --corpus PATH|GLOB|hf://dataset[:config[:split]]")
        if self.limit is not None and self.limit < 1:
            raise TinyevalError(f"--limit must be >= 1, got {self.limit}")
        if self.workers is not None and self.workers < 1:
            raise TinyevalError(f"--workers must be >= 1, got {self.workers}")
        from tinyeval.audit.scan.engines import ENGINES

        if self.engine not in ENGINES:
            raise TinyevalError(f"unknown engine '{self.engine}'; known: {', '.join(ENGINES)}")


@dataclass
class AuditOutcome:
    report: dict
    run: dict  # engine, workers, seconds, throughput: facts of this run, not results
    out: Path


def _recipe(opts: AuditOptions):
    from dataclasses import replace

    from tinyeval.audit.scan.config import load_recipe

    recipe = load_recipe(opts.bench, n=opts.n, **opts.overrides)
    if opts.n is not None and recipe.min_n > opts.n:
        recipe = replace(recipe, min_n=opts.n)
    if opts.min_span is not None:
        recipe = replace(recipe, thresholds=replace(recipe.thresholds, min_span=opts.min_span))
    return recipe


def run_audit(opts: AuditOptions) -> AuditOutcome:
    from tinyeval import data
    from tinyeval.audit.scan import engines, report
    from tinyeval.audit.scan.index import build_index
    from tinyeval.audit.scan.readers import jsonl as readers
    from tinyeval.audit.scan.verdict import merge

    recipe = _recipe(opts)
    tasks = readers.plan_tasks(list(opts.corpus), opts.text_field)
    rows = data.load(recipe.dataset, recipe.split, opts.data_root).rows[: opts.limit]
    t0 = time.perf_counter()
    index = build_index(rows, recipe)
    t1 = time.perf_counter()
    results = engines.run(opts.engine, tasks, index, opts.workers, opts.address, spans=bool(opts.decontaminate))
    t2 = time.perf_counter()
    merged = merge(results, index)
    rep = report.build(merged, index, list(opts.corpus))
    report.write(rep, opts.out)
    run = {"engine": opts.engine, "workers": opts.workers, "tasks": len(tasks), "index_seconds": round(t1 - t0, 3),
           "scan_seconds": round(t2 - t1, 3), "confirm_seconds": round(time.perf_counter() - t2, 3),
           "mb_per_s": round(merged.stats.bytes / 1e6 / max(t2 - t1, 1e-9), 2)}
    if opts.decontaminate:
        from tinyeval.audit.scan.decontaminate import write_clean

        run["decontaminate"] = write_clean(tasks, merged.flagged, opts.decontaminate, opts.decontaminate_mode)
    from tinyeval.io import write_json

    write_json(Path(opts.out) / "run.json", run)
    return AuditOutcome(rep, run, Path(opts.out))
