"""The three entry points — `plan`, `attach`, `load_adapter` — for any method: each looks the method up in the
registry (`registry.METHODS`) and lets its class do what only it knows (`cost`, `create`, `load`).

What every method shares happens here, once: finding the target modules, planning, freezing the model, the
base fingerprint, and on load the artifact checks (`artifact`: metadata, file hashes, base weights, NaN).
`plan` and `attach` call the same `cost`, so the plan printed is the adapter built.

Both `attach` and `load_adapter` time their phases into `handle.timings` (seconds; written to adapter.json):
attach: plan_s, fingerprint_s (hashing the adapted base weights), create_s (the method's build; TinyLoRA /
LoRA-XS report the SVD of the frozen factors inside it as svd_s), total_s. load_adapter: verify_s (adapter.json
and file hashes), plan_s, fingerprint_s (the base check), load_s (the method's load), total_s.
"""

from __future__ import annotations

import time
from pathlib import Path

from torch import nn

from tinyeval.adapters.artifact import (
    base_fingerprint,
    check_base,
    check_finite,
    hashing_once,
    read_meta,
    verify_files,
)
from tinyeval.adapters.config import DEFAULT_TARGETS, AdapterConfig
from tinyeval.adapters.handle import AdapterHandle
from tinyeval.adapters.planner import Plan, Target, config_targets, find_targets
from tinyeval.adapters.registry import method as method_class


def plan(config, params: int | None = None, tying: str = "tiled", rank: int = 2, method: str = "tinylora",
         target_modules: tuple[str, ...] | None = None) -> Plan:
    """Plan an adapter for a model config (a transformers `PretrainedConfig`) without loading weights."""
    cfg = AdapterConfig(method=method, params=params, rank=rank, tying=tying,
                        target_modules=target_modules or DEFAULT_TARGETS)  # validates the arguments
    targets, total = config_targets(config.to_json_string(), cfg.target_modules)
    return method_class(method).cost(list(targets), cfg, total)


def plan_model(model: nn.Module, cfg: AdapterConfig) -> tuple[list[Target], Plan]:
    """Targets and plan of an `AdapterConfig` on a loaded model (what `attach` builds)."""
    targets = find_targets(model, cfg.target_modules)
    total = sum(p.numel() for p in model.parameters())
    return targets, method_class(cfg.method).cost(targets, cfg, total)


class _Phases:
    """Wall-clock seconds of consecutive phases: `mark(name)` ends the phase begun at the previous mark."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self.last = round(now - self.last, 3), now

    def into(self, handle: AdapterHandle) -> AdapterHandle:
        handle.timings = {**handle.timings, **self.seconds, "total_s": round(time.perf_counter() - self.start, 3)}
        return handle


def attach(model: nn.Module, config: AdapterConfig) -> AdapterHandle:
    """Attach an adapter to `model` in place and freeze everything that does not train."""
    phases = _Phases()
    model.requires_grad_(False)
    targets, p = plan_model(model, config)
    phases.mark("plan_s")
    with hashing_once():  # the base fingerprint and a method's per-weight keys (SVD cache) hash each weight once
        base = base_fingerprint(model, targets)
        phases.mark("fingerprint_s")
        handle = method_class(config.method).create(model, config, targets, p, base)
        phases.mark("create_s")
    return phases.into(handle)


def load_adapter(model: nn.Module, path: str | Path) -> AdapterHandle:
    """Attach a saved adapter to `model` (which must hold the exact base weights) and return its handle.

    Every way an artifact can be unusable — unreadable or incomplete metadata, a file missing, damaged or
    edited, a different base model, NaN or inf in the trained parameters — is a one-line `TinyevalError`."""
    phases, path = _Phases(), Path(path)
    meta = read_meta(path)
    verify_files(path, meta)
    phases.mark("verify_s")
    cfg = AdapterConfig.from_dict(meta["config"])
    model.requires_grad_(False)
    targets, p = plan_model(model, cfg)
    phases.mark("plan_s")
    check_base(model, targets, meta, path)
    phases.mark("fingerprint_s")
    handle = method_class(cfg.method).load(model, cfg, targets, p, meta, path)
    check_finite(handle.trainable_parameters(), f"refusing to load adapter {path}")
    phases.mark("load_s")
    return phases.into(handle)
