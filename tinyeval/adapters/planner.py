"""Which modules an adapter touches, how TinyLoRA ties them, and what that costs — from shapes alone.

Works on any module tree, including a meta-device model (`tinyeval.models.meta_model`), so
`tinyeval plan --model qwen2.5-7b` needs no weights. Each method's class prices its own adapter from these
shapes (`cost`, e.g. `lowrank.TinyLora.cost` applies the budget rule below); `wiring.plan` and `attach` call
the same `cost`, so the plan printed is the adapter built.

Budget rule (paper, §"weight tying"): exhaust u before tying. With M adapted modules and budget N:
  N ≥ groups(1): no tying, u = N // groups(1);
  N < groups(1): u = 1 and n_tie = the smallest tie size whose group count fits in N.
Tiled groups are ceil(M / n_tie) runs of consecutive modules in depth order (q, k, v, o, gate, up, down of
block 0, then block 1, …), so 196 modules (Qwen2.5-7B) at N = 13 give n_tie = 16 and 13 groups — Table 2.
Structured groups never mix module types: each type's modules, in depth order, are cut into runs of n_tie,
so the group count is Σ_type ceil(L_type / n_tie) and a budget may buy fewer parameters than tiled.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from tinyeval.errors import TinyevalError

_BLOCK = re.compile(r"\.(\d+)\.")


@dataclass(frozen=True)
class Target:
    """One adapted linear module: its dotted name, block index (depth), type (leaf name) and shape."""

    name: str
    block: int
    kind: str
    out_features: int
    in_features: int


def find_targets(model, target_modules: tuple[str, ...]) -> list[Target]:
    """Adapted nn.Linear modules in depth order: by block, then by the order of `target_modules`."""
    from torch import nn

    order = {kind: i for i, kind in enumerate(target_modules)}
    found = []
    for name, module in model.named_modules():
        kind = name.rsplit(".", 1)[-1]
        if kind in order and isinstance(module, nn.Linear):
            m = _BLOCK.search(name)
            block = int(m.group(1)) if m else 1 << 30  # modules outside the blocks come last
            found.append(Target(name, block, kind, module.out_features, module.in_features))
    if not found:
        raise TinyevalError(f"no nn.Linear module named any of {', '.join(target_modules)} in this model")
    return sorted(found, key=lambda t: (t.block, order[t.kind], t.name))


def _tiled(targets: list[Target], n_tie: int) -> list[list[int]]:
    return [list(range(i, min(i + n_tie, len(targets)))) for i in range(0, len(targets), n_tie)]


def _structured(targets: list[Target], n_tie: int) -> list[list[int]]:
    kinds = list(dict.fromkeys(t.kind for t in targets))  # per-block order of first appearance
    groups = []
    for kind in kinds:
        idx = [i for i, t in enumerate(targets) if t.kind == kind]  # already in depth order
        groups += [idx[j:j + n_tie] for j in range(0, len(idx), n_tie)]
    return groups


TYING: dict[str, Callable[[list[Target], int], list[list[int]]]] = {"tiled": _tiled, "structured": _structured}


@dataclass(frozen=True)
class Plan:
    """What an adapter costs. For tinylora: u (length of each v), n_tie (modules per group at most), groups
    (number of distinct v), trainable = groups · u. bytes_* are the size of the trainable state in fp32 and
    bf16. `members[g]` lists the module names sharing group g's v (tinylora), empty for other methods."""

    method: str
    rank: int
    modules: int
    u: int | None
    n_tie: int | None
    groups: int | None
    trainable: int
    bytes_fp32: int
    bytes_bf16: int
    tying: str | None = None
    members: tuple[tuple[str, ...], ...] = ()

    def row(self) -> dict:
        """The plan as a flat dict for tables and JSON (without the per-group module lists)."""
        return {k: v for k, v in self.__dict__.items() if k != "members"}


def choose_tying(targets: list[Target], params: int, tying: str) -> tuple[int, int, list[list[int]]]:
    """(u, n_tie, groups) for a TinyLoRA budget: exhaust u down to 1 before raising n_tie."""
    group_fn = TYING[tying]
    untied = group_fn(targets, 1)
    if params >= len(untied):
        return params // len(untied), 1, untied
    for n_tie in range(2, len(targets) + 1):
        groups = group_fn(targets, n_tie)
        if len(groups) <= params:
            return 1, n_tie, groups
    fewest = len(group_fn(targets, len(targets)))
    raise TinyevalError(f"{tying} tying needs at least {fewest} trainable parameters (one per module type); "
                        f"got a budget of {params}")


def sized(method: str, rank: int, targets: list[Target], trainable: int, **kw) -> Plan:
    """A `Plan` whose byte sizes follow from the trainable count (fp32 and bf16)."""
    return Plan(method, rank, len(targets), trainable=trainable, bytes_fp32=4 * trainable,
                bytes_bf16=2 * trainable, **kw)


@functools.lru_cache(maxsize=32)
def config_targets(config_json: str, target_modules: tuple[str, ...]) -> tuple[tuple[Target, ...], int]:
    """Targets and total parameter count of a config, from a meta-device model built once per config
    (a sweep plans many cells on the same model)."""
    from transformers import AutoConfig

    from tinyeval.models import meta_model

    data = json.loads(config_json)
    model = meta_model(AutoConfig.for_model(**data))
    return tuple(find_targets(model, target_modules)), sum(p.numel() for p in model.parameters())
