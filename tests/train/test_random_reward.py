"""The random-reward control: draws independent of the completions, reproducible, calibrated p."""

from __future__ import annotations

import pytest

from tinyeval.errors import TinyevalError
from tinyeval.grading import grade_gsm8k
from tinyeval.report.matrix import CellSpec
from tinyeval.train.config import GRPOConfig
from tinyeval.train.rewards import calibrate, random_rewards, score


def test_same_seed_same_draws_and_completions_do_not_matter() -> None:
    prompts = [f"q{i}" for i in range(64)]
    a = random_rewards(64, 0.3, 0, prompts)
    assert a == random_rewards(64, 0.3, 0, prompts)
    assert a != random_rewards(64, 0.3, 1, prompts) and a != random_rewards(64, 0.3, 0, prompts[::-1])
    assert set(a) <= {0.0, 1.0} and 5 < sum(a) < 35
    golds = ["3"] * 64
    right, wrong = ["#### 3"] * 64, ["#### 4"] * 64
    s1 = score(right, golds, grade_gsm8k, "random", draws=a)
    s2 = score(wrong, golds, grade_gsm8k, "random", draws=a)  # the answers swapped: the rewards are unchanged
    assert s1.rewards.tolist() == s2.rewards.tolist() == a
    assert bool(s1.strict.all()) and not bool(s2.strict.any())  # what the completions earned is still recorded


def test_p_edges_and_calibration() -> None:
    assert random_rewards(10, 0.0, 0, ["x"]) == [0.0] * 10 and random_rewards(10, 1.0, 0, ["x"]) == [1.0] * 10
    texts = iter([["#### 1", "#### 2", "no", "#### 1"]])
    p = calibrate(lambda prompts: next(texts), ["a", "b"], ["1", "1"], grade_gsm8k, "strict", group_size=2)
    assert p == pytest.approx(0.5)
    with pytest.raises(TinyevalError, match="random-p"):
        GRPOConfig(reward="random", random_p=1.5)
    with pytest.raises(TinyevalError, match="random-p-from"):
        GRPOConfig(reward="random", random_p_from="random")


def test_control_cells_are_named_and_marked() -> None:
    c = CellSpec("tinylora", "grpo", params=13, reward="random")
    assert c.name == "tinylora-13-grpo-random" and c.control
    assert CellSpec("tinylora", "grpo", params=13, reward="format").name == "tinylora-13-grpo-format"
    assert not CellSpec("tinylora", "grpo", params=13).control
