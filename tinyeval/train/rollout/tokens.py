"""Token bookkeeping every rollout engine shares: cut completions at EOS, pad rows into batch tensors."""

from __future__ import annotations

import warnings

import torch

from tinyeval.train.types import Rollouts


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
