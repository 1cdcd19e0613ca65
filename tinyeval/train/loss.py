"""GRPO pieces as small functions picked from dicts: advantages, the clipped objective, aggregation, KL, TIS.

Shapes: N rows (prompts × G, prompt-major), T completion tokens; `mask` is [N, T] bool.

    advantage   A_i = r_i - mean(group)             then / std over the group ("group", GRPO),
                                                    the batch ("batch") or not at all ("none", Dr. GRPO)
    ratio       rho_t = exp(logp_t - logp_old_t)
    per token   l_t = -min(rho_t A, clip(rho_t, 1 - eps_low, 1 + eps_high) A) * w_t + beta * k3_t
    TIS         w_t = min(exp(logp_old_t - logp_rollout_t), cap): the rollout engine sampled from its own
                numerics (vLLM bf16 kernels), the trainer scores with its own; w reweights that mismatch
    KL (k3)     k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1   (unbiased, always >= 0)
    aggregate   token-mean (DAPO), seq-mean (GRPO), dr-grpo (sum / (N × max_new_tokens))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

EPS = 1e-6


# ---- advantages ---------------------------------------------------------------------------------------

def _group_view(x: torch.Tensor, group_size: int) -> torch.Tensor:
    return x.view(-1, group_size)  # [N/G, G]


def _masked_mean(x: torch.Tensor, valid: torch.Tensor, dim=None) -> torch.Tensor:
    w = valid.to(x.dtype)
    return (x * w).sum(dim) / w.sum(dim).clamp(min=1)


def _masked_std(x: torch.Tensor, valid: torch.Tensor, dim=None) -> torch.Tensor:
    """Unbiased std over the valid entries (torch.std's convention); 0 with fewer than two."""
    w = valid.to(x.dtype)
    mean = _masked_mean(x, valid, dim)
    mean = mean.unsqueeze(-1) if dim is not None else mean
    var = (((x - mean) ** 2) * w).sum(dim) / (w.sum(dim) - 1).clamp(min=1)
    return var.sqrt()


def _scale_group(centred, valid, group_size):
    std = _masked_std(_group_view(centred, group_size), _group_view(valid, group_size), dim=1)  # [N/G]
    return (_group_view(centred, group_size) / (std.unsqueeze(1) + EPS)).reshape(-1)


def _scale_batch(centred, valid, group_size):
    return centred / (_masked_std(centred, valid) + EPS)


def _scale_none(centred, valid, group_size):
    return centred


ADVANTAGE_SCALES: dict[str, Callable] = {"group": _scale_group, "batch": _scale_batch, "none": _scale_none}


def advantages(rewards: torch.Tensor, group_size: int, scale: str = "group",
               valid: torch.Tensor | None = None) -> torch.Tensor:
    """Group-normalised advantages [N]; invalid (NaN) rewards are left out of the stats and get 0."""
    valid = torch.isfinite(rewards) if valid is None else valid & torch.isfinite(rewards)
    r = torch.where(valid, rewards, torch.zeros_like(rewards)).float()
    mean = _masked_mean(_group_view(r, group_size), _group_view(valid, group_size), dim=1)  # [N/G]
    centred = (_group_view(r, group_size) - mean.unsqueeze(1)).reshape(-1)  # [N]
    adv = ADVANTAGE_SCALES[scale](centred, valid, group_size)
    return torch.where(valid, adv, torch.zeros_like(adv))


# ---- per-token terms ----------------------------------------------------------------------------------

def clipped_objective(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps_low: float,
                      eps_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate as a per-token loss [N, T] and where the clip was active [N, T] bool."""
    ratio = torch.exp(logp - old_logp)  # [N, T]
    a = adv.unsqueeze(1)  # [N, 1]
    unclipped = ratio * a
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * a
    return -torch.minimum(unclipped, clipped), clipped < unclipped


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(policy || ref) per token [N, T]."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def tis_weights(old_logp: torch.Tensor, rollout_logp: torch.Tensor, cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated importance weights [N, T] (no gradient) and the raw ratios, for the statistics."""
    raw = torch.exp(old_logp - rollout_logp).detach()
    return raw.clamp(max=cap), raw


# ---- aggregation --------------------------------------------------------------------------------------

def _token_mean(loss, mask, max_tokens):
    return (loss * mask).sum() / mask.sum().clamp(min=1)


def _seq_mean(loss, mask, max_tokens):
    per_seq = (loss * mask).sum(1) / mask.sum(1).clamp(min=1)  # [N]
    return per_seq.mean()


def _dr_grpo(loss, mask, max_tokens):
    return (loss * mask).sum() / (mask.shape[0] * max_tokens)


AGGREGATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "token-mean": _token_mean, "seq-mean": _seq_mean, "dr-grpo": _dr_grpo}


# ---- the GRPO loss ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LossConfig:
    eps_low: float = 0.2  # lower clip: ratio below 1 - eps_low stops pushing a negative-advantage token down
    eps_high: float = 0.2  # upper clip (DAPO "clip-higher" uses a larger one, e.g. 0.28; the fork 0.4)
    aggregation: str = "token-mean"  # one of AGGREGATIONS
    kl_coef: float = 0.0  # beta for the k3 KL against the base model (adapter disabled); 0 = no KL
    tis_cap: float = 2.0  # truncated importance sampling cap; only matters when the engine's log-probs differ
    max_tokens: int = 256  # the Dr. GRPO constant normaliser (max_new_tokens)

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {list(AGGREGATIONS)}, got {self.aggregation!r}")
        if self.eps_low < 0 or self.eps_high < 0 or self.kl_coef < 0 or self.tis_cap <= 0:
            raise ValueError("eps_low, eps_high, kl_coef must be >= 0 and tis_cap > 0")


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, rollout_logp: torch.Tensor, adv: torch.Tensor,
              mask: torch.Tensor, cfg: LossConfig, ref_logp: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """Scalar loss and its statistics for one (micro)batch; all [N, T] except adv [N] and the scalar."""
    per_token, clipped = clipped_objective(logp, old_logp, adv, cfg.eps_low, cfg.eps_high)
    w, raw = tis_weights(old_logp, rollout_logp, cfg.tis_cap)
    per_token = per_token * w
    stats = {}
    if cfg.kl_coef > 0 and ref_logp is not None:
        kl = kl_k3(logp, ref_logp)
        per_token = per_token + cfg.kl_coef * kl
        stats["kl"] = float(_token_mean(kl.detach(), mask, 0))
    m = mask.bool()
    n = max(int(m.sum()), 1)
    stats.update(
        clip_frac=float(clipped[m].sum()) / n,
        is_ratio_mean=float(raw[m].mean()) if m.any() else 1.0,
        is_ratio_max=float(raw[m].max()) if m.any() else 1.0,
        is_capped_frac=float((raw[m] > cfg.tis_cap).sum()) / n,
    )
    return AGGREGATIONS[cfg.aggregation](per_token, mask.to(per_token.dtype), cfg.max_tokens), stats


# Micro-batching: the loss of a full batch is the weighted sum of its micro-batch losses with these weights
# (exact for every aggregation), so gradient accumulation changes memory, never the update.
MICRO_WEIGHTS: dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {
    "token-mean": lambda micro, full: float(micro.sum()) / max(float(full.sum()), 1.0),
    "seq-mean": lambda micro, full: micro.shape[0] / full.shape[0],
    "dr-grpo": lambda micro, full: micro.shape[0] / full.shape[0],
}
