"""CLI commands of the audit area (kept light: the scan's modules load inside the function bodies).

Model probes plug into `audit --model M [--adapter DIR]`: after the corpus scan it runs
`tinyeval.audit.probes.run.run_probes(ProbeConfig(...))` (the probes area's defaults; the config is built
first, so a benchmark the probes do not support fails before the scan) and files the returned dict as the
report's "probes" section (`tinyeval.audit.scan.report.add_section`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tinyeval.errors import TinyevalError


def _probe_config(bench: str, model: str, adapter: str | None, data_root: str | None):
    """The model-probe run for `--model`, built (and validated) before the scan starts."""
    from tinyeval.audit.probes.run import ProbeConfig
    from tinyeval.audit.scan.config import load_recipe

    return ProbeConfig(model=model, benchmark=load_recipe(bench).dataset, adapter=adapter, data_root=data_root)


def audit(
    bench: Annotated[str, typer.Argument(help="Benchmark recipe in audits/ (gsm8k, math500, ...) or a .yaml.")],
    corpus: Annotated[list[str] | None, typer.Option(
        "--corpus", help="Corpus: file, directory, glob or hf://dataset[:config[:split]]; repeatable.")] = None,
    out: Annotated[str, typer.Option("--out", help="Output directory (report.json, report.md, run.json).")] = "runs/audit",
    engine: Annotated[str, typer.Option("--engine", help="local (processes) or ray.")] = "local",
    workers: Annotated[int | None, typer.Option("--workers", help="Worker processes (default: all cores).")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (engine ray).")] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="Document text field in JSONL/parquet/hub.")] = "text",
    n: Annotated[int | None, typer.Option("--n", help="n-gram length in words (default: the recipe's, 13).")] = None,
    min_span: Annotated[int | None, typer.Option("--min-span", help="Flag items with a matched run of at least this many words (recipe default 30).")] = None,
    fail_above: Annotated[float | None, typer.Option("--fail-above", help="Exit 1 if more than PCT% of items are contaminated.")] = None,
    decontaminate: Annotated[str | None, typer.Option("--decontaminate", help="Write the corpus without contaminated documents here.")] = None,
    decontaminate_mode: Annotated[str, typer.Option("--decontaminate-mode", help="docs (drop documents) or spans (GPT-3 cut).")] = "docs",
    limit: Annotated[int | None, typer.Option("--limit", help="Index only the first N items.")] = None,
    data_root: Annotated[str | None, typer.Option("--data-root", help="Data root (default: $TINYEVAL_DATA).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Also run the model probes (gsm8k, math500).")] = None,
    adapter: Annotated[str | None, typer.Option("--adapter", help="Adapter directory for --model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Scan corpora for a benchmark's items (hashed n-grams, fuzzy-confirmed); write report.json/.md."""
    from tinyeval.audit.scan import report
    from tinyeval.audit.scan.run import AuditOptions, run_audit
    from tinyeval.console import console, emit

    if fail_above is not None and not 0 <= fail_above <= 100:
        raise TinyevalError(f"--fail-above is a percentage in [0, 100], got {fail_above}")
    opts = AuditOptions(bench, tuple(corpus or ()), out, engine, workers, address, text_field, n, min_span,
                        decontaminate, decontaminate_mode, data_root, limit)
    probes = _probe_config(bench, model, adapter, data_root) if model is not None else None
    outcome = run_audit(opts)
    verdict = None
    if probes is not None:
        from tinyeval.audit.probes.run import markdown as probes_markdown
        from tinyeval.audit.probes.run import run_probes
        from tinyeval.io import write_text

        verdict = run_probes(probes)
        report.add_section(out, "probes", verdict)
        md = Path(out) / "report.md"
        write_text(md, md.read_text(encoding="utf-8") + "\n" + probes_markdown(verdict))
    rep = outcome.report
    if as_json:
        emit([rep["summary"]], "summary", True)
    else:
        if rep["items"]:
            emit(report.rows(rep), f"tinyeval audit {bench}: top items", False)
        emit(report.summary_rows(rep), f"{bench}: items with matched n-grams", False)
        skipped = {k: v for k, v in rep["corpus"]["skipped"].items() if v}
        size = rep["corpus"]["bytes"]
        shown = f"{size / 1e6:,.1f} MB" if size >= 1e5 else f"{size / 1e3:,.1f} kB"
        if verdict is not None:
            emit(verdict["rows"], f"leakage probes: {bench} on {model}", False)
        console.print(f"{rep['corpus']['documents']:,} documents, {shown}, "
                      f"{outcome.run['mb_per_s']:,.1f} MB/s ({engine})"
                      + (f"; skipped: {skipped}" if skipped else "") + f"; report: {outcome.out}/report.md")
    if fail_above is not None and rep["summary"]["contaminated_pct"] > fail_above:
        console.print(f"[bold red]{rep['summary']['contaminated_pct']}% of items contaminated > {fail_above}%[/]")
        raise typer.Exit(1)


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
    summary = {**cov.as_dict(), "written": min(n or cov.perturbed, cov.perturbed) if out else 0, "out": out}
    if as_json:
        emit([summary], "perturb", True)
        return
    emit([{k: v for k, v in summary.items() if k != "skipped"}], f"tinyeval perturb {bench}", False)
    emit([{"skip reason": k, "items": v} for k, v in cov.skipped.most_common()], "skipped items", False)
