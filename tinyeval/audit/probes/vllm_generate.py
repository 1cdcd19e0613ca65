"""vLLM generation for the probes: greedy completions from an engine built once per run.

Only generation goes through vLLM; membership scores need full next-token distributions and stay on the
transformers model, so on a GPU the engine takes a share of memory and leaves the rest to it. The engine comes
from `tinyeval.vllm.make_llm` (on CPU: a fixed KV-cache budget, all cores on small machines, eager).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path


def vllm_generate(model_dir: str | Path, dtype: str,
                  gpu_memory_utilization: float = 0.45) -> Callable[[Sequence[str], int], list[str]]:
    import atexit

    from vllm import SamplingParams

    from tinyeval.vllm import make_llm, shutdown

    engine = make_llm(model_dir, dtype, seed=0, gpu_memory_utilization=gpu_memory_utilization)
    atexit.register(shutdown, engine)  # runs before vLLM's own exit finalizer (LIFO): a graceful stop

    def generate(prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        return [o.outputs[0].text for o in engine.generate(list(prompts), params, use_tqdm=False)]

    return generate
