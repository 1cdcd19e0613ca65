"""GRPO as an objective for the shared loop (`recipes.py` wires it up: `tinyeval train --algo grpo`).

Departures from the paper's verl fork, on purpose: rollouts default to HF generate on CPU (measured
faster here than vLLM with a LoRA); with HF generate the old-policy log-probs are computed in the
trainer's own forward, so the rollout/trainer mismatch is zero and TIS is a no-op (it matters for vLLM).
With one inner epoch (mu = 1) the old policy *is* the current one, so no extra forward is spent on it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NotRequired

import torch

from tinyeval.errors import TinyevalError
from tinyeval.train.config import GRPOConfig, LoopConfig
from tinyeval.train.logprobs import token_logprobs
from tinyeval.train.loop import StepRecord
from tinyeval.train.loss import MICRO_WEIGHTS, LossConfig, advantages, grpo_loss
from tinyeval.train.memory import checkpointing
from tinyeval.train.rewards import random_rewards, score
from tinyeval.train.tasks import Task
from tinyeval.train.types import Example, Trajectory


class GRPORecord(StepRecord):
    """A GRPO step in records.jsonl: the loop's fields plus rollout, reward, loss and sync statistics."""

    reward_mean: float  # over the step's valid rewards
    reward_std: float
    strict: float  # fraction graded right in the requested format
    lenient: float  # fraction with the right answer anywhere
    invalid_rewards: int  # non-finite rewards, left out of the advantages
    response_len: float  # mean completion tokens
    truncated_frac: float  # completions that hit max_new_tokens
    gen_tokens: int
    gen_s: float
    gen_tok_per_s: float
    ref_s: float  # old-policy / reference log-prob passes
    clip_frac: float
    is_ratio_mean: float
    is_ratio_max: float
    is_capped_frac: float
    kl: NotRequired[float]  # only with --kl-coef > 0
    sync_bytes: int  # what the weight sync shipped to the rollout engine
    sync_s: float


@dataclass
class Micro:
    """A slice of the trajectory with its padding trimmed and its accumulation weight."""

    input_ids: torch.Tensor  # [n, p + t]
    attention_mask: torch.Tensor  # [n, p + t]
    completion_mask: torch.Tensor  # [n, t]
    old: torch.Tensor | None  # [n, t]; None: the current policy detached (mu = 1)
    rollout: torch.Tensor | None  # [n, t]; None: same as old
    ref: torch.Tensor | None  # [n, t]
    adv: torch.Tensor  # [n]
    weight: float


def micro_batches(traj: Trajectory, size: int, aggregation: str) -> list[Micro]:
    out = []
    p = traj.prompt_len
    for s in range(0, traj.input_ids.shape[0], size):
        rows = slice(s, s + size)
        cmask = traj.completion_mask[rows]
        t = max(int(cmask.sum(1).max()), 1)  # trim right padding of completions
        first = int((~traj.attention_mask[rows, :p]).sum(1).min())  # trim common left padding of prompts
        cut = lambda x: None if x is None else x[rows, :t]  # noqa: E731
        out.append(Micro(traj.input_ids[rows, first : p + t], traj.attention_mask[rows, first : p + t],
                         cmask[:, :t], cut(traj.old_logprobs), cut(traj.rollout_logprobs), cut(traj.ref_logprobs),
                         traj.advantages[rows], MICRO_WEIGHTS[aggregation](cmask, traj.completion_mask)))
    return out


class GRPO:
    """Sample G completions per prompt, reward them, and minimise the clipped group-relative loss."""

    name = "grpo"

    def __init__(self, handle, tokenizer, engine, task: Task, cfg: GRPOConfig, micro_batch: int,
                 seed: int = 0) -> None:
        self.handle, self.tokenizer, self.engine, self.task, self.cfg = handle, tokenizer, engine, task, cfg
        self.seed = seed  # the random-reward control's draws
        self.micro_batch = micro_batch
        self.inner_epochs = cfg.inner_epochs
        self.loss_cfg = LossConfig(cfg.eps_low, cfg.eps_high, cfg.aggregation, cfg.kl_coef, cfg.tis_cap,
                                   cfg.max_new_tokens)
        self.synced = False  # the engine has this process's policy: synced before the first rollout, then per step

    def prepare(self, examples: Sequence[Example]) -> tuple[list[Micro], dict]:
        cfg, model = self.cfg, self.handle.model
        prompts = [e.prompt for e in examples for _ in range(cfg.group_size)]
        golds = [e.gold for e in examples for _ in range(cfg.group_size)]
        if not self.synced:  # here, not at setup: a resumed run loads its checkpoint after setup
            self.engine.sync(self.handle, 0)
            self.synced = True
        ro = self.engine.generate(prompts, cfg.max_new_tokens, cfg.temperature, cfg.top_p)
        draws = random_rewards(len(prompts), cfg.random_p, self.seed, prompts) if cfg.reward == "random" else None
        scored = score(ro.texts, golds, self.task.grade, cfg.reward, cfg.format_weight, draws=draws)
        adv = advantages(scored.rewards, cfg.group_size, cfg.adv_scale, scored.valid)  # [N]
        ids = torch.cat([ro.prompt_ids, ro.completion_ids], 1)  # [N, P+T]
        attn = torch.cat([ro.prompt_mask, ro.completion_mask], 1)
        traj = Trajectory(ids, attn, ro.completion_mask, None, ro.logprobs, None, scored.rewards, adv)
        start = time.perf_counter()
        if cfg.inner_epochs > 1:  # the old policy must be frozen before the first of several updates
            traj.old_logprobs = self._score(traj, model)
        if cfg.kl_coef > 0:
            with self.handle.disabled():
                traj.ref_logprobs = self._score(traj, model)
        lengths = ro.completion_mask.sum(1).float()
        r = scored.rewards[scored.valid]
        stats = {"reward_mean": float(r.mean()) if len(r) else 0.0,
                 "reward_std": float(r.std()) if len(r) > 1 else 0.0,
                 "strict": float(scored.strict.float().mean()), "lenient": float(scored.lenient.float().mean()),
                 "invalid_rewards": int((~scored.valid).sum()), "response_len": float(lengths.mean()),
                 "truncated_frac": float((lengths >= cfg.max_new_tokens).float().mean()),
                 "gen_tokens": ro.tokens, "gen_s": ro.seconds, "gen_tok_per_s": ro.tokens / max(ro.seconds, 1e-9),
                 "ref_s": time.perf_counter() - start}
        return micro_batches(traj, self.micro_batch, self.cfg.aggregation), stats

    @torch.no_grad()
    def _score(self, traj: Trajectory, model) -> torch.Tensor:
        out = torch.zeros(traj.completion_mask.shape)
        for s in range(0, traj.input_ids.shape[0], self.micro_batch):
            rows = slice(s, s + self.micro_batch)
            out[rows] = token_logprobs(model, traj.input_ids[rows], traj.attention_mask[rows],
                                       traj.completion_mask.shape[1], self.cfg.temperature).cpu()
        return out

    def loss(self, mb: Micro) -> tuple[torch.Tensor, dict]:
        with checkpointing(self.handle.model):  # a no-op unless --gradient-checkpointing
            logp = token_logprobs(self.handle.model, mb.input_ids, mb.attention_mask, mb.completion_mask.shape[1],
                                  self.cfg.temperature)  # [n, t]
        to = lambda x: None if x is None else x.to(logp.device)  # noqa: E731
        old = logp.detach() if mb.old is None else to(mb.old)
        rollout = old if mb.rollout is None else to(mb.rollout)
        loss, stats = grpo_loss(logp, old, rollout, to(mb.adv), to(mb.completion_mask), self.loss_cfg, to(mb.ref))
        return loss * mb.weight, stats

    def after_update(self, step: int) -> dict:
        sync = self.engine.sync(self.handle, step)
        self.synced = True
        return {"sync_bytes": sync.bytes, "sync_s": sync.seconds}


# ---- data ---------------------------------------------------------------------------------------------

def load_examples(task: Task, tokenizer, loop: LoopConfig, max_prompt_tokens: int) -> list[Example]:
    """The task's training prompts, minus (with a warning) those longer than `max_prompt_tokens`."""
    examples = task.examples(tokenizer, "train", loop.data_root)
    if loop.limit:
        examples = examples[: loop.limit]
    keep = [e for e in examples if len(tokenizer(e.prompt, add_special_tokens=False)["input_ids"]) <= max_prompt_tokens]
    if len(keep) < len(examples):
        warnings.warn(f"skipped {len(examples) - len(keep)} of {len(examples)} prompts longer than "
                      f"max_prompt_tokens={max_prompt_tokens}", RuntimeWarning, stacklevel=2)
    if not keep:
        raise TinyevalError(f"task '{task.name}': every prompt is longer than --max-prompt-tokens {max_prompt_tokens}")
    return keep

