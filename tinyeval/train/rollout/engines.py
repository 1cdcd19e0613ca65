"""The rollout engine factory: `--engine hf | vllm | auto`, and what happens when vLLM cannot serve the adapter.

vLLM is sent the policy as a LoRA (`handle.export_lora`). An adapter without a low-rank form (full fine-tuning:
its handle refuses to export) cannot be synced into a CPU vLLM engine in place either, since CPU vLLM repacks its
weights after loading; such a run falls back to HF generate with a warning. The decision is the handle's own
answer to "export yourself as a LoRA", so a new adapter method needs no case here.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from tinyeval.errors import TinyevalError
from tinyeval.train.config import GRPOConfig
from tinyeval.train.rollout.hf import HFEngine
from tinyeval.train.types import RolloutEngine


def lora_rank(handle) -> int | None:
    """The rank of the LoRA `handle` exports (what vLLM must be sized for), or None when it has no LoRA form."""
    with tempfile.TemporaryDirectory(prefix="tinyeval-lora-probe-") as tmp:
        try:
            path = Path(handle.export_lora(Path(tmp) / "lora"))
        except TinyevalError:
            return None
        return int(json.loads((path / "adapter_config.json").read_text())["r"])


def _hf(cfg: GRPOConfig, handle, tokenizer, model_name: str, rollouts: int) -> RolloutEngine:
    return HFEngine(handle.model, tokenizer, cfg.gen_batch, handle)


def _vllm(cfg: GRPOConfig, handle, tokenizer, model_name: str, rollouts: int) -> RolloutEngine:
    """On a GPU the engine shares it with the trainer: its memory share is sized from the model and the step's
    rollouts (`tinyeval.vllm.colocated_utilization`); on CPU it gets a KV byte budget instead."""
    from tinyeval.models import default_dtype, model_dir
    from tinyeval.train.rollout.vllm import VLLMEngine
    from tinyeval.vllm import colocated_utilization, on_cpu

    rank = lora_rank(handle)
    if rank is None:
        warnings.warn(f"adapter '{handle.config.method}' has no LoRA form to sync into vLLM; using HF generate",
                      RuntimeWarning, stacklevel=3)
        return _hf(cfg, handle, tokenizer, model_name, rollouts)
    max_len = cfg.max_prompt_tokens + cfg.max_new_tokens
    share = None if on_cpu() else colocated_utilization(handle.model, max_len, rollouts)
    engine = VLLMEngine(model_dir(model_name), tokenizer, rank, dtype=default_dtype(), max_model_len=max_len,
                        sync=cfg.vllm_sync, gpu_memory_utilization=share)
    return engine  # it serves the base weights until GRPO's first rollout syncs the policy (and checks it live)


ENGINES: dict[str, Callable[[GRPOConfig, object, object, str, int], RolloutEngine]] = {"hf": _hf, "vllm": _vllm}


def make_engine(cfg: GRPOConfig, handle, tokenizer, model_name: str, rollouts: int | None = None) -> RolloutEngine:
    """The engine `cfg.engine` names; "auto" picks vLLM on a GPU (if installed) and HF generate on CPU.
    `rollouts`: completions per step (prompts × G), what a vLLM engine's KV cache is sized for (default
    `cfg.gen_batch`).

    On CPU vLLM with the merge sync is only slightly faster per step at SmolLM2's size (benchmarks/grpo_vs_trl.py,
    AVX2 EPYC: 7.7 vs 8.8 s; it decodes ~65 tok/s vs HF's ~47, but the trainer's forward/backward is shared),
    pays a ~30-40 s engine start and more memory, and its resume is not bit-for-bit: HF stays the CPU default
    (robust for any model); runs longer than ~40 steps there finish sooner with `--engine vllm`."""
    name = cfg.engine
    if name == "auto":
        from tinyeval.vllm import on_cpu

        name = "vllm" if not on_cpu() and importlib.util.find_spec("vllm") else "hf"
    return ENGINES[name](cfg, handle, tokenizer, model_name, rollouts or cfg.gen_batch)
