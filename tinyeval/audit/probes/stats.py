"""Statistics for leakage probes: AUROC and percentile-bootstrap 95% confidence intervals.

Every probe signal is reported as value [lo, hi]. A paired signal (an item and its own perturbed twin)
resamples items, keeping each pair together, because the pairing is what removes the difficulty of the item
from the comparison; a signal over two independent groups (benchmark items vs GSM1k) resamples each group
on its own. The percentile bootstrap is enough here: the probes ask "is this far from chance", not for
second-order accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

DEFAULT_BOOT = 2000


@dataclass(frozen=True)
class Estimate:
    """A statistic with its 95% percentile-bootstrap interval and the sample size behind it."""

    value: float
    lo: float
    hi: float
    n: int

    def covers(self, x: float) -> bool:
        return self.lo <= x <= self.hi

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a random positive > a random negative), ties counting one half (Mann-Whitney U / n1 n0).

    Positives are the suspected members (benchmark items), negatives the controls: 0.5 means the score
    cannot tell them apart, 1.0 that every benchmark item looks more familiar than every control.
    """
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        raise ValueError("AUROC needs at least one positive and one negative score")
    ranks = rankdata(np.concatenate([pos, neg]))  # ties get their average rank
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def _interval(value: float, boots: np.ndarray, n: int, alpha: float) -> Estimate:
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return Estimate(float(value), float(lo), float(hi), n)


def mean_ci(x, n_boot: int = DEFAULT_BOOT, alpha: float = 0.05, seed: int = 0) -> Estimate:
    """Mean of `x` with its bootstrap interval (accuracy, exact-match rate, mean ROUGE-L)."""
    x = np.asarray(x, float)
    idx = np.random.default_rng(seed).integers(0, len(x), (n_boot, len(x)))  # (B, n)
    return _interval(x.mean(), x[idx].mean(axis=1), len(x), alpha)


def paired_diff_ci(a, b, n_boot: int = DEFAULT_BOOT, alpha: float = 0.05, seed: int = 0) -> Estimate:
    """mean(a - b) over pairs (original, twin), resampling pairs together."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    return mean_ci(a - b, n_boot, alpha, seed)


def auroc_ci(pos, neg, paired: bool = False, n_boot: int = DEFAULT_BOOT, alpha: float = 0.05,
             seed: int = 0) -> Estimate:
    """AUROC with a bootstrap interval; `paired` resamples (pos[i], neg[i]) pairs together."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    rng = np.random.default_rng(seed)
    if paired:
        if pos.shape != neg.shape:
            raise ValueError(f"paired samples differ in length: {len(pos)} vs {len(neg)}")
        draws = [(i, i) for i in rng.integers(0, len(pos), (n_boot, len(pos)))]
    else:
        draws = zip(rng.integers(0, len(pos), (n_boot, len(pos))), rng.integers(0, len(neg), (n_boot, len(neg))))
    boots = np.array([auroc(pos[i], neg[j]) for i, j in draws])
    return _interval(auroc(pos, neg), boots, len(pos) + len(neg), alpha)


def bootstrap_ci(stat: Callable[[np.ndarray], float], x, n_boot: int = DEFAULT_BOOT, alpha: float = 0.05,
                 seed: int = 0) -> Estimate:
    """Any statistic of one sample (rows of `x` resampled) with its percentile interval."""
    x = np.asarray(x)
    idx = np.random.default_rng(seed).integers(0, len(x), (n_boot, len(x)))
    return _interval(stat(x), np.array([stat(x[i]) for i in idx]), len(x), alpha)


def diff_ci(a, b, n_boot: int = DEFAULT_BOOT, alpha: float = 0.05, seed: int = 0) -> Estimate:
    """mean(a) - mean(b) for two independent samples (benchmark vs control), each resampled on its own."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    boots = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1) - b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1)
    return _interval(a.mean() - b.mean(), boots, len(a) + len(b), alpha)
