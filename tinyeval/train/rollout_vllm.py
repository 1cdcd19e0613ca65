"""vLLM rollouts with adapter-sized weight sync: each step ships the policy as a rank-r LoRA file.

TinyLoRA's dW = B R A has rank <= r, so `handle.export_lora` writes it as a standard PEFT LoRA of rank r
(a few MB for SmolLM2 at r = 2, against ~270 MB of merged bf16 weights that TRL copies each step) and the
engine gets a new `LoRARequest` pointing at it. vLLM reports the sampled tokens' log-probs itself; the
trainer's own log-probs differ slightly (kernels, bf16), and truncated importance sampling corrects that.

Full fine-tuning has no LoRA form; CPU vLLM repacks linear weights after loading and cannot reload them in
place, so a full-FT run falls back to HF generate (with a warning). Sampling uses the engine's seed, not a
per-request seed (per-request seeds crash CPU sampling), so a vLLM run is reproducible from its start but
a `--resume` is not bit-for-bit (the engine's RNG state cannot be saved); HF generate's is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from tinyeval.train.rollout import HFEngine, SyncStats, collate, cut_at_eos
from tinyeval.train.types import Rollouts

_VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # max_lora_rank values vLLM accepts


def _rank_bucket(rank: int) -> int:
    return next(r for r in _VLLM_RANKS if r >= rank)


class VLLMEngine:
    name = "vllm"

    def __init__(self, model_dir: str | Path, tokenizer, rank: int, seed: int = 0, dtype: str = "bfloat16",
                 max_model_len: int = 2048, **llm_kwargs) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; the default takes a large share of RAM
        from vllm import LLM

        self.tokenizer = tokenizer
        self.llm = LLM(model=str(model_dir), tokenizer=str(model_dir), enable_lora=True,
                       max_lora_rank=_rank_bucket(rank), max_loras=1, max_cpu_loras=2, enforce_eager=True,
                       dtype=dtype, seed=seed, max_model_len=max_model_len, logprobs_mode="processed_logprobs",
                       **llm_kwargs)
        self.eos = {tokenizer.eos_token_id}
        self.lora = None
        self._dir = Path(tempfile.mkdtemp(prefix="tinyeval-lora-"))
        self._last: Path | None = None

    @classmethod
    def for_handle(cls, handle, tokenizer, model_name: str, cfg):
        """An engine serving `handle`'s base model with its adapter (HF generate for full fine-tuning)."""
        from tinyeval.models import default_dtype, model_dir

        adapter_cfg = getattr(handle, "config", None)
        if getattr(adapter_cfg, "method", None) == "full":
            warnings.warn("full fine-tuning cannot sync weights into CPU vLLM in place; using HF generate",
                          RuntimeWarning, stacklevel=2)
            return HFEngine(handle.model, tokenizer, cfg.gen_batch, handle)
        rank = getattr(adapter_cfg, "rank", None) or getattr(handle, "rank", 2)
        engine = cls(model_dir(model_name), tokenizer, rank, dtype=default_dtype(),
                     max_model_len=cfg.max_prompt_tokens + cfg.max_new_tokens)
        engine.sync(handle, 0)
        return engine

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
        """Export the adapter as a rank-r LoRA and point a new LoRARequest at it; bytes = the file shipped."""
        from vllm.lora.request import LoRARequest

        start = time.perf_counter()
        path = handle.export_lora(self._dir / f"step-{step:06d}")
        size = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
        self.lora = LoRARequest(f"policy-{step}", step + 1, str(path))
        if self._last is not None:
            shutil.rmtree(self._last, ignore_errors=True)
        self._last = Path(path)
        return SyncStats(size, time.perf_counter() - start)

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
        del self.llm
