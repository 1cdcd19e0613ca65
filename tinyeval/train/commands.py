"""`tinyeval train`: every knob of the loop, the adapter and the objective, on top of a preset. Light on imports.

The options are handed to `recipes.build` by name (click's parsed parameters, minus the run's own flags), which
routes each to the dataclass that owns it and refuses names it does not know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tinyeval.quiet import Verbose

RUN_FLAGS = ("out", "algo", "preset", "resume", "nproc", "verbose", "as_json")  # how to run, not what to train


GradientCheckpointing = Annotated[Optional[bool], typer.Option(
    "--gradient-checkpointing/--no-gradient-checkpointing",
    help="Recompute activations in backward: less GPU memory, ~1.3x the step time (default off).")]
KeepAnnotations = Annotated[Optional[bool], typer.Option(
    "--keep-annotations/--strip-annotations", help="sft: keep GSM8K's <<expr=value>> in targets.")]
Nproc = Annotated[int, typer.Option("--nproc", help=(
    "Shard a full fine-tune (--method full --algo sft) over N processes with FSDP2, one per GPU (gloo on a "
    "CPU). Same as `torchrun --nproc-per-node N -m tinyeval.cli train ...`; the run's files are those of one "
    "process, and it resumes with any N."))]


def _opt(help: str, flag: str | None = None):
    return typer.Option(flag, help=help) if flag else typer.Option(help=help)


def train(
    ctx: typer.Context,
    out: Annotated[str, _opt("Run directory: config.json, records.jsonl, checkpoints/, adapter/.")],
    model: Annotated[Optional[str], _opt("Model alias, hub id or directory (default smollm2-135m).")] = None,
    method: Annotated[Optional[str], _opt("Adapter method, any name tinyeval.adapters registers (tinylora, lora, "
                                          "...).")] = None,
    params: Annotated[Optional[int], _opt("TinyLoRA trainable-parameter budget (e.g. 13).")] = None,
    rank: Annotated[Optional[int], _opt("SVD rank (tinylora, lora-xs) or LoRA rank.")] = None,
    tying: Annotated[Optional[str], _opt("TinyLoRA: which modules share v: tiled | structured.")] = None,
    algo: Annotated[Optional[str], _opt("Training objective: grpo | sft (train/recipes.py). Default: grpo, or on "
                                        "--resume the run's own.")] = None,
    task: Annotated[Optional[str], _opt("gsm8k | math | arith | lsat_lr | lsat_rc | lsat_ar | legal_hearsay.")] = None,
    preset: Annotated[Optional[str], _opt("grpo: paper-gsm8k | paper-math | cpu; sft: paper-sft | cpu. "
                                          "Flags override it.")] = None,
    resume: Annotated[bool, _opt("Continue the run in --out from its last checkpoint, bit for bit.")] = False,
    steps: Annotated[Optional[int], _opt("Steps (default: --epochs passes over the prompts).")] = None,
    epochs: Annotated[Optional[float], _opt("Passes over the training prompts when --steps is unset.")] = None,
    prompts_per_step: Annotated[Optional[int], _opt("Prompts per step.")] = None,
    group_size: Annotated[Optional[int], _opt("G: samples per prompt.")] = None,
    lr: Annotated[Optional[float], _opt("Learning rate.")] = None,
    warmup_ratio: Annotated[Optional[float], _opt("Linear warm-up fraction of the steps.")] = None,
    weight_decay: Annotated[Optional[float], _opt("AdamW weight decay.")] = None,
    max_grad_norm: Annotated[Optional[float], _opt("Gradient clipping norm (0: off).")] = None,
    max_new_tokens: Annotated[Optional[int], _opt("Completion length cap.")] = None,
    max_prompt_tokens: Annotated[Optional[int], _opt("Longer prompts are skipped with a warning.")] = None,
    temperature: Annotated[Optional[float], _opt("Sampling temperature.")] = None,
    top_p: Annotated[Optional[float], _opt("Nucleus sampling.")] = None,
    reward: Annotated[Optional[str], _opt("strict | lenient | format | random (the random-reward control).")] = None,
    random_p: Annotated[Optional[float], _opt("--reward random: Bernoulli p (default: the base policy's mean "
                                              "--random-p-from reward, measured before step 1).")] = None,
    random_p_from: Annotated[Optional[str], _opt("--reward random: the reward p is measured with "
                                                 "(strict | lenient | format).")] = None,
    format_weight: Annotated[Optional[float], _opt("Weight of the optional format reward (0: off).")] = None,
    adv_scale: Annotated[Optional[str], _opt("Advantage scale: group | batch | none.")] = None,
    aggregation: Annotated[Optional[str], _opt("Loss aggregation: token-mean | seq-mean | dr-grpo.")] = None,
    eps_low: Annotated[Optional[float], _opt("Lower clip epsilon.")] = None,
    eps_high: Annotated[Optional[float], _opt("Upper clip epsilon.")] = None,
    kl_coef: Annotated[Optional[float], _opt("k3 KL coefficient against the base model (0: off).")] = None,
    tis_cap: Annotated[Optional[float], _opt("Truncated importance-sampling cap.")] = None,
    inner_epochs: Annotated[Optional[int], _opt("mu: optimizer passes per rollout batch.")] = None,
    engine: Annotated[Optional[str], _opt("Rollout engine: hf | vllm | auto.")] = None,
    vllm_sync: Annotated[Optional[str], _opt(
        "vLLM weight sync: lora (new LoRARequest) | merge (into the engine's weights) | auto (merge on CPU).")] = None,
    gen_batch: Annotated[Optional[int], _opt("HF generate batch size.")] = None,
    micro_batch: Annotated[Optional[int], _opt("Sequences per forward/backward.")] = None,
    gradient_checkpointing: GradientCheckpointing = None,
    checkpoint_every: Annotated[Optional[int], _opt("Steps between checkpoints.")] = None,
    limit: Annotated[Optional[int], _opt("Use only the first N training prompts.")] = None,
    dtype: Annotated[Optional[str], _opt("Base weights dtype: auto | bfloat16 | float32.")] = None,
    seed: Annotated[Optional[int], _opt("Seed (adapter init, data order, sampling).")] = None,
    threads: Annotated[Optional[int], _opt("torch CPU threads.")] = None,
    max_seq_tokens: Annotated[Optional[int], _opt("sft: prompt + target cap; longer examples are skipped.")] = None,
    keep_annotations: KeepAnnotations = None,
    eval_every: Annotated[Optional[int], _opt("sft: held-out loss every N steps (0: at the end only).")] = None,
    eval_examples: Annotated[Optional[int], _opt("sft: held-out examples for that loss.")] = None,
    data_root: Annotated[Optional[str], typer.Option("--data-root", help="Data root (default: $TINYEVAL_DATA).")] = None,
    nproc: Nproc = 1,
    verbose: Verbose = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")] = False,
) -> None:
    """Train an adapter with tinyeval's own GRPO (rollouts, verifiable rewards) or SFT (gold solutions).

    Third-party output (transformers, vLLM, progress bars of libraries) goes to OUT/log.txt unless --verbose."""
    from tinyeval import quiet
    from tinyeval.console import emit, err_console
    from tinyeval.train import distributed, recipes

    options = {k: v for k, v in ctx.params.items() if k not in RUN_FLAGS}
    algo = algo or (recipes.saved_algo(out) if resume else None) or "grpo"
    with quiet.into(Path(out) / "log.txt", verbose):
        summary = recipes.run(algo, *recipes.build(algo, preset, **options), out, resume=resume,
                              progress=not as_json, nproc=nproc)
    if not distributed.is_main():  # a rank torchrun started: rank 0 reports
        return
    final = summary.pop("final") or {}
    if not as_json:
        summary.pop("startup")  # printed in one line after the first step
    row = {**summary, **{k: round(final[k], 4) for k in ("reward_mean", "strict", "lenient", "loss")
                         if isinstance(final.get(k), float)}}
    emit([row], "tinyeval train", as_json)
    if summary["interrupted"]:
        err_console.print(f"interrupted at step {summary['steps']} of {summary['total_steps']}; "
                          f"`tinyeval train --out {out} --resume` continues")
        raise typer.Exit(130)
