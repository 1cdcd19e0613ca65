"""Probe statistics on synthetic scores whose true AUROC and mean are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinyeval.audit.probes.stats import auroc, auroc_ci, bootstrap_ci, mean_ci, paired_diff_ci


def normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_auroc_exact_cases():
    assert auroc([2, 3], [0, 1]) == 1.0
    assert auroc([0, 1], [2, 3]) == 0.0
    assert auroc([1, 1, 1], [1, 1]) == 0.5  # ties count one half
    assert auroc([1, 3], [2]) == 0.5
    with pytest.raises(ValueError):
        auroc([], [1])


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.0, 2.0])
def test_auroc_matches_the_binormal_truth(shift):
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(shift, 1, 4000), rng.normal(0, 1, 4000)
    truth = normal_cdf(shift / math.sqrt(2))  # P(X > Y) for X ~ N(d, 1), Y ~ N(0, 1)
    assert abs(auroc(pos, neg) - truth) < 0.015
    est = auroc_ci(pos[:300], neg[:300], n_boot=400)
    assert est.covers(truth) and est.lo < est.value < est.hi


def test_paired_auroc_and_difference():
    rng = np.random.default_rng(2)
    base = rng.normal(0, 3, 500)  # item difficulty shared by an item and its twin
    original, twin = base + 0.5 + rng.normal(0, 0.2, 500), base + rng.normal(0, 0.2, 500)
    diff = paired_diff_ci(original, twin, n_boot=500)
    assert abs(diff.value - 0.5) < 0.05 and 0.4 < diff.lo < diff.hi < 0.6
    # pairing matters: unpaired, the shared difficulty hides the shift; paired, the bootstrap keeps pairs
    assert auroc(original, twin) < 0.6
    assert auroc_ci(original, twin, paired=True, n_boot=200).n == 1000


def test_bootstrap_interval_covers_the_truth_in_simulation():
    rng = np.random.default_rng(3)
    p, n, trials = 0.3, 120, 200
    hits = sum(mean_ci(rng.random(n) < p, n_boot=400, seed=t).covers(p) for t in range(trials))
    assert 0.88 <= hits / trials <= 0.99  # nominal 95%


def test_auroc_interval_covers_the_truth_in_simulation():
    rng = np.random.default_rng(4)
    truth, hits, trials = normal_cdf(0.8 / math.sqrt(2)), 0, 60
    for t in range(trials):
        hits += auroc_ci(rng.normal(0.8, 1, 80), rng.normal(0, 1, 80), n_boot=300, seed=t).covers(truth)
    assert hits / trials >= 0.85


def test_generic_bootstrap():
    x = np.arange(100.0)
    est = bootstrap_ci(np.median, x, n_boot=300)
    assert est.value == 49.5 and est.lo < 49.5 < est.hi and est.n == 100
