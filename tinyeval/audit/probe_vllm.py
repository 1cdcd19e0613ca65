"""vLLM generation for the probes (GPU runs): greedy completions from an engine built once per run.

Only generation goes through vLLM; membership scores need full next-token distributions and stay on the
transformers model, so the engine takes a share of GPU memory and leaves the rest to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def vllm_generate(model: str, gpu_memory_utilization: float = 0.45) -> Callable[[Sequence[str], int], list[str]]:
    from vllm import LLM, SamplingParams

    from tinyeval.models import model_dir

    engine = LLM(model=str(model_dir(model)), seed=0, gpu_memory_utilization=gpu_memory_utilization)

    def generate(prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        return [o.outputs[0].text for o in engine.generate(list(prompts), params, use_tqdm=False)]

    return generate
