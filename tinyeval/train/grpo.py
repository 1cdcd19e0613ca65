"""GRPO as an objective for the shared loop, and `run_grpo`, the recipe that wires it up.

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
from pathlib import Path

import torch

from tinyeval.errors import TinyevalError
from tinyeval.train.config import GRPOConfig, LoopConfig
from tinyeval.train.loss import MICRO_WEIGHTS, LossConfig, advantages, grpo_loss
from tinyeval.train.rewards import score
from tinyeval.train.tasks import Task
from tinyeval.train.types import Example, Trajectory


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int,
                   temperature: float = 1.0) -> torch.Tensor:
    """Log-probs [N, T] of the last `n_completion` tokens of `input_ids` [N, L] (left-padded prompts).

    Position ids follow the attention mask, as in `generate`; only the completion's logits are computed.
    Inputs live on the CPU (trajectory bookkeeping); the result is on the model's device.
    """
    input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # [N, L]
    logits = model(input_ids=input_ids, attention_mask=attention_mask.long(), position_ids=positions,
                   logits_to_keep=n_completion + 1).logits[:, :-1].float()  # [N, T, V]
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    targets = input_ids[:, -n_completion:]  # [N, T]
    return torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


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

    def __init__(self, handle, tokenizer, engine, task: Task, cfg: GRPOConfig, micro_batch: int) -> None:
        self.handle, self.tokenizer, self.engine, self.task, self.cfg = handle, tokenizer, engine, task, cfg
        self.micro_batch = micro_batch
        self.inner_epochs = cfg.inner_epochs
        self.loss_cfg = LossConfig(cfg.eps_low, cfg.eps_high, cfg.aggregation, cfg.kl_coef, cfg.tis_cap,
                                   cfg.max_new_tokens)

    def prepare(self, examples: Sequence[Example]) -> tuple[list[Micro], dict]:
        cfg, model = self.cfg, self.handle.model
        prompts = [e.prompt for e in examples for _ in range(cfg.group_size)]
        golds = [e.gold for e in examples for _ in range(cfg.group_size)]
        ro = self.engine.generate(prompts, cfg.max_new_tokens, cfg.temperature, cfg.top_p)
        scored = score(ro.texts, golds, self.task.grade, cfg.reward, cfg.format_weight)
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
        logp = token_logprobs(self.handle.model, mb.input_ids, mb.attention_mask, mb.completion_mask.shape[1],
                              self.cfg.temperature)  # [n, t]
        to = lambda x: None if x is None else x.to(logp.device)  # noqa: E731
        old = logp.detach() if mb.old is None else to(mb.old)
        rollout = old if mb.rollout is None else to(mb.rollout)
        loss, stats = grpo_loss(logp, old, rollout, to(mb.adv), to(mb.completion_mask), self.loss_cfg, to(mb.ref))
        return loss * mb.weight, stats

    def after_update(self, step: int) -> dict:
        sync = self.engine.sync(self.handle, step)
        return {"sync_bytes": sync.bytes, "sync_s": sync.seconds}


# ---- the recipe ---------------------------------------------------------------------------------------

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


def run_grpo(loop: LoopConfig, grpo: GRPOConfig, out: str | Path, resume: bool = False,
             progress: bool = True) -> dict:
    """Load the model, attach the adapter, train with GRPO, save the adapter; returns the run summary."""
    from tinyeval.io import write_json
    from tinyeval.models import default_device, load_model
    from tinyeval.train import recipe
    from tinyeval.train.loop import run_loop
    from tinyeval.train.policy import attach_adapter
    from tinyeval.train.rollout import make_engine
    from tinyeval.train.tasks import get_task

    out = Path(out)
    saved = recipe.prepare_out(out, {"loop": loop, "grpo": grpo}, resume)
    loop, grpo = saved["loop"], saved["grpo"]
    if loop.threads:
        torch.set_num_threads(loop.threads)
    task = get_task(loop.task)
    model, tokenizer = load_model(loop.model, dtype=loop.dtype, device=default_device())
    torch.manual_seed(loop.seed)  # adapter init (e.g. LoRA's A) is a function of the seed, not of RNG history
    handle = attach_adapter(model, loop.method, loop.params, loop.rank, loop.seed)
    examples = load_examples(task, tokenizer, loop, grpo.max_prompt_tokens)
    engine = make_engine(grpo, handle, tokenizer, loop.model)
    objective = GRPO(handle, tokenizer, engine, task, grpo, loop.micro_batch)
    start = time.perf_counter()
    try:
        records = run_loop(objective, handle.trainable_parameters(), examples, loop, out, resume, progress)
    finally:
        getattr(engine, "close", lambda: None)()
    handle.save(out / "adapter")
    summary = {"out": str(out), "steps": records[-1]["step"] if records else 0, "engine": engine.name,
               "trainable": handle.num_trainable, "seconds": time.perf_counter() - start,
               "final": records[-1] if records else None}
    write_json(out / "summary.json", summary)
    return summary
