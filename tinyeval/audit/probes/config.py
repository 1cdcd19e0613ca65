"""What every probe takes and gives: the run's `ProbeConfig`, the `Model` it probes, the `ProbeData` (benchmark
items, their twins, the control set) and the `Signal` rows of the verdict table.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from tinyeval.audit.probes.stats import Estimate
from tinyeval.errors import TinyevalError

PROBES = ("accuracy", "prefix", "membership")  # the names of run.PROBES
BENCHMARKS = {"gsm8k": ("question", "gsm1k_public"), "math500": ("problem", "math")}  # text field, control set


@dataclass(frozen=True)
class ProbeConfig:
    """One probe run.

    model: alias, hub id or directory (`tinyeval models`); adapter: a `tinyeval.adapters` directory.
    benchmark: gsm8k | math500. probes: any of accuracy, prefix, membership (accuracy needs GSM8K twins).
    n_generate: items for the generation probes (accuracy, prefix); n_membership: items scored for
        membership (None = the whole split). Items are a seeded random sample.
    max_new_tokens: answer budget of the accuracy probe; prefix_new_tokens: completion budget of the prefix
        probe (the remainder is scored on as many words as it has).
    prefix_ratio: share of the problem's words given as the prefix (0.6 in Wu et al.).
    k: share of lowest-scoring tokens in Min-K% / Min-K%++.
    backend: auto (vLLM for generation when installed, else transformers) | hf | vllm.
        Membership scores always use transformers: they need the full next-token distribution.
    dtype: auto = tinyeval.models.default_dtype() (bf16 where the hardware computes in it, else fp32).
    """

    model: str = "smollm2-135m"
    benchmark: str = "gsm8k"
    adapter: str | None = None
    probes: tuple[str, ...] = PROBES
    n_generate: int = 200
    n_membership: int | None = None
    max_new_tokens: int = 256
    prefix_new_tokens: int = 48
    prefix_ratio: float = 0.6
    k: float = 0.2
    seed: int = 0
    batch_size: int = 16
    n_boot: int = 2000
    backend: str = "auto"
    dtype: str = "auto"
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.benchmark not in BENCHMARKS:
            raise TinyevalError(f"probes support {', '.join(BENCHMARKS)}, not '{self.benchmark}'")
        unknown = set(self.probes) - set(PROBES)
        if unknown:
            raise TinyevalError(f"unknown probe(s) {', '.join(sorted(unknown))}; known: {', '.join(PROBES)}")
        if not 0 < self.prefix_ratio < 1 or not 0 < self.k <= 1:
            raise TinyevalError("prefix_ratio must be in (0, 1) and k in (0, 1]")
        if self.n_generate < 2 or (self.n_membership is not None and self.n_membership < 2):
            raise TinyevalError("n_generate and n_membership must be at least 2 (a CI needs a sample)")
        if self.backend not in ("auto", "hf", "vllm"):
            raise TinyevalError(f"backend must be auto, hf or vllm, not '{self.backend}'")


class SignalRow(TypedDict):
    """One row of the verdict table (`Signal.row`)."""

    probe: str
    signal: str
    value: float
    ci95: str  # "[lo, hi]"
    n: int
    suggests: str


@dataclass
class Signal:
    """One row of the verdict table."""

    probe: str
    signal: str
    estimate: Estimate
    null: float | None  # the value expected without leakage; None for a level reported for context
    higher_means: str  # what an interval above `null` suggests (for a level: what it is)
    detail: dict = field(default_factory=dict)

    @property
    def suggests(self) -> str:
        if self.null is None:
            return self.higher_means
        if self.estimate.lo > self.null:
            return self.higher_means
        if self.estimate.hi < self.null:
            return f"below {self.null:g}: the control looks more familiar than the benchmark"
        return f"no evidence (interval contains {self.null:g})"

    def row(self) -> SignalRow:
        e = self.estimate
        return {"probe": self.probe, "signal": self.signal, "value": round(float(e.value), 4),
                "ci95": f"[{e.lo:.3f}, {e.hi:.3f}]", "n": int(e.n), "suggests": self.suggests}


@dataclass
class Model:
    """What the probes need from a model: batched generation and the transformers model for scoring."""

    hf: object
    tokenizer: object
    generate: Callable[[Sequence[str], int], list[str]]
    backend: str


@dataclass
class ProbeData:
    """The texts a probe run compares: benchmark rows, their verified twins (GSM8K) and the control set."""

    rows: list[dict]  # the benchmark's test rows
    field: str  # the text field probed (question / problem)
    twins: list  # perturb.twins.Twin of the rows that have one (empty for MATH500)
    control: list[str]  # texts the model cannot have seen (GSM1k; MATH test outside MATH500)
    control_name: str


def sample(items: Sequence, n: int | None, seed: int) -> list:
    """A seeded random sample of n items in their original order (all of them when n is None or larger)."""
    if n is None or n >= len(items):
        return list(items)
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), n))]
