"""vLLM rollouts with adapter-sized weight sync: each step ships the policy as a rank-r LoRA file.

TinyLoRA's dW = B R A has rank <= r, so `handle.export_lora` writes it as a standard PEFT LoRA of rank r
(a few MB for SmolLM2 at r = 2, against ~270 MB of merged bf16 weights that TRL copies each step). Two ways
to apply it (`--vllm-sync`): `lora` points a new `LoRARequest` at the file (vLLM's LoRA kernels, the right
choice on GPUs); `merge` has the engine's worker add the file's B @ A to its own copy of the base weights
and repack them (`vllm_merge`), so generation runs at the speed of the plain model — on CPU, where vLLM's
LoRA path decodes several times slower, that is the default. vLLM reports the sampled tokens' log-probs
itself; the trainer's own log-probs differ slightly (kernels, bf16), and truncated importance sampling
corrects that.

Sampling uses the engine's seed, not a per-request seed (per-request seeds crash CPU sampling), so a vLLM run is
reproducible from its start but a `--resume` is not bit-for-bit (the engine's RNG state cannot be saved); HF
generate's is. Which adapters can be served this way is decided in `engines.py`.

Every sync is followed by the adapter liveness check (`tinyeval.eval.liveness`: the engine's next-token log-probs
on a few probe prompts against the trainer's adapted model and its base), until the check first sees the adapter
live; a sync that did not reach the engine stops the run with one line. The engine starts on the base weights (what
the random-reward control's calibration samples); GRPO syncs the policy before its first rollout (after a resumed
run has loaded its checkpoint, so a resumed run's policy is proven before it samples) and after every update. At
the start of a fresh run the adapter is usually exactly the base model (TinyLoRA v = 0, LoRA B = 0: verdict
"no-op"), so the syncs after it has first moved are the ones that prove the weight path. The probes are greedy:
they draw nothing from the engine's seeded stream.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tinyeval.train.rollout.tokens import collate, cut_at_eos
from tinyeval.train.types import Rollouts, SyncStats


def resolve_sync(sync: str) -> str:
    """"auto": merge on CPU (vLLM's CPU LoRA path is the slow part of a step), a LoRARequest on GPUs."""
    from tinyeval.vllm import on_cpu

    if sync == "auto":
        return "merge" if on_cpu() else "lora"
    return sync


class VLLMEngine:
    name = "vllm"

    def __init__(self, model_dir: str | Path, tokenizer, rank: int, seed: int = 0, dtype: str = "bfloat16",
                 max_model_len: int = 2048, sync: str = "auto", gpu_memory_utilization: float | None = None,
                 **llm_kwargs) -> None:
        """`gpu_memory_utilization`: the engine's share of the GPU beside the trainer (`tinyeval.vllm.
        colocated_utilization`); ignored on CPU. The engine stays eager on GPUs too: CUDA graphs would cost a
        capture at every start and memory outside that share."""
        from tinyeval.vllm import make_llm, vllm_lora_rank

        self.mode = resolve_sync(sync)
        if self.mode == "lora":
            llm_kwargs.update(enable_lora=True, max_lora_rank=vllm_lora_rank(rank), max_loras=1, max_cpu_loras=2)
        else:
            llm_kwargs["worker_extension_cls"] = "tinyeval.train.rollout.vllm_merge.MergeLoRA"
        self.tokenizer = tokenizer
        self.model_dir = str(model_dir)
        self.llm = make_llm(self.model_dir, dtype, seed=seed, eager=True, tokenizer=self.model_dir,
                            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                            logprobs_mode="processed_logprobs", **llm_kwargs)
        self.eos = {tokenizer.eos_token_id}
        self.dtype = dtype
        self.liveness = None  # the last liveness record (`LivenessJson`); no more checks once it is "live"
        self.lora = None
        self.syncs = 0  # LoRARequest ids: vLLM caches an adapter by its id, so every sync gets a new one
        self._dir = Path(tempfile.mkdtemp(prefix="tinyeval-lora-"))
        self._last: Path | None = None

    def generate(self, prompts: Sequence[str], max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0) -> Rollouts:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        start = time.perf_counter()
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        params = SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_new_tokens, logprobs=0)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params,
                                 lora_request=self.lora, use_tqdm=False)
        completions, logprobs = [], []
        for o in outs:
            c = o.outputs[0]
            toks = cut_at_eos(list(c.token_ids), self.eos)
            completions.append(toks)
            logprobs.append([step[t].logprob for step, t in zip(c.logprobs or [], toks)])
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        return collate(self.tokenizer, ids, completions, texts, logprobs, time.perf_counter() - start)

    def sync(self, handle, step: int) -> SyncStats:
        """Export the adapter as a rank-r LoRA, then serve it (lora) or merge it in the worker (merge).

        Bytes = the file shipped, the same in both modes. After a merge the prefix cache is reset: its KV
        blocks were computed with the old weights. A LoRARequest gets an id never used before in this engine
        (vLLM would serve a cached adapter under a reused id), so its KV blocks are keyed apart too."""
        from vllm.lora.request import LoRARequest

        start = time.perf_counter()
        self.syncs += 1
        path = handle.export_lora(self._dir / f"sync-{self.syncs:06d}")
        size = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
        if self.mode == "lora":
            self.lora = LoRARequest(f"policy-{step}-{self.syncs}", self.syncs, str(path))
        else:
            self.llm.collective_rpc("tinyeval_merge_lora", args=(str(path), self.model_dir))
            self.llm.reset_prefix_cache()
        if self._last is not None:
            shutil.rmtree(self._last, ignore_errors=True)
        self._last = Path(path)
        if self.liveness is None or self.liveness["verdict"] != "live":
            self.check_live(handle)
        return SyncStats(size, time.perf_counter() - start)

    def check_live(self, handle):
        """The engine's served policy against the trainer's (`liveness.check`); raises if a sync did not reach it."""
        from tinyeval.eval.liveness import TOP_K, check, reference, tolerance
        from tinyeval.vllm import probe_logprobs

        trainer_dtype = next(handle.model.parameters()).dtype  # `tolerance` reads torch dtypes too
        self.liveness = check(reference(handle, self.tokenizer), probe_logprobs(self.llm, TOP_K, self.lora),
                              "vllm-lora" if self.mode == "lora" else "vllm-merge-sync",
                              tolerance(self.dtype, trainer_dtype))
        if self.mode == "merge":
            self.llm.reset_prefix_cache()
        return self.liveness

    def close(self) -> None:
        from tinyeval.vllm import shutdown

        shutil.rmtree(self._dir, ignore_errors=True)
        shutdown(self.llm)
        del self.llm
