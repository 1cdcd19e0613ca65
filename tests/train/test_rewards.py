"""Rewards and tasks: shared graders, non-finite rewards, task prompt builders."""

from __future__ import annotations

import random

import pytest
import torch

from tinyeval.errors import TinyevalError
from tinyeval.grading import grade_gsm8k
from tinyeval.train.rewards import score
from tinyeval.train.tasks import TASKS, arith_problem, get_task, grade_choice, grade_label


def test_strict_and_lenient_are_both_recorded():
    s = score(["so #### 12", "the answer is 12", "#### 13"], ["12", "12", "12"], grade_gsm8k, reward="strict")
    assert s.rewards.tolist() == [1.0, 0.0, 0.0]
    assert s.strict.tolist() == [True, False, False] and s.lenient.tolist() == [True, True, False]
    s = score(["so #### 12", "the answer is 12", "#### 13"], ["12", "12", "12"], grade_gsm8k, reward="lenient")
    assert s.rewards.tolist() == [1.0, 1.0, 0.0]


def test_format_reward_adds_for_the_marker_even_when_wrong():
    s = score(["#### 13", "13"], ["12", "12"], grade_gsm8k, format_weight=0.5)
    assert s.rewards.tolist() == [0.5, 0.0]


def test_nan_inf_and_none_rewards_warn_and_are_masked():
    extra = lambda completions, grades: [float("nan"), None, float("inf"), 0.0]  # noqa: E731
    with pytest.warns(RuntimeWarning, match="3 of 4 rewards"):
        s = score(["#### 1", "", "x", "#### 1"], ["1"] * 4, grade_gsm8k, extra=extra)
    assert s.valid.tolist() == [False, False, False, True]
    assert torch.isfinite(s.rewards).all()


def test_empty_completion_scores_zero():
    s = score([""], ["3"], grade_gsm8k)
    assert s.rewards.tolist() == [0.0] and not s.strict[0] and not s.lenient[0]


def test_choice_and_label_graders():
    assert grade_choice("I think (B). #### B", "B").strict
    g = grade_choice("The answer is C", "C")
    assert not g.strict and g.lenient
    assert grade_label(" Yes", "Yes").strict
    g = grade_label(" I believe yes, it is.", "Yes")
    assert not g.strict and g.lenient


def test_arith_answers_are_right():
    rng = random.Random(3)
    for _ in range(50):
        q, ans = arith_problem(rng)
        assert ans >= 0 and q.endswith("?")


def test_tasks_build_prompts(data_root, smollm2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    for name in ("gsm8k", "arith", "lsat_lr", "legal_hearsay"):
        ex = TASKS[name].examples(tok, "train", str(data_root))
        assert ex and ex[0].prompt and ex[0].gold is not None, name
    arith = get_task("arith").examples(tok, "train")
    assert grade_gsm8k(f"#### {arith[0].gold}", arith[0].gold).strict
    with pytest.raises(TinyevalError):
        get_task("nope")
