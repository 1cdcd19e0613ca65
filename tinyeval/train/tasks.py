"""Trainable tasks: a prompt builder plus a verifiable grader (the shared ones in `tinyeval.grading`).

A task turns dataset rows into `Example`s (chat template applied) and grades a completion against the
example's gold as strict (requested format) and lenient (right answer anywhere). Rewards are built from
these grades in `rewards.py`, so the reward and the evaluation use the same extractor.

`arith` is procedurally generated one-step, single-digit GSM8K-style arithmetic (`#### N` answers, the GSM8K grader)
asking for the final answer only: SmolLM2-135M scores ~1-3% on GSM8K itself, too close to zero for GRPO
to get a signal on a CPU budget, and its step-by-step answers run past a CPU-sized token budget; on
`arith` its reward is low but not zero and completions are ~15 tokens.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from tinyeval import data
from tinyeval.errors import TinyevalError
from tinyeval.generation import chat_prompt
from tinyeval.grading import Grade, grade_gsm8k, grade_math, gsm8k_gold, last_boxed
from tinyeval.train.types import Example

GSM8K_SUFFIX = "Let's think step by step and output the final answer after \"####\"."  # the paper's fork
MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."  # SimpleRL-Zoo
ARITH_SUFFIX = "Give only the final answer after \"####\"."
CHOICE_SUFFIX = "Think step by step, then give the letter of the correct choice after \"####\"."


@dataclass(frozen=True)
class Task:
    """A task: `rows(split, root)` -> (user message, gold) pairs, and `grade(completion, gold)`."""

    name: str
    rows: Callable[[str, str | None], list[tuple[str, object]]]
    grade: Callable[[str, object], Grade]
    splits: tuple[str, ...] = ("train", "test")

    def examples(self, tokenizer, split: str = "train", root: str | None = None, chat: bool = True) -> list[Example]:
        if split not in self.splits:
            raise TinyevalError(f"task '{self.name}' has no split '{split}'; splits: {', '.join(self.splits)}")
        return [Example(chat_prompt(tokenizer, user, chat=chat), gold) for user, gold in self.rows(split, root)]


# ---- GSM8K and MATH -------------------------------------------------------------------------------------

def _gsm8k_rows(split: str, root: str | None) -> list[tuple[str, object]]:
    return [(f"{r['question']}\n{GSM8K_SUFFIX}", gsm8k_gold(r["answer"])) for r in data.load("gsm8k", split, root).rows]


def _math_rows(split: str, root: str | None) -> list[tuple[str, object]]:
    rows = data.math_train(levels=(3, 4, 5), add_test_minus_math500=True, root=root).rows if split == "train" \
        else data.load("math500", "test", root).rows
    out = []
    for r in rows:
        gold = r.get("answer") or last_boxed(r["solution"])
        if gold is not None:
            out.append((f"{r['problem']}\n{MATH_SUFFIX}", gold))
    return out


# ---- arith: procedurally generated GSM8K-format problems ------------------------------------------------

_NAMES = ("Ava", "Ben", "Chloe", "Dan", "Ella", "Finn", "Gina", "Hugo", "Ivy", "Jack")
_ITEMS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "cookies", "cards")


def arith_problem(rng: random.Random) -> tuple[str, int]:
    """One one-step word problem with single-digit operands (SmolLM2-135M already fails 35 - 8)."""
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    if rng.randrange(2) == 0:
        return f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", a + b
    return f"{name} has {a + b} {item} and gives away {b}. How many {item} are left?", a


def _arith_rows(split: str, root: str | None, n: int = 2000) -> list[tuple[str, object]]:
    rng = random.Random({"train": 0, "test": 1}[split])  # fixed sets: the test set never overlaps by seed
    return [(f"{q}\n{ARITH_SUFFIX}", str(ans)) for q, ans in (arith_problem(rng) for _ in range(n))]


# ---- multiple choice (LSAT) and labels (LegalBench) -----------------------------------------------------

_CHOICE_STRICT = re.compile(r"####\s*\(?([A-E])\b")
_CHOICE_ANY = re.compile(r"\b([A-E])\b")


def grade_choice(completion: str, gold: object) -> Grade:
    """strict: `#### X` names the gold letter; lenient: the last standalone letter A-E does."""
    strict = _CHOICE_STRICT.findall(completion)
    lenient = _CHOICE_ANY.findall(completion)
    shown = (strict or lenient or [None])[-1]
    return Grade(bool(strict) and strict[-1] == gold, bool(lenient) and lenient[-1] == gold, shown)


def _lsat_rows(name: str) -> Callable[[str, str | None], list[tuple[str, object]]]:
    def rows(split: str, root: str | None) -> list[tuple[str, object]]:
        loaded = data.load(name, "test", root).rows  # AGIEval ships one split; train/test split it 80/20
        cut = int(len(loaded) * 0.8)
        part = loaded[:cut] if split == "train" else loaded[cut:]
        return [(f"{r['query']}\n{CHOICE_SUFFIX}", "ABCDE"[r["gold"]]) for r in part]
    return rows


def grade_label(completion: str, gold: object) -> Grade:
    """strict: the completion starts with the label; lenient: the first Yes/No-style word is the label."""
    text = completion.strip()
    first = re.match(r"[A-Za-z]+", text)
    strict = bool(first) and first.group(0).lower() == str(gold).lower()
    any_label = re.search(r"\b(yes|no)\b", text, re.I)
    shown = any_label.group(1) if any_label else (first.group(0) if first else None)
    return Grade(strict, shown is not None and shown.lower() == str(gold).lower(), shown)


def _legal_rows(task: str) -> Callable[[str, str | None], list[tuple[str, object]]]:
    def rows(split: str, root: str | None) -> list[tuple[str, object]]:
        template = data.legal_prompt(task, root)
        return [(template.replace("{{text}}", r["text"]), r["label"]) for r in data.load(f"legal_{task}", split, root).rows]
    return rows


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("gsm8k", _gsm8k_rows, grade_gsm8k),
        Task("math", _math_rows, grade_math),
        Task("arith", _arith_rows, grade_gsm8k),
        Task("lsat_lr", _lsat_rows("lsat_lr"), grade_choice),
        Task("lsat_rc", _lsat_rows("lsat_rc"), grade_choice),
        Task("lsat_ar", _lsat_rows("lsat_ar"), grade_choice),
        Task("legal_hearsay", _legal_rows("hearsay"), grade_label),
    ]
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise TinyevalError(f"unknown task '{name}'; known: {', '.join(TASKS)}")
    return TASKS[name]
