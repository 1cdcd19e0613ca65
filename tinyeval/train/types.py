"""Typed containers passed between rollout, reward, loss and loop: one GRPO batch as tensors, and the rollout
engine's interface.

Shapes use N = prompts × G completions (N rows, prompt-major: rows g*G .. g*G+G-1 are one group),
P = padded prompt length (left-padded), T = padded completion length (right-padded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass
class Example:
    """One training prompt: the text the model sees and what the task's reward checks against."""

    prompt: str  # chat template already applied
    gold: object  # task-specific reference (a number string, a boxed answer, a choice letter, a label)
    meta: dict = field(default_factory=dict)


@dataclass
class Rollouts:
    """What a rollout engine returns for N = len(prompts) × G sampled completions."""

    prompt_ids: torch.Tensor  # [N, P] int64, left-padded with pad id
    prompt_mask: torch.Tensor  # [N, P] bool
    completion_ids: torch.Tensor  # [N, T] int64, right-padded
    completion_mask: torch.Tensor  # [N, T] bool: real tokens (EOS included, padding excluded)
    texts: list[str]  # N decoded completions
    logprobs: torch.Tensor | None  # [N, T] float32 from the engine itself (None: the trainer computes them)
    tokens: int  # generated tokens, for throughput
    seconds: float


@dataclass
class Trajectory:
    """A scored batch ready for the loss: rollouts plus rewards, advantages and reference log-probs."""

    input_ids: torch.Tensor  # [N, P+T] prompt then completion
    attention_mask: torch.Tensor  # [N, P+T] bool
    completion_mask: torch.Tensor  # [N, T] bool
    old_logprobs: torch.Tensor  # [N, T] float32: the policy that sampled (trainer's own numerics)
    rollout_logprobs: torch.Tensor  # [N, T] float32: as the engine reported them (== old for HF generate)
    ref_logprobs: torch.Tensor | None  # [N, T] float32: base model (adapter disabled), only when KL is on
    rewards: torch.Tensor  # [N] float32
    advantages: torch.Tensor  # [N] float32

    @property
    def prompt_len(self) -> int:
        return self.input_ids.shape[1] - self.completion_mask.shape[1]


@dataclass
class SyncStats:
    """What one weight sync cost: bytes shipped to the engine and wall seconds."""

    bytes: int
    seconds: float


class RolloutEngine(Protocol):
    """Samples completions for a list of prompts; after each optimizer step it is told about the new policy."""

    name: str

    def generate(self, prompts: Sequence[str], max_new_tokens: int, temperature: float, top_p: float) -> Rollouts:
        ...

    def sync(self, handle, step: int) -> SyncStats:
        ...

    def close(self) -> None:
        ...
