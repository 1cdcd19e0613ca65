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
from functools import lru_cache

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
        return _ARITH_ADD.format(name=name, item=item, a=a, b=b), a + b
    return _ARITH_SUB.format(name=name, item=item, total=a + b, b=b), a


_ARITH_ADD = "{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
_ARITH_SUB = "{name} has {total} {item} and gives away {b}. How many {item} are left?"
_ARITH_PARSE = (re.compile(r"(?P<name>\w+) has (?P<a>\d+) (?P<item>\w+) and gets (?P<b>\d+) more\."),
                re.compile(r"(?P<name>\w+) has (?P<total>\d+) (?P<item>\w+) and gives away (?P<b>\d+)\."))


def arith_twin(question: str, rng: random.Random, avoid: set[str]) -> tuple[str, int] | None:
    """The same problem (template, name, item) with both operands redrawn: a new question, none of `avoid` (the
    training questions and the original), its answer recomputed; None when 50 draws find none."""
    add, sub = (m.match(question) for m in _ARITH_PARSE)
    for _ in range(50):
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        if add:
            q, ans = _ARITH_ADD.format(name=add["name"], item=add["item"], a=a, b=b), a + b
        elif sub:
            q, ans = _ARITH_SUB.format(name=sub["name"], item=sub["item"], total=a + b, b=b), a
        else:
            raise TinyevalError(f"not an arith question: {question[:60]!r}")
        if q not in avoid:
            return q, ans
    return None


@lru_cache(maxsize=4)
def arith_questions(split: str, n: int = 2000) -> tuple[tuple[str, int], ...]:
    """The split's (question, answer) pairs, fixed: train draws `n` problems from seed 0; test draws `n` from seed 1
    and keeps the first occurrence of each question that is not in train (1,472 of 2,000: 10 names x 8 items x 2
    templates x 64 operand pairs leave many repeats), so a held-out score is held out."""
    rng = random.Random({"train": 0, "test": 1}[split])
    drawn = [arith_problem(rng) for _ in range(n)]
    if split == "train":
        return tuple(drawn)
    seen = {q for q, _ in arith_questions("train", n)}
    out = []
    for q, ans in drawn:
        if q not in seen:
            seen.add(q)
            out.append((q, ans))
    return tuple(out)


def _arith_rows(split: str, root: str | None) -> list[tuple[str, object]]:
    return [(f"{q}\n{ARITH_SUFFIX}", str(ans)) for q, ans in arith_questions(split)]


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
