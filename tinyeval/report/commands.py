"""`tinyeval report`: re-render a run's table, report.md and plots from its results.json alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tinyeval.quiet import Verbose


def render_run(run_dir: Path, fail_under: list[str], as_json: bool, fail_if_drop: bool = False) -> None:
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
    failures = render.gate(results, thresholds, fail_if_drop)
    for line in failures:
        print(f"FAIL {line}", file=sys.stderr)
    if failures:
        raise typer.Exit(1)


def report(
    run_dir: Annotated[Path, typer.Argument(help="A train-and-eval output directory (or its results.json).")],
    fail_under: Annotated[Optional[list[str]], typer.Option(
        "--fail-under", help="CI gate: TASK=VALUE or CELL/TASK=VALUE (fraction); exit 1 if any score is below.")] = None,
    fail_if_drop: Annotated[bool, typer.Option("--fail-if-drop", help="CI gate: exit 1 if any cell's gain drops on "
                                               "twins (tinyeval/report/verdict.py).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Re-render a run's table, report.md and PNG plots from results.json; optionally gate CI on scores."""
    render_run(run_dir, fail_under or [], as_json, fail_if_drop)


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _workers(value: str) -> int | None:
    from tinyeval.errors import TinyevalError

    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise TinyevalError(f"--workers must be auto or a number >= 1, got '{value}'")
    return int(value)


def train_and_eval(
    model: Annotated[str, typer.Option("--model", "-m", help="Alias (qwen2.5-7b, smollm2-135m), hub id or path.")],
    preset: Annotated[str, typer.Option(help="Matrix preset: paper (the paper's cells) | cpu (SmolLM2 demo) | claims-cpu "
                                                "(the paper's claims at 135M).")] = "paper",
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated cell or method names to keep "
                                                   "(e.g. tinylora,lora-r1-sft); base is always kept.")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="Comma-separated eval tasks/groups (default: the preset's).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default runs/MODEL-PRESET).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (no weights needed) and exit.")] = False,
    include_full: Annotated[Optional[bool], typer.Option("--full/--no-full", help="Full fine-tuning cell "
                                                         "(default: only for models up to 3B).")] = None,
    seeds: Annotated[Optional[int], typer.Option(help="Seeds per cell: --seed, --seed+1, ... (default: the "
                                                 "preset's: paper 3, cpu 1).")] = None,
    lr_sweep: Annotated[Optional[str], typer.Option("--lr-sweep", help="Learning rates per cell, chosen on a dev split "
                                                    "of the training set: preset (the preset's list) | off | 1e-5,1e-4 "
                                                    "(default: paper sweeps, cpu does not).")] = None,
    dev_items: Annotated[Optional[int], typer.Option(help="Dev items carved from each cell's training split "
                                                     "for the learning-rate choice (default: the preset's).")] = None,
    workers: Annotated[str, typer.Option(help="auto (one per GPU, else one per CPU core with one thread) or N.")] = "auto",
    gpus_per_unit: Annotated[int, typer.Option(help="GPUs per unit (each local worker holds this many).")] = 1,
    engine: Annotated[str, typer.Option(help="local (worker processes on this machine) | ray (a Ray cluster).")] = "local",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster for --engine ray: auto | HOST:PORT "
                                                   "(default: start a local Ray).")] = None,
    gpus: Annotated[int, typer.Option(help="--dry-run: GPUs to estimate the wall-clock hours for.")] = 1,
    eval_limit: Annotated[Optional[int], typer.Option(help="Evaluate the first N items of each task.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Override every cell's training steps (smoke runs).")] = None,
    max_gen_toks: Annotated[Optional[int], typer.Option(help="Eval generation limit (default: the preset's, else per task).")] = None,
    backend: Annotated[Optional[str], typer.Option(help="Eval backend: hf | vllm | auto (default: the preset's).")] = None,
    seed: Annotated[int, typer.Option(help="First seed of every cell's training and evaluation.")] = 0,
    fail_under: Annotated[Optional[list[str]], typer.Option(
        "--fail-under", help="CI gate: TASK=VALUE or CELL/TASK=VALUE; exit 1 if any score is below.")] = None,
    fail_if_drop: Annotated[bool, typer.Option("--fail-if-drop", help="CI gate: exit 1 if any cell's gain drops on "
                                               "twins (tinyeval/report/verdict.py).")] = False,
    clean_from: Annotated[Optional[Path], typer.Option("--clean-from", help="An audit directory (`tinyeval audit BENCH "
                                                       "--out DIR`), or a directory of them: add each cell's Δ "
                                                       "on the items they do not flag.")] = None,
    data_root: Annotated[Optional[str], typer.Option("--data-root", help="Data root (default: $TINYEVAL_DATA).")] = None,
    verbose: Verbose = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
) -> None:
    """Train every unit (cell, seed, learning rate) of the method matrix, choose each cell's learning rate on a dev
    split, evaluate the chosen seeds on the same suite, and write the report.

    A live table shows each unit's state, worker, step, reward, elapsed time and ETA; third-party output goes to
    OUT/cells/<cell>/seed-<S>/lr-<L>/log.txt unless --verbose. A re-run skips finished units and resumes the rest."""
    from tinyeval.errors import TinyevalError
    from tinyeval.models import describe
    from tinyeval.report import matrix, render

    info = describe(model)
    cells = matrix.select(preset, _split(methods), include_full, info.parameters)
    spec = matrix.PRESETS[preset]
    suite = _split(tasks) or list(spec.tasks)
    limit = eval_limit if eval_limit is not None else spec.eval_limit
    gen_toks = max_gen_toks if max_gen_toks is not None else spec.max_gen_toks
    n_seeds = seeds if seeds is not None else spec.seeds
    sweep = matrix.resolve_sweep(preset, lr_sweep)
    if n_seeds < 1 or gpus < 1:
        raise TinyevalError("--seeds and --gpus must be >= 1")
    for gate in fail_under or []:
        render.parse_threshold(gate)  # a malformed gate fails now, not after hours of training
    if clean_from is not None:
        from tinyeval.audit.clean import covered, flagged_items
        from tinyeval.eval.tasks import TWINS

        covered(flagged_items(clean_from), suite, TWINS, clean_from)  # a missing, broken or unrelated audit fails now
    if dry_run:
        plan = matrix.dry_run(model, preset, cells, suite, limit, data_root, max_gen_toks=gen_toks, seeds=n_seeds,
                              sweep=sweep, dev_items=dev_items or spec.dev_items, gpus=gpus,
                              gpus_per_unit=gpus_per_unit)
        _print_plan(plan, f"train-and-eval plan: {model} ({info.parameters / 1e9:.2f}B), preset {preset}, tasks "
                          f"{','.join(suite)}; GPU-hours on H100s (estimate, see tinyeval.report.matrix.CostModel)",
                    as_json)
        return
    from tinyeval.report import runner

    run_dir = out or Path("runs") / f"{model.replace('/', '_')}-{preset}"
    cfg = runner.RunConfig(model=model, preset=preset, out=run_dir, cells=cells, tasks=suite, eval_limit=limit,
                           max_gen_toks=gen_toks, backend=backend or spec.backend, eval_batch_size=spec.eval_batch_size,
                           seeds=list(range(seed, seed + n_seeds)), lr_sweep=sweep,
                           dev_items=dev_items or spec.dev_items, train_overrides={"steps": steps} if steps else {},
                           data_root=data_root, verbose=verbose, engine=engine, workers=_workers(workers),
                           gpus_per_unit=gpus_per_unit, address=address, clean_from=clean_from)
    results = _run_with_board(cfg, as_json)
    render_run(run_dir, fail_under or [], as_json, fail_if_drop)
    if any(c.status != "done" for c in results.cells):
        raise typer.Exit(1)


def _print_plan(plan: dict, title: str, as_json: bool) -> None:
    """The dry-run plan; in the table, what the data could not tell reads "unknown" and the reason is the caption,
    and the totals (units, GPU-hours, wall-clock hours on --gpus) close it."""
    from tinyeval.console import console, emit
    from tinyeval.report.matrix import UNKNOWN_SIZE

    if as_json:
        emit(plan, "", as_json=True)
        return
    rows, total = plan["cells"], plan["total"]
    if any("note" in r for r in rows):
        title += f"\n{UNKNOWN_SIZE}"
        rows = [{k: "unknown" if v is None else v for k, v in r.items() if k != "note"} for r in rows]
    emit(rows, title, as_json)
    lrs = "; ".join(f"{algo} {', '.join(f'{x:g}' for x in v)}" for algo, v in total["learning_rates"].items())
    console.print(f"{total['units']} units: {total['seeds']} seed(s) per learning rate ({lrs or '–'})")
    console.print(f"{_unknown(total['gpu_hours'])} GPU-hours; {_unknown(total['wall_hours'])} hours wall-clock on "
                  f"{total['gpus']} GPU(s), {total['gpus_per_unit']} per unit")


def _unknown(value) -> str:
    return "unknown" if value is None else f"{value:,}"


def _run_with_board(cfg, as_json: bool):
    """`runner.run` under the live table of units; with --verbose one line per finished unit instead (third-party
    output scrolls by), with --json neither."""
    import time

    from tinyeval import quiet
    from tinyeval.console import console
    from tinyeval.models import load_config
    from tinyeval.report import matrix, runner
    from tinyeval.report.board import Board, UnitRow

    def total_steps(cell) -> int | None:  # None: base, or the dataset size is unknown
        if cell.algo is None:
            return None
        loop = matrix.train_configs(cfg.model, cfg.preset, cell)[0]
        return cfg.train_overrides.get("steps") or matrix.train_steps(loop, cfg.data_root)

    sizes = matrix.plan_rows(load_config(cfg.model), cfg.cells)
    steps = {c.name: total_steps(c) for c in cfg.cells}
    units = [u for cell in runner.plan_units(cfg).values() for u in cell]
    run_id = f"{time.time():.6f}"
    title = f"tinyeval train-and-eval · {cfg.model} · preset {cfg.preset} · logs: {cfg.out / 'cells'}/…/log.txt"
    board = Board(title, [UnitRow(u.key, u.dir(cfg.out), steps[u.cell.name]) for u in units], run_id)

    def done(outcome) -> None:
        board.finished(outcome.key, outcome.status, outcome.seconds)
        if cfg.verbose and not as_json:
            console.print(f"[bold]{outcome.key}[/]: {outcome.status}" + (f" ({outcome.error})" if outcome.error else ""))

    with quiet.live(board.table, enabled=not as_json and not cfg.verbose):
        return runner.run(cfg, sizes, done=done, run_id=run_id)
