"""`tinyeval eval`: flags -> `EvalConfig` -> `tinyeval.eval.run.evaluate` -> table. Heavy imports stay inside."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tinyeval.console import DataRoot, JsonFlag, emit
from tinyeval.quiet import Verbose


def evaluate(
    model: Annotated[str, typer.Option("--model", "-m", help="Alias (smollm2-135m), hub id or model directory.")],
    tasks: Annotated[str, typer.Option("--tasks", "-t", help="Comma-separated tasks or groups from tasks/ "
                                       "(gsm8k, math500, arc_easy, legal_hearsay, tinyeval_all, ...).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (results.json, samples/).")],
    adapter: Annotated[Path | None, typer.Option(help="PEFT LoRA or tinyeval adapter directory.")] = None,
    backend: Annotated[str, typer.Option(help="hf | vllm | auto (vllm on GPU, hf on CPU).")] = "auto",
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N items of each task.")] = None,
    num_fewshot: Annotated[int | None, typer.Option(help="Override every task's few-shot count.")] = None,
    chat: Annotated[bool | None, typer.Option("--chat/--no-chat", help="Chat template (default: on when the "
                                                 "tokenizer has one).")] = None,
    max_gen_toks: Annotated[int | None, typer.Option(help="Generation limit for every generative task "
                                                        "(default: per task, 512 gsm8k / 1024 math500).")] = None,
    batch_size: Annotated[int, typer.Option(help="HF backend batch size.")] = 20,
    dtype: Annotated[str, typer.Option(help="auto | bfloat16 | float16 | float32 (auto: bf16 where the hardware "
                                             "computes in it, else fp32).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed for lm-eval, torch, few-shot sampling and vLLM.")] = 0,
    merge: Annotated[Optional[bool], typer.Option(
        "--merge/--no-merge", help="vllm: serve a merged checkpoint instead of a LoRA (default: on CPU only, where "
                                   "vLLM's LoRA kernels are ~3x slower).")] = None,
    tp: Annotated[int, typer.Option("--tp", help="vllm: tensor_parallel_size, GPUs per model copy.")] = 1,
    dp: Annotated[int, typer.Option("--dp", help="vllm: data_parallel_size, model copies (needs Ray).")] = 1,
    clean_from: Annotated[Optional[Path], typer.Option(
        "--clean-from", help="An audit directory (`tinyeval audit BENCH --out DIR`), or a directory of them: also "
                             "score each task they cover without the items they flag (results.json "
                             "tasks.<name>.clean); a full-MATH audit covers math500.")] = None,
    data_root: DataRoot = None,
    verbose: Verbose = False,
    as_json: JsonFlag = False,
) -> None:
    """Evaluate a model (optionally with an adapter) under lm-eval on tinyeval's offline task suite.

    Third-party output (vLLM, lm-eval, transformers, progress bars) goes to OUT/log.txt unless --verbose."""
    from tinyeval import quiet
    from tinyeval.eval.results import table_rows
    from tinyeval.eval.run import EvalConfig
    from tinyeval.eval.run import evaluate as run

    cfg = EvalConfig(model=model, tasks=[t.strip() for t in tasks.split(",") if t.strip()], out=out,
                     adapter=adapter, backend=backend, limit=limit, num_fewshot=num_fewshot, chat=chat,
                     max_gen_toks=max_gen_toks, batch_size=batch_size, dtype=dtype, seed=seed, merge=merge,
                     data_root=data_root, tp=tp, dp=dp, clean_from=clean_from)
    what = f"{model}" + (f" + {adapter}" if adapter else "") + f" on {', '.join(cfg.tasks)}"
    with quiet.into(out / "log.txt", verbose), quiet.status(f"evaluating {what} (log: {out / 'log.txt'})",
                                                              enabled=not as_json and not verbose):
        record = run(cfg)
    title = f"tinyeval eval: {model}" + (f" + {adapter}" if adapter else "") + f" ({record['backend']}, " \
            f"{record['seconds']:.0f} s) -> {out / 'results.json'}"
    emit(table_rows({**record["tasks"], **record["group_scores"]}), title, as_json)
    for name, row in record["tasks"].items():
        if "clean" in row and not as_json:
            c = row["clean"]
            shown = "–" if c["value"] is None else f"{100 * c['value']:.1f}"
            emit_line = f"clean subset of {name}: {shown} on {c['n']} items ({c['dropped']} flagged by {c['audit']})"
            from tinyeval.console import console

            console.print(emit_line)
    if record.get("liveness") and not as_json:
        from tinyeval.console import console
        from tinyeval.eval.liveness import describe

        console.print(describe(record["liveness"]), highlight=False)
