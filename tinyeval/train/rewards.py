"""Rewards: plain functions from graded completions to floats, picked by name.

A reward function takes `(completions, grades)` and returns one float (or None: ungradable) per
completion; `grades` come from the task's strict/lenient grader, computed once per completion, so rewards
and evaluation share one extractor.
Non-finite or None rewards never crash a run: `score` warns and marks them invalid; the advantage step
then gives those samples zero advantage (they neither push nor pull the policy).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tinyeval.grading import Grade

RewardFn = Callable[[Sequence[str], Sequence[Grade]], list[float | None]]


def strict_reward(completions: Sequence[str], grades: Sequence[Grade]) -> list[float | None]:
    """1 when the answer is right and in the requested format (`#### N`, `\\boxed{}`), else 0."""
    return [float(g.strict) for g in grades]


def lenient_reward(completions: Sequence[str], grades: Sequence[Grade]) -> list[float | None]:
    """1 when the answer is right wherever it is (last number / boxed or fallback), else 0."""
    return [float(g.lenient) for g in grades]


_FORMAT = re.compile(r"(####\s*\S+|\\boxed\{)")


def format_reward(completions: Sequence[str], grades: Sequence[Grade]) -> list[float | None]:
    """1 when the completion uses the answer marker at all (`#### x` or `\\boxed{`), right or wrong."""
    return [float(bool(_FORMAT.search(c))) for c in completions]


REWARDS: dict[str, RewardFn] = {"strict": strict_reward, "lenient": lenient_reward, "format": format_reward}


def random_rewards(n: int, p: float, seed: int, prompts: Sequence[str]) -> list[float]:
    """The random-reward control (Shao et al. 2025, "Spurious Rewards"): n Bernoulli(p) draws that never look at a
    completion. The generator is seeded by the run's seed and the step's prompts (each step draws a new batch), so
    the same run draws the same rewards, on resume too, and swapping the completions changes nothing."""
    key = hashlib.sha256(json.dumps([seed, list(prompts)]).encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & (2**63 - 1))
    return torch.bernoulli(torch.full((n,), float(p)), generator=g).tolist()


def calibrate(generate: Callable[[list[str]], list[str]], prompts: Sequence[str], golds: Sequence[object], grade,
              reward: str, group_size: int) -> float:
    """p of the random-reward control: the base policy's mean `reward` on `prompts` x `group_size` samples (what
    a cell trained with that reward starts from), so the control gets as many positive rewards as the real run."""
    texts = generate([p for p in prompts for _ in range(group_size)])
    grades = [grade(t, g) for t, g in zip(texts, (g for g in golds for _ in range(group_size)))]
    values = [v for v in REWARDS[reward](texts, grades) if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else 0.0


@dataclass
class Scored:
    rewards: torch.Tensor  # [N] float32, 0 where invalid
    valid: torch.Tensor  # [N] bool: finite reward
    strict: torch.Tensor  # [N] bool
    lenient: torch.Tensor  # [N] bool


def score(completions: Sequence[str], golds: Sequence[object], grade, reward: str = "strict",
          format_weight: float = 0.0, extra: RewardFn | None = None, draws: list[float] | None = None) -> Scored:
    """Reward each completion: `REWARDS[reward]` + `format_weight` × format reward (+ an extra function).

    Strict and lenient correctness are recorded for every run whatever the reward, so a gain that is only
    format compliance shows up as strict rising while lenient stays flat.
    """
    grades = [grade(c, g) for c, g in zip(completions, golds)]
    raw = draws if reward == "random" else REWARDS[reward](completions, grades)  # random: `random_rewards`
    total = [math.nan if x is None else float(x) for x in raw]
    if format_weight:
        total = [t + format_weight * f for t, f in zip(total, format_reward(completions, grades))]
    if extra is not None:
        total = [t + (math.nan if e is None else e) for t, e in zip(total, extra(completions, grades))]
    rewards = torch.tensor(total, dtype=torch.float32)
    valid = torch.isfinite(rewards)
    if not bool(valid.all()):
        warnings.warn(f"{int((~valid).sum())} of {len(total)} rewards were NaN/inf/None; those samples get "
                      "zero advantage", RuntimeWarning, stacklevel=2)
    return Scored(torch.where(valid, rewards, torch.zeros_like(rewards)), valid,
                  torch.tensor([g.strict for g in grades]), torch.tensor([g.lenient for g in grades]))
