"""The statistics every view of a run shows: a cell's mean over seeds, the 95% interval across seeds, and the
paired per-item interval of its difference to the base model.

Two intervals answer two questions. Across seeds (`seed_interval`): how much does the result move when the
training is repeated with another seed (adapter init, data order, sampling)? A Student-t interval on the seeds'
scores, mean ± t(0.975, k-1)·sd/√k, since k is small (the paper uses 3). Across items (`delta`): is the cell
better than the base on these test items? The per-item difference of correctness, each item's correctness
averaged over the cell's seeds first, so the interval pairs the same items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tinyeval.report.results import SeedRun, TaskScore

Z95 = 1.959964


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _sd(xs: list[float]) -> float:
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def mean_score(seeds: list[SeedRun], task: str) -> TaskScore | None:
    """The seeds' mean score on `task` (None when no finished seed has one): value, strict and lenient averaged;
    `correct` is each item's mean correctness when every seed kept per-item results for the same items; `stderr`
    the mean of the seeds' item-sampling standard errors (the same items, so they do not shrink with k)."""
    scores = [s.scores[task] for s in seeds if s.status == "done" and task in s.scores]
    if not scores:
        return None
    if len(scores) == 1:
        return scores[0]

    def avg(name: str) -> float | None:
        values = [getattr(s, name) for s in scores]
        return None if None in values else _mean(values)

    def per_item(name: str) -> list[float] | None:
        items = [getattr(s, name) for s in scores]
        same = None not in items and len({len(c) for c in items}) == 1 and len({tuple(s.ids or ()) for s in scores}) == 1
        return [_mean(list(col)) for col in zip(*items)] if same else None

    return TaskScore(scores[0].metric, avg("value"), avg("stderr"), scores[0].n, avg("strict"), avg("lenient"),
                     per_item("correct"), scores[0].ids, per_item("strict_correct"), per_item("lenient_correct"))


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% interval, in score units (fractions), shown in points; `k` values went into it."""

    value: float
    low: float
    high: float
    k: int = 0
    paired: bool = False  # a `Delta` paired over items (else from two standard errors)

    def __str__(self) -> str:
        return f"[{self.low * 100:.1f}, {self.high * 100:.1f}]"


def t_quantile(df: float, p: float = 0.975) -> float:
    """Student's t quantile (scipy): 12.71 for df 1, 4.30 for df 2, 2.78 for df 4."""
    from scipy.stats import t

    return float(t.ppf(p, df))


def t_interval(values: list[float]) -> Interval | None:
    """The mean of `values` with its 95% Student-t interval; None with fewer than two."""
    if len(values) < 2:
        return None
    m, half = _mean(values), t_quantile(len(values) - 1) * _sd(values) / math.sqrt(len(values))
    return Interval(m, m - half, m + half, len(values))


def welch(a: list[float], b: list[float]) -> Interval | None:
    """mean(a) - mean(b) with Welch's 95% interval (unequal variances, Welch-Satterthwaite df); None when either
    has fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return None
    return _welch(_mean(a), _sd(a), len(a), _mean(b), _sd(b), len(b))


def welch_of(a: Interval, b: Interval) -> Interval | None:
    """`welch` for two recorded `t_interval`s whose values are gone: each sd is read back from its half width,
    sd = (high - mean)·√k / t(0.975, k-1). The same interval as `welch` on the values (to rounding)."""
    if a.k < 2 or b.k < 2:
        return None

    def sd(iv: Interval) -> float:
        return (iv.high - iv.value) * math.sqrt(iv.k) / t_quantile(iv.k - 1)

    return _welch(a.value, sd(a), a.k, b.value, sd(b), b.k)


def _welch(ma: float, sa: float, ka: int, mb: float, sb: float, kb: int) -> Interval:
    va, vb = sa**2 / ka, sb**2 / kb
    d = ma - mb
    if va + vb == 0:
        return Interval(d, d, d, ka + kb)
    df = (va + vb) ** 2 / (va**2 / (ka - 1) + vb**2 / (kb - 1))
    half = t_quantile(df) * math.sqrt(va + vb)
    return Interval(d, d - half, d + half, ka + kb)


def seed_interval(seeds: list[SeedRun], task: str) -> Interval | None:
    """95% Student-t interval of the primary metric across the finished seeds; None with fewer than two."""
    return t_interval([s.scores[task].value for s in seeds if s.status == "done" and task in s.scores])


class Delta(Interval):
    """Score difference against the base model with a 95% confidence interval."""

    def __str__(self) -> str:
        return f"{self.value * 100:+.1f} [{self.low * 100:+.1f}, {self.high * 100:+.1f}]"


def paired_delta(d: list[float], z: float = Z95) -> Delta | None:
    """The mean of per-item differences `d` with its CI mean ± z·sd(d)/√n (None below two items)."""
    if len(d) < 2:
        return None
    mean = _mean(d)
    half = z * _sd(d) / math.sqrt(len(d))
    return Delta(mean, mean - half, mean + half, len(d), paired=True)


def delta(score: TaskScore, base: TaskScore, z: float = Z95) -> Delta | None:
    """score - base, 95% CI: paired over items when both kept per-item results, else independent.

    Paired: the mean of per-item differences d_i, CI mean ± z·sd(d)/√n — the same items were scored, so
    item difficulty cancels. Independent: ± z·√(se₁² + se₂²) from each score's own standard error.
    """
    diff = score.value - base.value
    if score.correct is not None and base.correct is not None and len(score.correct) == len(base.correct) > 1:
        return paired_delta([a - b for a, b in zip(score.correct, base.correct)], z)
    if score.stderr is None or base.stderr is None:
        return None
    half = z * math.sqrt(score.stderr**2 + base.stderr**2)
    return Delta(diff, diff - half, diff + half)
