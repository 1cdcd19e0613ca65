"""Membership scores from one forward pass: mean log-prob, Min-K% and Min-K%++.

Min-K% (Shi et al. 2024) averages the k% least likely tokens of a text: a memorised text has few surprising
tokens. Min-K%++ (Zhang et al. 2024) first normalises each token's log-prob by what the model expected at
that position, z_t = (log p(x_t) - mu_t) / sigma_t with mu_t = E_{v~p}[log p(v)] and sigma_t^2 = Var_{v~p}
[log p(v)] under the next-token distribution, so a token counts as familiar only if it is a local mode of
the distribution rather than merely a likely word. Both need the full distribution at every position, which
is why these scores always run on a transformers model (vLLM returns only top-k log-probs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

MIN_K = 0.2  # the papers' default share of lowest-scoring tokens


@dataclass(frozen=True)
class TokenStats:
    """Per-token statistics of one text (its first token has no context and is left out)."""

    logp: np.ndarray  # (T-1,) log p(x_t | x_<t)
    mu: np.ndarray  # (T-1,) E_{v~p}[log p(v)]
    sigma: np.ndarray  # (T-1,) std_{v~p}[log p(v)]


def _lowest_mean(values: np.ndarray, k: float) -> float:
    n = max(1, int(len(values) * k))
    return float(np.sort(values)[:n].mean())


def scores(stats: TokenStats, k: float = MIN_K) -> dict[str, float]:
    """Higher = more familiar, for every score: mean log-prob, Min-K%, Min-K%++."""
    z = (stats.logp - stats.mu) / stats.sigma
    return {"logprob": float(stats.logp.mean()), "min_k": _lowest_mean(stats.logp, k),
            "min_k_pp": _lowest_mean(z, k)}


@torch.inference_mode()
def token_stats(model, tokenizer, texts: Sequence[str], batch_size: int = 4) -> list[TokenStats]:
    """TokenStats of each text, in input order; texts are scored raw (no chat template), as pretraining saw them.

    Batches are padded on the right so that every real token keeps the positions it has when scored alone.
    """
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[TokenStats | None] = [None] * len(texts)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True).to(model.device)
            logits = model(**enc).logits[:, :-1].float()  # (B, T-1, V): predicts tokens 1..T-1
            logp = torch.log_softmax(logits, dim=-1)  # (B, T-1, V)
            target = enc["input_ids"][:, 1:]  # (B, T-1)
            tok = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
            p = logp.exp()
            mu = (p * logp).sum(-1)  # (B, T-1)
            sigma = ((p * logp.square()).sum(-1) - mu.square()).clamp_min(1e-12).sqrt()  # (B, T-1)
            lengths = enc["attention_mask"].sum(1) - 1  # scored tokens per row
            for row, i in enumerate(idx):
                n = int(lengths[row])
                out[i] = TokenStats(tok[row, :n].cpu().numpy(), mu[row, :n].cpu().numpy(),
                                    sigma[row, :n].cpu().numpy())
    finally:
        tokenizer.padding_side = side
    return out  # type: ignore[return-value]


def score_texts(model, tokenizer, texts: Sequence[str], k: float = MIN_K, batch_size: int = 4) -> dict[str, np.ndarray]:
    """Each score for each text: {"logprob": (N,), "min_k": (N,), "min_k_pp": (N,)}."""
    rows = [scores(s, k) for s in token_stats(model, tokenizer, texts, batch_size)]
    return {name: np.array([r[name] for r in rows]) for name in ("logprob", "min_k", "min_k_pp")}
