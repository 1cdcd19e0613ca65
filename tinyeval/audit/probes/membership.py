"""The membership probe: mean log-prob, Min-K% and Min-K%++ from one forward pass, as AUROCs.

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

from tinyeval.audit.probes.config import Model, ProbeConfig, ProbeData, Signal, sample
from tinyeval.audit.probes.stats import auroc_ci

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
def token_stats(model, tokenizer, texts: Sequence[str], batch_size: int = 4, chunk: int = 64) -> list[TokenStats]:
    """TokenStats of each text, in input order; texts are scored raw (no chat template), as pretraining saw them.

    Batches are padded on the right so that every real token keeps the positions it has when scored alone.
    The distribution statistics are taken over the real tokens only, `chunk` positions at a time: a whole
    batch's (B, T, V) fp32 log-softmax, exp and products are hundreds of MB of temporaries (V = 49k for
    SmolLM2) that run at memory speed, and the padded positions would be computed for nothing.
    """
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[TokenStats | None] = [None] * len(texts)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True).to(model.device)
            real = enc["attention_mask"][:, 1:].bool()  # (B, T-1): position t predicts token t+1
            logits = model(**enc).logits[:, :-1][real]  # (N, V): the real predicted positions, row-major
            target = enc["input_ids"][:, 1:][real]  # (N,)
            stats = torch.empty(3, len(target))  # logp, mu, sigma per position
            for c in range(0, len(target), chunk):
                logp = torch.log_softmax(logits[c:c + chunk].float(), dim=-1)  # (C, V)
                p = logp.exp()
                mu = (p * logp).sum(-1)
                stats[0, c:c + chunk] = logp.gather(-1, target[c:c + chunk, None])[:, 0].cpu()
                stats[1, c:c + chunk] = mu.cpu()
                stats[2, c:c + chunk] = ((p * logp.square()).sum(-1) - mu.square()).clamp_min(1e-12).sqrt().cpu()
            ends = real.sum(1).cumsum(0).tolist()  # each row's real positions are contiguous in (N,)
            for row, i in enumerate(idx):
                a, b = (ends[row - 1] if row else 0), ends[row]
                out[i] = TokenStats(*(stats[j, a:b].numpy() for j in range(3)))
    finally:
        tokenizer.padding_side = side
    return out  # type: ignore[return-value]


def score_texts(model, tokenizer, texts: Sequence[str], k: float = MIN_K, batch_size: int = 4) -> dict[str, np.ndarray]:
    """Each score for each text: {"logprob": (N,), "min_k": (N,), "min_k_pp": (N,)}."""
    rows = [scores(s, k) for s in token_stats(model, tokenizer, texts, batch_size)]
    return {name: np.array([r[name] for r in rows]) for name in ("logprob", "min_k", "min_k_pp")}


def probe(model: Model, data: ProbeData, config: ProbeConfig) -> list[Signal]:
    """AUROC of Min-K% / Min-K%++: sampled benchmark items against the control set, and the sampled items
    that have a twin against their own twins, paired."""
    picked = sample(range(len(data.rows)), config.n_membership, config.seed)
    twin_of = {t.index: t.question for t in data.twins}
    twins = {k: twin_of[i] for k, i in enumerate(picked) if i in twin_of}  # position in `picked` -> twin text

    def score(batch: list[str]) -> dict[str, np.ndarray]:
        return score_texts(model.hf, model.tokenizer, batch, config.k, max(1, config.batch_size // 4))

    bench, ctrl = score([data.rows[i][data.field] for i in picked]), score(data.control)
    paired = sorted(twins)
    twin = score([twins[i] for i in paired]) if paired else None
    signals = []
    for name, label in (("min_k", "Min-K%"), ("min_k_pp", "Min-K%++")):
        detail = {"bench_mean": float(bench[name].mean()), "control_mean": float(ctrl[name].mean()),
                  "logprob_auroc_control": str(auroc_ci(bench["logprob"], ctrl["logprob"], n_boot=config.n_boot))}
        if twin is not None:
            detail["logprob_auroc_twins"] = str(auroc_ci(bench["logprob"][paired], twin["logprob"], paired=True,
                                                         n_boot=config.n_boot))
            signals.append(Signal("membership", f"{label} AUROC vs perturbed twins",
                                  auroc_ci(bench[name][paired], twin[name], paired=True, n_boot=config.n_boot),
                                  0.5, "benchmark items more familiar than the same items with new numbers", detail))
        signals.append(Signal("membership", f"{label} AUROC vs {data.control_name}",
                              auroc_ci(bench[name], ctrl[name], n_boot=config.n_boot), 0.5,
                              f"benchmark items more familiar than {data.control_name} items", detail))
    return signals
