"""The corpus scan, top to bottom: recipe -> index -> shard tasks -> engine -> merge + confirm -> reports.

    tinyeval audit gsm8k --corpus 'data/*.jsonl.zst' --corpus hf://allenai/c4:en:validation --out runs/audit
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

from tinyeval.audit.scan.decontaminate import DecontaminateJSON
from tinyeval.audit.scan.gate import MAX_SKIPPED_PCT
from tinyeval.errors import TinyevalError

if TYPE_CHECKING:
    from tinyeval.audit.probes.config import ProbeConfig
    from tinyeval.audit.scan.report import ReportJSON


@dataclass(frozen=True)
class AuditOptions:
    """Everything one scan needs; the CLI fills it from flags."""

    bench: str  # recipe name in audits/ or a recipe .yaml path
    corpus: tuple[str, ...]  # paths, globs, directories or hf://dataset[:config[:split]]; () = the data
    # root's sample corpora (plan.sample_corpus), reported as a sample
    out: str  # output directory: report.json, report.md, run.json
    engine: str = "local"  # local | ray
    workers: int | None = None  # default: all cores
    address: str | None = None  # Ray cluster address (engine ray); None starts a local Ray
    text_field: str = "text"
    id_field: str | None = None  # the corpus field that names a document in the report (None: the first of
    # id, url, doc_id present); a document without it is named by its byte offset or row alone
    n: int | None = None  # override the recipe's n
    min_span: int | None = None  # override the recipe's thresholds.min_span
    decontaminate: str | None = None  # directory for the corpus without contaminated documents / spans
    decontaminate_mode: str = "docs"  # docs | spans
    data_root: str | None = None
    limit: int | None = None  # index only the first N benchmark items (smoke runs)
    max_skipped: float = MAX_SKIPPED_PCT  # % of input bytes that may be skipped before the verdict is incomplete
    overrides: dict = field(default_factory=dict)  # extra recipe overrides (tests, benchmarks)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise TinyevalError(f"--limit must be >= 1, got {self.limit}")
        if self.workers is not None and self.workers < 1:
            raise TinyevalError(f"--workers must be >= 1, got {self.workers}")
        if not 0 <= self.max_skipped <= 100:
            raise TinyevalError(f"--max-skipped is a percentage in [0, 100], got {self.max_skipped}")
        from tinyeval.audit.scan.engines import ENGINES

        if self.engine not in ENGINES:
            raise TinyevalError(f"unknown engine '{self.engine}'; known: {', '.join(ENGINES)}")


class RunJSON(TypedDict):
    """run.json: facts of this run (not results; they differ between engines, machines and runs)."""

    engine: str
    workers: int | None
    tasks: int
    index_seconds: float
    scan_seconds: float
    confirm_seconds: float
    mb_per_s: float
    probe_seconds: NotRequired[float]
    decontaminate: NotRequired[DecontaminateJSON]


@dataclass
class AuditOutcome:
    report: ReportJSON
    run: RunJSON
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


def run_audit(opts: AuditOptions, probes: ProbeConfig | None = None,
              progress: Callable[[int, int], None] | None = None) -> AuditOutcome:
    """Index, scan, merge and write the reports; `probes` also runs the model probes (their section is in
    both reports); `progress(done_bytes, total_bytes)` follows the scan."""
    from tinyeval import data
    from tinyeval.audit.scan import engines, plan, report
    from tinyeval.audit.scan.config import lend_ids
    from tinyeval.audit.scan.index import build_index
    from tinyeval.audit.scan.verdict import merge
    from tinyeval.io import write_json

    corpus = list(opts.corpus or plan.sample_corpus(opts.data_root))
    recipe = _recipe(opts)
    tasks = plan.plan_tasks(corpus, opts.text_field, id_field=opts.id_field)
    rows = lend_ids(recipe, data.load(recipe.dataset, recipe.split, opts.data_root).rows[: opts.limit],
                    opts.data_root)
    t0 = time.perf_counter()
    index = build_index(rows, recipe)
    t1 = time.perf_counter()
    total, done = sum(map(engines.task_bytes, tasks)), [0]

    def advance(task) -> None:
        done[0] += engines.task_bytes(task)
        if progress is not None:
            progress(done[0], total)

    results = engines.run(opts.engine, tasks, index, opts.workers, opts.address, advance,
                          spans=bool(opts.decontaminate))
    t2 = time.perf_counter()
    merged = merge(results, index)
    rep = report.build(merged, index, corpus, opts.max_skipped, sample=not opts.corpus)
    run: RunJSON = {"engine": opts.engine, "workers": opts.workers, "tasks": len(tasks),
                    "index_seconds": round(t1 - t0, 3), "scan_seconds": round(t2 - t1, 3),
                    "confirm_seconds": round(time.perf_counter() - t2, 3),
                    "mb_per_s": round(merged.stats.bytes / 1e6 / max(t2 - t1, 1e-9), 2)}
    if probes is not None:
        from tinyeval.audit.probes.run import run_probes

        t3 = time.perf_counter()
        rep["sections"] = {"probes": run_probes(probes)}
        run["probe_seconds"] = round(time.perf_counter() - t3, 3)
    report.write(rep, opts.out)
    if opts.decontaminate:
        from tinyeval.audit.scan.decontaminate import write_clean

        run["decontaminate"] = write_clean(tasks, merged.flagged, opts.decontaminate, opts.decontaminate_mode)
    write_json(Path(opts.out) / "run.json", run)
    return AuditOutcome(rep, run, Path(opts.out))
