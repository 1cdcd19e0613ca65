"""Learning-rate selection on a dev split carved from the training set, never on the test set.

Choosing the learning rate on the test items would leak them into the result, exactly what the audit exists to
expose. So each trained cell of a sweep sets aside `dev_items` rows from the end of its task's training split
(the data's own order, fixed: the same items for every learning rate and seed, recorded in results.json), trains
only on the rows before the first of them, and scores each trained unit on them: greedy generation, graded
lenient (the right answer) by the task's own grader, the one the reward uses. The chosen learning rate is the
one with the best mean dev accuracy over its finished seeds, ties going to the smaller one; only its seeds are
then evaluated on the test suite.

The dev rows are the tail of the split, not a seeded sample: the trainers can limit training to a prefix of the
split (`LoopConfig.limit`), not exclude arbitrary rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinyeval.errors import TinyevalError

RULE = ("highest mean lenient accuracy over finished seeds on the dev split (the last rows of the training split, "
        "never trained on); ties go to the smaller learning rate")


@dataclass(frozen=True)
class DevSplit:
    """The dev items of one cell: `rows` of `task`'s training split; training reads rows [0, train_rows) only."""

    task: str
    rows: tuple[int, ...]
    train_rows: int


def _grpo_training_prompts(task: str, root: str | None) -> list[str]:
    from tinyeval.train.tasks import get_task

    return [user for user, _ in get_task(task).rows("train", root)]


def _sft_training_prompts(task: str, root: str | None) -> list[str]:
    from tinyeval.train.sft import SFT_TASKS

    if task not in SFT_TASKS:
        raise TinyevalError(f"SFT task '{task}' has no gold solutions; choose {', '.join(SFT_TASKS)}")
    return [user for user, _ in SFT_TASKS[task]("train", root, False)]


# The user messages each recipe trains from, in the order it reads them (its `limit` keeps a prefix).
TRAINING_PROMPTS: dict[str, Callable[[str, str | None], list[str]]] = {
    "grpo": _grpo_training_prompts,
    "sft": _sft_training_prompts,
}


def carve(algo: str, task: str, dev_items: int, root: str | None) -> DevSplit:
    """`dev_items` rows from the end of `task`'s training split whose text occurs in no earlier row (generated tasks
    such as arith repeat problems), and the training prefix that holds none of them."""
    from tinyeval.train.tasks import get_task

    users = [user for user, _ in get_task(task).rows("train", root)]
    if not 0 < dev_items <= len(users) // 2:
        raise TinyevalError(f"a dev split of {dev_items} items does not fit {task}'s {len(users)} training rows "
                            "(at most half)")
    first = {}
    for i, user in enumerate(users):
        first.setdefault(user, i)
    picked = [i for i in range(len(users) - 1, -1, -1) if first[users[i]] == i][:dev_items]
    dev = {users[i] for i in picked}
    prompts = TRAINING_PROMPTS[algo](task, root)
    train_rows = next((i for i, user in enumerate(prompts) if user in dev), len(prompts))
    return DevSplit(task, tuple(sorted(picked)), train_rows)


def dev_rows(split: DevSplit, root: str | None) -> list[tuple[str, object]]:
    """(user message, gold) of the dev items."""
    from tinyeval.train.tasks import get_task

    rows = get_task(split.task).rows("train", root)
    return [rows[i] for i in split.rows]


def score(split: DevSplit, model: str, adapter: Path, dtype: str, max_new_tokens: int, root: str | None,
          batch_size: int = 32) -> tuple[list[int], dict]:
    """(per dev item, 1 if the adapted model's greedy answer is right (lenient), else 0; the liveness record of the
    merged model that answered: `tinyeval.eval.liveness`, the learning rate is chosen on the adapter, proven)."""
    from tinyeval.eval.backends import merge_with_proof
    from tinyeval.generation import chat_prompt, generate
    from tinyeval.models import default_device, load_model
    from tinyeval.train.tasks import get_task

    rows = dev_rows(split, root)
    base, tokenizer = load_model(model, dtype=dtype, device=default_device())
    merged, proof = merge_with_proof(base, tokenizer, adapter, dtype)
    prompts = [chat_prompt(tokenizer, user) for user, _ in rows]
    completions = generate(merged, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    grade = get_task(split.task).grade
    return [int(grade(text, gold).lenient) for text, (_, gold) in zip(completions, rows)], proof


def choose(per_seed: dict[float, dict[int, float]]) -> float | None:
    """The learning rate with the best mean dev accuracy over its scored seeds (ties: the smaller one); None when no
    learning rate has a scored seed. `per_seed`: lr -> {seed: dev accuracy}."""
    means = {lr: sum(s.values()) / len(s) for lr, s in per_seed.items() if s}
    if not means:
        return None
    return min(means, key=lambda lr: (-means[lr], lr))
