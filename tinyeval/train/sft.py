"""Supervised fine-tuning as a second objective of the shared loop, for the paper's RL-vs-SFT comparison.

The paper's second claim: at tiny budgets SFT needs 100-1,000x larger updates than RL to match it. To
test that on any model, SFT trains through the very same adapters, loop, records, checkpoints and
`--resume` as GRPO; only the objective differs: next-token loss on the gold solution.

Choices, each so that SFT and evaluation see the same text:
  * the prompt is the task's own training prompt (chat template + the same instruction suffix), so the
    model learns the answer format the evaluation asks for;
  * targets are the gold chains of thought: GSM8K's with the `<<expr=value>>` calculator annotations
    removed by default (models never see them at test time), MATH's solutions (ending in `\\boxed{}`);
  * loss on completion tokens only, averaged over every completion token of the step (so gradient
    accumulation never changes the update);
  * length-bucketed micro-batches instead of packing: packing without per-example attention masks
    would let examples attend to each other; bucketing wastes little padding and stays exact.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NotRequired

import torch

from tinyeval import data
from tinyeval.errors import TinyevalError
from tinyeval.generation import chat_prompt
from tinyeval.train.config import SFTConfig
from tinyeval.train.distributed import sum_over_ranks
from tinyeval.train.logprobs import selected_logprobs
from tinyeval.train.loop import StepRecord
from tinyeval.train.memory import checkpointing
from tinyeval.train.tasks import GSM8K_SUFFIX, MATH_SUFFIX

IGNORE = -100  # label of tokens that carry no loss (prompt and padding), torch's cross-entropy default


class SFTRecord(StepRecord):
    """An SFT step in records.jsonl: the loop's fields plus the step's target tokens and held-out loss."""

    target_tokens: int
    heldout_loss: NotRequired[float]  # every --eval-every steps


# ---- targets: (user message, gold completion) per task -------------------------------------------------

_ANNOTATION = re.compile(r"<<[^>]*>>")


def gsm8k_target(answer: str, keep_annotations: bool = False) -> str:
    """GSM8K's gold solution as a completion: annotations stripped unless asked, `#### N` kept."""
    return answer if keep_annotations else _ANNOTATION.sub("", answer)


def _gsm8k_pairs(split: str, root: str | None, keep: bool) -> list[tuple[str, str]]:
    return [(f"{r['question']}\n{GSM8K_SUFFIX}", gsm8k_target(r["answer"], keep))
            for r in data.load("gsm8k", split, root).rows]


def _math_pairs(split: str, root: str | None, keep: bool) -> list[tuple[str, str]]:
    rows = data.math_train(levels=(3, 4, 5), add_test_minus_math500=True, root=root).rows if split == "train" \
        else data.load("math500", "test", root).rows
    return [(f"{r['problem']}\n{MATH_SUFFIX}", r["solution"]) for r in rows]


def _arith_pairs(split: str, root: str | None, keep: bool) -> list[tuple[str, str]]:
    """arith's problems with the answer in the requested format: exactly what GRPO's strict reward wants."""
    from tinyeval.train.tasks import get_task

    return [(user, f"#### {gold}") for user, gold in get_task("arith").rows(split, root)]


SFT_TASKS: dict[str, Callable[[str, str | None, bool], list[tuple[str, str]]]] = {
    "gsm8k": _gsm8k_pairs,
    "math": _math_pairs,
    "arith": _arith_pairs,
}


@dataclass
class SFTExample:
    """One tokenised example: `input_ids` = prompt + target, `labels` = IGNORE over the prompt."""

    input_ids: list[int]
    labels: list[int]


def tokenize_pair(tokenizer, user: str, target: str, chat: bool = True) -> SFTExample:
    """Tokenise prompt and target separately so the loss mask falls exactly on the target's tokens.

    The target ends with the EOS token, so the model also learns to stop after `#### N`.
    """
    prompt = tokenizer(chat_prompt(tokenizer, user, chat=chat), add_special_tokens=False)["input_ids"]
    body = tokenizer(target, add_special_tokens=False)["input_ids"] if target.strip() else []
    if not body:
        return SFTExample(prompt, [IGNORE] * len(prompt))
    completion = body + [tokenizer.eos_token_id]
    return SFTExample(prompt + completion, [IGNORE] * len(prompt) + completion)


def load_sft_examples(task: str, tokenizer, split: str, cfg: SFTConfig, root: str | None = None,
                      limit: int | None = None) -> tuple[list[SFTExample], dict]:
    """Tokenised examples of `task`; empty and over-long ones are skipped, with counts (and a warning)."""
    if task not in SFT_TASKS:
        raise TinyevalError(f"SFT task '{task}' has no gold solutions; choose {', '.join(SFT_TASKS)}")
    pairs = SFT_TASKS[task](split, root, cfg.keep_annotations)
    if limit:
        pairs = pairs[:limit]
    kept, empty, too_long = [], 0, 0
    for user, target in pairs:
        ex = tokenize_pair(tokenizer, user, target)
        if all(label == IGNORE for label in ex.labels):
            empty += 1
        elif len(ex.input_ids) > cfg.max_seq_tokens:
            too_long += 1
        else:
            kept.append(ex)
    if empty or too_long:
        warnings.warn(f"SFT {task}/{split}: skipped {empty} empty and {too_long} over-long "
                      f"(> {cfg.max_seq_tokens} tokens) of {len(pairs)} examples", RuntimeWarning, stacklevel=2)
    if not kept:
        raise TinyevalError(f"SFT {task}/{split}: no usable example (all empty or longer than --max-seq-tokens)")
    return kept, {"examples": len(pairs), "skipped_empty": empty, "skipped_too_long": too_long}


# ---- batches and loss ---------------------------------------------------------------------------------

@dataclass
class SFTMicro:
    input_ids: torch.Tensor  # [n, L] right-padded
    attention_mask: torch.Tensor  # [n, L]
    labels: torch.Tensor  # [n, L] IGNORE on prompt and padding
    weight: float  # this micro-batch's share of the step's completion tokens


def collate(examples: Sequence[SFTExample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad to the longest example: ids [n, L], attention mask [n, L], labels [n, L]."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(e.input_ids), torch.tensor(e.labels), 1
    return ids, mask, labels


def target_tokens(examples: Sequence[SFTExample]) -> int:
    return sum(sum(label != IGNORE for label in e.labels) for e in examples)


def bucketed_micro_batches(examples: Sequence[SFTExample], size: int, pad_id: int,
                           total: int | None = None) -> list[SFTMicro]:
    """Sort the step's examples by length and cut into micro-batches: similar lengths, little padding. Each
    micro-batch weighs its share of `total` target tokens (default: those of `examples`)."""
    ordered = sorted(examples, key=lambda e: len(e.input_ids))
    total = target_tokens(examples) if total is None else total
    out = []
    for s in range(0, len(ordered), size):
        ids, mask, labels = collate(ordered[s : s + size], pad_id)
        n_tokens = int((labels[:, 1:] != IGNORE).sum())  # targets are shifted by one: the first is never predicted
        out.append(SFTMicro(ids, mask, labels, n_tokens / max(total, 1)))
    return out


def completion_nll(model, micro: SFTMicro) -> tuple[torch.Tensor, int]:
    """Mean next-token NLL over the micro-batch's target tokens, and how many tokens that mean covers.

    Through `logprobs.selected_logprobs`: no fp32 [n, L, V] copy of the logits (see that module)."""
    device = model.device  # batches are built on the CPU; the model may sit on a GPU
    logits = model(input_ids=micro.input_ids.to(device), attention_mask=micro.attention_mask.to(device),
                   use_cache=False).logits  # [n, L, V]; position t predicts token t + 1
    labels = micro.labels[:, 1:].to(device)  # [n, L-1]
    mask = labels != IGNORE
    n_tokens = int(mask.sum())
    logp = selected_logprobs(logits, labels.clamp(min=0))  # [n, L-1], fp32
    return -logp.masked_fill(~mask, 0.0).sum() / max(n_tokens, 1), n_tokens  # fill, not multiply: 0 * -inf


class SFT:
    """Next-token loss on gold completions: the loop's second objective (no rollouts, one update per step)."""

    name = "sft"
    inner_epochs = 1

    def __init__(self, handle, tokenizer, micro_batch: int, heldout: Sequence[SFTExample] = (),
                 eval_every: int = 0) -> None:
        self.handle, self.micro_batch = handle, micro_batch
        self.pad_id = tokenizer.pad_token_id
        self.heldout, self.eval_every = list(heldout), eval_every

    def prepare(self, examples: Sequence[SFTExample]) -> tuple[list[SFTMicro], dict]:
        """Sharded over ranks, `examples` is this rank's slice: weights are shares of every rank's tokens, so the
        gradients summed over ranks (`fsdp.sum_gradients`) are the whole step's token mean."""
        total = int(sum_over_ranks(target_tokens(examples)))
        return bucketed_micro_batches(examples, self.micro_batch, self.pad_id, total), {"target_tokens": total}

    def loss(self, micro: SFTMicro) -> tuple[torch.Tensor, dict]:
        with checkpointing(self.handle.model):  # a no-op unless --gradient-checkpointing
            nll, _ = completion_nll(self.handle.model, micro)
        return nll * micro.weight, {}

    def after_update(self, step: int) -> dict:
        if self.heldout and self.eval_every and step % self.eval_every == 0:
            return {"heldout_loss": self.heldout_loss()}
        return {}

    @torch.no_grad()
    def heldout_loss(self) -> float:
        """Token-mean NLL of the held-out gold completions under the current model."""
        total, tokens = 0.0, 0
        for micro in bucketed_micro_batches(self.heldout, self.micro_batch, self.pad_id):
            nll, n = completion_nll(self.handle.model, micro)
            total, tokens = total + float(nll) * n, tokens + n
        return total / max(tokens, 1)
