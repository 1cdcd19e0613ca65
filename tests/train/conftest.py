"""Training fixtures: `parity`, a task a random tiny model earns reward on half the time."""

from __future__ import annotations

import pytest

from tinyeval.grading import Grade
from tinyeval.train import tasks as tasks_mod
from tinyeval.train.tasks import Task


def _parity_rows(split, root):
    return [(f"Say something about the number {i}.", str(i)) for i in range(12)]


def _parity_grade(completion: str, gold) -> Grade:
    """A reward a random model earns half the time: even character count (real advantages, real updates)."""
    return Grade(len(completion) % 2 == 0, len(completion) % 3 == 0, None)


@pytest.fixture
def parity_task(monkeypatch):
    monkeypatch.setitem(tasks_mod.TASKS, "parity", Task("parity", _parity_rows, _parity_grade))
