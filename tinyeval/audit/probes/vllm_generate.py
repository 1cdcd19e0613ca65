"""vLLM generation for the probes: greedy completions from an engine built once per run.

Only generation goes through vLLM; membership scores need full next-token distributions and stay on the
transformers model, so on a GPU the engine takes a share of memory and leaves the rest to it. On CPU the
engine gets `vllm_cpu_settings` (a fixed KV-cache budget, all cores on small machines) and runs eager
(engine start ~25 s instead of ~80 s: the compile cache does not reload).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path


def vllm_generate(model_dir: str | Path, dtype: str,
                  gpu_memory_utilization: float = 0.45) -> Callable[[Sequence[str], int], list[str]]:
    import torch
    from vllm import LLM, SamplingParams

    from tinyeval.eval.backends import vllm_cpu_settings

    if torch.cuda.is_available():
        engine = LLM(model=str(model_dir), seed=0, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization)
    else:
        engine = LLM(model=str(model_dir), seed=0, dtype=dtype, enforce_eager=True, **vllm_cpu_settings())

    def generate(prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        return [o.outputs[0].text for o in engine.generate(list(prompts), params, use_tqdm=False)]

    return generate
