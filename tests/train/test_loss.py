"""Advantages and the GRPO loss against tensors computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from tinyeval.train.loss import (AGGREGATIONS, MICRO_WEIGHTS, LossConfig, advantages, clipped_objective, grpo_loss,
                                 kl_k3, tis_weights)


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])  # two groups of 4
    # group 1: mean .25, unbiased std sqrt(((.75)^2 + 3(.25)^2)/3) = 0.5
    a = advantages(r, 4, "group")
    expect = torch.tensor([0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5])
    expect[:4] /= 0.5 + 1e-6
    expect[4:] /= math.sqrt(4 * 0.25 / 3) + 1e-6
    torch.testing.assert_close(a, expect)


def test_batch_and_none_scales():
    r = torch.tensor([2.0, 0.0, 1.0, 1.0])  # groups of 2: centred [1, -1, 0, 0]
    torch.testing.assert_close(advantages(r, 2, "none"), torch.tensor([1.0, -1.0, 0.0, 0.0]))
    std = torch.tensor([1.0, -1.0, 0.0, 0.0]).std()  # sqrt(2/3)
    torch.testing.assert_close(advantages(r, 2, "batch"), torch.tensor([1.0, -1.0, 0.0, 0.0]) / (std + 1e-6))


def test_all_equal_group_has_zero_advantage():
    a = advantages(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0]), 3, "group")
    assert torch.equal(a, torch.zeros(6))


def test_nan_reward_gets_zero_advantage_and_is_left_out_of_stats():
    r = torch.tensor([1.0, float("nan"), 0.0, float("inf")])
    a = advantages(r, 4, "none")  # mean over the finite {1, 0} = .5
    torch.testing.assert_close(a, torch.tensor([0.5, 0.0, -0.5, 0.0]))


def test_clipping_by_hand():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[0.5, 1.0, 1.5]]))  # ratios .5, 1, 1.5
    loss, clipped = clipped_objective(logp, old, torch.tensor([1.0]), eps_low=0.2, eps_high=0.3)
    # A > 0: min(rho, clip(rho, .8, 1.3)) = .5, 1, 1.3 -> clipped only at 1.5
    torch.testing.assert_close(loss, -torch.tensor([[0.5, 1.0, 1.3]]))
    assert clipped.tolist() == [[False, False, True]]
    loss, clipped = clipped_objective(logp, old, torch.tensor([-1.0]), eps_low=0.2, eps_high=0.3)
    # A < 0: min(-rho, -clip) = -max(rho, clip) -> -.8, -1, -1.5; clipped at .5
    torch.testing.assert_close(loss, torch.tensor([[0.8, 1.0, 1.5]]))
    assert clipped.tolist() == [[True, False, False]]


def test_clipped_token_has_no_gradient():
    logp = torch.log(torch.tensor([[1.5, 1.0]])).requires_grad_()
    loss, _ = clipped_objective(logp, torch.zeros(1, 2), torch.tensor([1.0]), 0.2, 0.2)
    loss.sum().backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 1] == -1.0  # d(-rho)/dlogp = -rho = -1


def test_importance_sampling_cap():
    old = torch.tensor([[0.0, 0.0, 0.0]])
    rollout = torch.log(torch.tensor([[1.0, 0.25, 2.0]]))  # weights 1, 4, .5
    w, raw = tis_weights(old, rollout, cap=2.0)
    torch.testing.assert_close(raw, torch.tensor([[1.0, 4.0, 0.5]]))
    torch.testing.assert_close(w, torch.tensor([[1.0, 2.0, 0.5]]))
    mask = torch.ones(1, 3, dtype=torch.bool)
    loss, stats = grpo_loss(old.clone(), old, rollout, torch.tensor([1.0]), mask, LossConfig(tis_cap=2.0))
    torch.testing.assert_close(loss, torch.tensor(-(1 + 2 + 0.5) / 3))
    assert stats["is_ratio_max"] == pytest.approx(4.0) and stats["is_capped_frac"] == pytest.approx(1 / 3)


def test_kl_k3_by_hand():
    logp, ref = torch.tensor([[0.0, -1.0]]), torch.tensor([[0.0, 0.0]])
    torch.testing.assert_close(kl_k3(logp, ref), torch.tensor([[0.0, math.e - 1 - 1]]))
    assert float(kl_k3(ref, ref).sum()) == 0.0


# Per-token losses for 2 sequences with lengths 3 and 1 (max_tokens 4):
#   row 0: [1, 2, 3, pad], row 1: [4, pad, pad, pad]
LOSS = torch.tensor([[1.0, 2.0, 3.0, 9.0], [4.0, 9.0, 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.float32)


@pytest.mark.parametrize("mode,expect", [
    ("token-mean", (1 + 2 + 3 + 4) / 4),  # every token weighs the same
    ("seq-mean", ((1 + 2 + 3) / 3 + 4 / 1) / 2),  # every sequence weighs the same
    ("dr-grpo", (1 + 2 + 3 + 4) / (2 * 4)),  # constant normaliser N x max_tokens
])
def test_aggregations_by_hand(mode, expect):
    assert float(AGGREGATIONS[mode](LOSS, MASK, 4)) == pytest.approx(expect)


@pytest.mark.parametrize("mode", list(AGGREGATIONS))
def test_full_grpo_loss_per_aggregation(mode):
    """adv +1 / -1, ratio 1 everywhere, no TIS effect: loss = aggregate(-A per token)."""
    zeros = torch.zeros(2, 4)
    adv = torch.tensor([1.0, -1.0])
    loss, stats = grpo_loss(zeros, zeros, zeros, adv, MASK.bool(), LossConfig(aggregation=mode, max_tokens=4))
    per_token = torch.tensor([[-1.0] * 4, [1.0] * 4])
    expect = {"token-mean": (-3 + 1) / 4, "seq-mean": (-1 + 1) / 2, "dr-grpo": (-3 + 1) / 8}[mode]
    assert float(loss) == pytest.approx(expect)
    assert float(AGGREGATIONS[mode](per_token, MASK, 4)) == pytest.approx(expect)
    assert stats["clip_frac"] == 0.0


@pytest.mark.parametrize("mode", list(AGGREGATIONS))
def test_micro_batches_reproduce_the_full_batch_loss(mode):
    torch.manual_seed(0)
    loss = torch.randn(6, 5)
    mask = (torch.rand(6, 5) > 0.3).float()
    full = AGGREGATIONS[mode](loss, mask, 5)
    parts = sum(MICRO_WEIGHTS[mode](mask[i:i + 2], mask) * AGGREGATIONS[mode](loss[i:i + 2], mask[i:i + 2], 5)
                for i in range(0, 6, 2))
    torch.testing.assert_close(parts, full)


def test_kl_term_enters_loss():
    zeros = torch.zeros(1, 2)
    ref = torch.tensor([[0.0, 1.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, stats = grpo_loss(zeros, zeros, zeros, torch.tensor([0.0]), mask, LossConfig(kl_coef=0.5), ref)
    k3 = math.e - 1 - 1
    assert float(loss) == pytest.approx(0.5 * k3 / 2)
    assert stats["kl"] == pytest.approx(k3 / 2)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError):
        LossConfig(aggregation="sum")
    with pytest.raises(ValueError):
        LossConfig(tis_cap=0)
