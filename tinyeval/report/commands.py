"""`tinyeval report`: re-render a run's table, report.md and plots from its results.json alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tinyeval.quiet import Verbose


def render_run(run_dir: Path, fail_under: list[str], as_json: bool) -> None:
    """Write report.md and the plots beside results.json, print the table, and apply the CI gate."""
    from tinyeval.console import console, emit
    from tinyeval.io import write_text
    from tinyeval.report import plots, render
    from tinyeval.report.results import load

    results = load(run_dir)
    out = run_dir if run_dir.is_dir() else run_dir.parent
    thresholds = [render.parse_threshold(s) for s in fail_under]
    written = plots.render_all(results, out)
    write_text(out / "report.md", render.markdown(results, written))
    if as_json:
        emit(render.rows(results), "", as_json=True)
    else:
        console.print(render.table(results))
        console.print(f"report: {out / 'report.md'}" + (f"; plots: {', '.join(written)}" if written else ""))
    failures = render.gate(results, thresholds)
    for line in failures:
        print(f"FAIL {line}", file=sys.stderr)
    if failures:
        raise typer.Exit(1)


def report(
    run_dir: Annotated[Path, typer.Argument(help="A train-and-eval output directory (or its results.json).")],
    fail_under: Annotated[Optional[list[str]], typer.Option(
        "--fail-under", help="CI gate: TASK=VALUE or CELL/TASK=VALUE (fraction); exit 1 if any score is below.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Re-render a run's table, report.md and PNG plots from results.json; optionally gate CI on scores."""
    render_run(run_dir, fail_under or [], as_json)


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def train_and_eval(
    model: Annotated[str, typer.Option("--model", "-m", help="Alias (qwen2.5-7b, smollm2-135m), hub id or path.")],
    preset: Annotated[str, typer.Option(help="Matrix preset: paper (the paper's cells) | cpu (SmolLM2 demo).")] = "paper",
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated cell or method names to keep "
                                                   "(e.g. tinylora,lora-r1-sft); base is always kept.")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="Comma-separated eval tasks/groups (default: the preset's).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default runs/MODEL-PRESET).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (no weights needed) and exit.")] = False,
    include_full: Annotated[Optional[bool], typer.Option("--full/--no-full", help="Full fine-tuning cell "
                                                         "(default: only for models up to 3B).")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(help="Evaluate the first N items of each task.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Override every cell's training steps (smoke runs).")] = None,
    max_gen_toks: Annotated[Optional[int], typer.Option(help="Eval generation limit (default: the preset's, else per task).")] = None,
    backend: Annotated[str, typer.Option(help="Eval backend: hf | vllm | auto.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of every cell's training and evaluation.")] = 0,
    fail_under: Annotated[Optional[list[str]], typer.Option(
        "--fail-under", help="CI gate: TASK=VALUE or CELL/TASK=VALUE; exit 1 if any score is below.")] = None,
    data_root: Annotated[Optional[str], typer.Option("--data-root", help="Data root (default: $TINYEVAL_DATA).")] = None,
    verbose: Verbose = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
) -> None:
    """Train every cell of the method matrix, evaluate each on the same suite, and write the report.

    A live table shows each cell's state, step, reward, elapsed time and ETA; third-party output goes to
    OUT/cells/<cell>/log.txt unless --verbose."""
    from tinyeval.models import describe
    from tinyeval.report import matrix, render

    info = describe(model)
    spec = matrix.PRESETS.get(preset)
    cells = matrix.select(preset, _split(methods), include_full, info.parameters)
    suite = _split(tasks) or list(spec.tasks)
    limit = eval_limit if eval_limit is not None else spec.eval_limit
    gen_toks = max_gen_toks if max_gen_toks is not None else spec.max_gen_toks
    for gate in fail_under or []:
        render.parse_threshold(gate)  # a malformed gate fails now, not after hours of training
    if dry_run:
        rows = matrix.dry_run(model, preset, cells, suite, limit, data_root, max_gen_toks=gen_toks)
        _print_plan(rows, f"train-and-eval plan: {model} ({info.parameters / 1e9:.2f}B), preset {preset}, tasks "
                          f"{','.join(suite)}; GPU-hours on one H100 (estimate, see tinyeval.report.matrix.CostModel)",
                    as_json)
        return
    from tinyeval.report import runner

    run_dir = out or Path("runs") / f"{model.replace('/', '_')}-{preset}"
    cfg = runner.RunConfig(model=model, preset=preset, out=run_dir, cells=cells, tasks=suite, eval_limit=limit,
                           max_gen_toks=gen_toks, backend=backend, eval_batch_size=spec.eval_batch_size, seed=seed,
                           train_overrides={"steps": steps} if steps else {}, data_root=data_root)
    results = _run_with_board(cfg, verbose, as_json)
    render_run(run_dir, fail_under or [], as_json)
    if any(c.status == "failed" for c in results.cells):
        raise typer.Exit(1)


def _print_plan(rows: list, title: str, as_json: bool) -> None:
    """The dry-run plan; in the table, what the data could not tell reads "unknown" and the reason is the caption."""
    from tinyeval.console import emit
    from tinyeval.report.matrix import UNKNOWN_SIZE

    if not as_json and any("note" in r for r in rows):
        title += f"\n{UNKNOWN_SIZE}"
        rows = [{k: "unknown" if v is None else v for k, v in r.items() if k != "note"} for r in rows]
    emit(rows, title, as_json)


def _run_with_board(cfg, verbose: bool, as_json: bool):
    """`runner.run` under the live table of cells; with --verbose one line per state change instead (third-party
    output scrolls by), with --json neither."""
    from tinyeval import quiet
    from tinyeval.console import console
    from tinyeval.models import load_config
    from tinyeval.report import matrix, runner
    from tinyeval.report.board import Board, CellRow

    def total_steps(cell) -> int | None:  # None: base, or the dataset size is unknown
        if cell.algo is None:
            return None
        loop = matrix.train_configs(cfg.model, cfg.preset, cell)[0]
        return cfg.train_overrides.get("steps") or matrix.train_steps(loop, cfg.data_root)

    sizes = matrix.plan_rows(load_config(cfg.model), cfg.cells)
    title = f"tinyeval train-and-eval · {cfg.model} · preset {cfg.preset} · logs: {cfg.out / 'cells'}/*/log.txt"
    board = Board(title, [CellRow(c.name, cfg.out / "cells" / c.name / "train", total_steps(c)) for c in cfg.cells])

    def on_state(name: str, state: str) -> None:
        board.update(name, state)
        if verbose and not as_json:
            console.print(f"[bold]{name}[/]: {state}")

    with quiet.live(board.table, enabled=not as_json and not verbose):
        return runner.run(cfg, sizes, on_state=on_state, verbose=verbose)
