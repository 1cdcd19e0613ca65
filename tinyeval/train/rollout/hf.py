"""Rollouts with HF `generate` on the trainer's own model: no weights to ship, bit-for-bit resumable."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext

import torch

from tinyeval.train.rollout.tokens import collate, cut_at_eos
from tinyeval.train.types import Rollouts, SyncStats


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

