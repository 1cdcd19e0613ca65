"""CLI commands of the audit area: parse flags, make one call, render the result (heavy imports inside).

  audit    -> scan.run.run_audit (the corpus scan; with --model also probes.run.run_probes, whose verdicts
              become a section of both reports)
  perturb  -> perturb.twins.perturb_benchmark
"""

from __future__ import annotations

from typing import Annotated

import typer

from tinyeval.errors import TinyevalError


def audit(
    bench: Annotated[str, typer.Argument(help="Benchmark recipe in audits/ (gsm8k, math500, ...) or a .yaml.")],
    corpus: Annotated[list[str] | None, typer.Option(
        "--corpus", help="Corpus: file, directory, glob or hf://dataset[:config[:split]]; repeatable.")] = None,
    out: Annotated[str, typer.Option("--out", help="Output directory (report.json, report.md, run.json).")] = "runs/audit",
    engine: Annotated[str, typer.Option("--engine", help="local (processes) or ray.")] = "local",
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes (default: all cores).")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (engine ray).")] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="Document text field in JSONL/parquet/hub.")] = "text",
    id_field: Annotated[str | None, typer.Option("--id-field", help="Document id field named beside each hit's offset (default: the first of id, url, doc_id present; a.b reaches into an object).")] = None,
    n: Annotated[int | None, typer.Option("--n", help="n-gram length in words (default: the recipe's, 13).")] = None,
    min_span: Annotated[int | None, typer.Option("--min-span", help="Flag items with a matched run of at least this many words (recipe default 30).")] = None,
    fail_above: Annotated[float | None, typer.Option("--fail-above", help="Exit 1 if more than PCT% of items are contaminated.")] = None,
    max_skipped: Annotated[float, typer.Option("--max-skipped", help="The verdict is incomplete (exit 1) when more than PCT% of the input bytes were skipped (unreadable lines, rows or files); it always is when no document was read.")] = 1.0,
    decontaminate: Annotated[str | None, typer.Option("--decontaminate", help="Write the corpus without contaminated documents here.")] = None,
    decontaminate_mode: Annotated[str, typer.Option("--decontaminate-mode", help="docs (drop documents) or spans (GPT-3 cut).")] = "docs",
    limit: Annotated[int | None, typer.Option("--limit", help="Index only the first N items.")] = None,
    data_root: Annotated[str | None, typer.Option("--data-root", help="Data root (default: $TINYEVAL_DATA).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Also run the model probes (gsm8k, math500).")] = None,
    adapter: Annotated[str | None, typer.Option("--adapter", help="Adapter directory for --model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Scan corpora for a benchmark's items (hashed n-grams, fuzzy-confirmed); write report.json/.md.

    Without --corpus it scans the data root's small sample corpora, and says so."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from tinyeval.audit.scan import gate
    from tinyeval.audit.scan.run import AuditOptions, run_audit
    from tinyeval.console import err_console

    if fail_above is not None and not 0 <= fail_above <= 100:
        raise TinyevalError(f"--fail-above is a percentage in [0, 100], got {fail_above}")
    opts = AuditOptions(bench, tuple(corpus or ()), out, engine, workers, address, text_field, id_field, n, min_span,
                        decontaminate, decontaminate_mode, data_root, limit, max_skipped)
    probes = None
    if model is not None:  # built (and validated) before the scan starts
        from tinyeval.audit.probes.config import ProbeConfig
        from tinyeval.audit.scan.config import load_recipe

        probes = ProbeConfig(model=model, benchmark=load_recipe(bench).dataset, adapter=adapter, data_root=data_root)
    with Progress("scanning", BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=err_console,
                  transient=True, disable=not err_console.is_terminal) as bar:
        job = bar.add_task("scan", total=None)
        outcome = run_audit(opts, probes, lambda done, total: bar.update(job, completed=done, total=total))
    _render(outcome, bench, model, as_json)
    failures = gate.failures(outcome.report, fail_above)
    for line in failures:
        err_console.print(f"[bold red]audit failed:[/] {line}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


def _render(outcome, bench: str, model: str | None, as_json: bool) -> None:
    """The terminal: tables (or the summary as JSON), skipped sources named on stderr."""
    from tinyeval.audit.scan import report
    from tinyeval.console import console, emit, err_console

    rep = outcome.report
    for line in report.skipped_lines(rep):
        err_console.print(line, highlight=False, markup=False, soft_wrap=True)
    if as_json:
        emit([rep["summary"]], "summary", True)
        return
    sample = " (on SAMPLE corpora, not your data: see below)" if rep["corpus"]["sample"] else ""
    if rep["items"]:
        emit(report.rows(rep), f"tinyeval audit {bench}: top items{sample}", False)
    emit(report.summary_rows(rep), f"{bench}: items with matched n-grams{sample}", False)
    if "probes" in rep.get("sections", {}):
        emit(rep["sections"]["probes"]["rows"], f"leakage probes: {bench} on {model}", False)
    console.print(report.corpus_line(rep, outcome.run) + f"; report: {outcome.out}/report.md")
    if rep["corpus"]["sample"]:
        console.print(f"[bold yellow]This audit scanned {report.sample_note()}.[/]", highlight=False)


def perturb(
    bench: Annotated[str, typer.Argument(help="Benchmark (gsm8k; MATH500 has no calculator chain to verify).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed: one (seed, item) pair always gives the same twin.")] = 0,
    n: Annotated[int | None, typer.Option("--n", help="Write a seeded sample of N twins (default: all).")] = None,
    out: Annotated[str | None, typer.Option("--out", help="JSONL in the benchmark's format (question, answer).")] = None,
    split: Annotated[str, typer.Option("--split", help="Dataset split.")] = "test",
    names: Annotated[bool, typer.Option("--names", help="Also swap person names (gender kept).")] = False,
    objects: Annotated[bool, typer.Option("--objects", help="Also swap interchangeable objects.")] = False,
    data_root: Annotated[str | None, typer.Option("--data-root", help="Data root (default: $TINYEVAL_DATA).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print coverage as JSON.")] = False,
) -> None:
    """Number-perturbed twins of GSM8K items, each verified by re-executing its chain; prints the coverage."""
    from tinyeval.audit.perturb.twins import PerturbConfig, perturb_benchmark
    from tinyeval.console import emit

    cov = perturb_benchmark(bench, PerturbConfig(seed=seed, names=names, objects=objects), n, out, split, data_root)
    summary = cov.summary(n, out)
    if as_json:
        emit([summary], "perturb", True)
        return
    emit([{k: v for k, v in summary.items() if k not in ("skipped", "relations")}], f"tinyeval perturb {bench}", False)
    emit([{"skip reason": k, "items": v} for k, v in cov.skipped.most_common()], "skipped items", False)
    emit([{"tie among question numbers": k, "twins": v} for k, v in cov.relations.most_common()],
         "ties kept (tinyeval.audit.perturb.relations)", False)
