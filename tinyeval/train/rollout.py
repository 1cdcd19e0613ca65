"""Rollout engines behind one interface: HF `generate` (in-process, shares the trainer's weights) and vLLM.

An engine samples completions for a list of prompts and, after each optimizer step, is told about the new
policy (`sync`). HF generate runs on the very model being trained, so its sync ships 0 bytes (it folds the
adapter into the weights for the duration of a rollout batch where that is exact and faster); the vLLM
engine (`rollout_vllm.py`) receives the adapter as a rank-r LoRA file, never the full weights.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch

from tinyeval.train.types import Rollouts


@dataclass
class SyncStats:
    """What one weight sync cost: bytes shipped to the engine and wall seconds."""

    bytes: int
    seconds: float


class RolloutEngine(Protocol):
    name: str

    def generate(self, prompts: Sequence[str], max_new_tokens: int, temperature: float, top_p: float) -> Rollouts:
        ...

    def sync(self, handle, step: int) -> SyncStats:
        ...


def collate(tokenizer, prompt_ids: list[list[int]], completion_ids: list[list[int]], texts: list[str],
            logprobs: list[list[float]] | None, seconds: float) -> Rollouts:
    """Pad per-row token lists into the batch tensors: prompts left-padded, completions right-padded."""
    if any(len(c) == 0 for c in completion_ids):
        warnings.warn(f"{sum(len(c) == 0 for c in completion_ids)} empty completion(s): they add no tokens to "
                      "the loss and score as wrong", RuntimeWarning, stacklevel=2)
    pad = tokenizer.pad_token_id
    n, p_len, t_len = len(prompt_ids), max(map(len, prompt_ids)), max(max(map(len, completion_ids)), 1)
    prompt = torch.full((n, p_len), pad, dtype=torch.long)  # [N, P]
    completion = torch.full((n, t_len), pad, dtype=torch.long)  # [N, T]
    lp = torch.zeros(n, t_len)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        prompt[i, p_len - len(p):] = torch.tensor(p, dtype=torch.long)
        completion[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        if logprobs is not None:
            lp[i, : len(c)] = torch.tensor(logprobs[i], dtype=torch.float32)
    p_mask = torch.arange(p_len).expand(n, -1) >= torch.tensor([p_len - len(p) for p in prompt_ids]).unsqueeze(1)
    c_mask = torch.arange(t_len).expand(n, -1) < torch.tensor([len(c) for c in completion_ids]).unsqueeze(1)
    return Rollouts(prompt, p_mask, completion, c_mask, texts, lp if logprobs is not None else None,
                    sum(map(len, completion_ids)), seconds)


def cut_at_eos(ids: list[int], eos: set[int]) -> list[int]:
    """Completion tokens up to and including the first EOS (kept: the policy chose to stop there)."""
    for i, t in enumerate(ids):
        if t in eos:
            return ids[: i + 1]
    return ids


class HFEngine:
    """Batched, sampled HF `generate` on the trainer's own model (bf16 on CPU is as fast as vLLM+LoRA here).

    Rows are generated in order of prompt length so that left padding wastes little compute. Sampling uses
    torch's global RNG, which the trainer checkpoints: a resumed run samples the same completions. Given the
    adapter `handle`, generation runs inside `handle.for_generation()` (TinyLoRA / LoRA-XS: delta merged, base
    weights restored bit for bit afterwards).
    """

    name = "hf"

    def __init__(self, model, tokenizer, batch_size: int = 32, handle=None) -> None:
        self.model, self.tokenizer, self.batch_size, self.handle = model, tokenizer, batch_size, handle
        eos = model.generation_config.eos_token_id if model.generation_config else tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos or tokenizer.eos_token_id])

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0) -> Rollouts:
        start = time.perf_counter()
        tok = self.tokenizer
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        out: list[list[int]] = [[] for _ in ids]
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 \
            else dict(do_sample=False)
        was_training = self.model.training
        self.model.eval()
        with self.handle.for_generation() if self.handle is not None else nullcontext():
            self._generate(ids, out, max_new_tokens, sampling)
        self.model.train(was_training)
        texts = tok.batch_decode(out, skip_special_tokens=True)
        return collate(tok, ids, out, texts, None, time.perf_counter() - start)

    def _generate(self, ids: list[list[int]], out: list[list[int]], max_new_tokens: int, sampling: dict) -> None:
        """Fill `out[i]` with prompt i's completion, batch by batch in order of prompt length."""
        tok = self.tokenizer
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            width = max(len(ids[i]) for i in idx)
            batch = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)  # [b, P] left-padded
            mask = torch.zeros(len(idx), width, dtype=torch.long)
            for row, i in enumerate(idx):
                batch[row, width - len(ids[i]):] = torch.tensor(ids[i])
                mask[row, width - len(ids[i]):] = 1
            gen = self.model.generate(input_ids=batch.to(self.model.device), attention_mask=mask.to(self.model.device),
                                      max_new_tokens=max_new_tokens,
                                      pad_token_id=tok.pad_token_id, **sampling)  # [b, P + T_new]
            for row, i in enumerate(idx):
                out[i] = cut_at_eos(gen[row, width:].tolist(), self.eos)

    def sync(self, handle, step: int) -> SyncStats:
        return SyncStats(0, 0.0)  # generates with the trained model itself: nothing to ship

    def close(self) -> None:
        pass


def _hf(cfg, handle, tokenizer, model_name: str):
    return HFEngine(handle.model, tokenizer, cfg.gen_batch, handle)


def _vllm(cfg, handle, tokenizer, model_name: str):
    from tinyeval.train.rollout_vllm import VLLMEngine

    return VLLMEngine.for_handle(handle, tokenizer, model_name, cfg)


ENGINES = {"hf": _hf, "vllm": _vllm}


def make_engine(cfg, handle, tokenizer, model_name: str):
    """The engine `cfg.engine` names; "auto" picks vLLM on a GPU (if installed) and HF generate on CPU.

    On CPU vLLM with the merge sync is only slightly faster per step at SmolLM2's size (benchmarks/grpo_vs_trl.py,
    AVX2 EPYC: 7.7 vs 8.8 s; it decodes ~65 tok/s vs HF's ~47, but the trainer's forward/backward is shared),
    pays a ~30-40 s engine start and more memory, and its resume is not bit-for-bit: HF stays the CPU default
    (robust for any model); runs longer than ~40 steps there finish sooner with `--engine vllm`."""
    name = cfg.engine
    if name == "auto":
        import importlib.util

        name = "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"
    return ENGINES[name](cfg, handle, tokenizer, model_name)
