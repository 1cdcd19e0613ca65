"""`attach`: wire an adapter of any method onto a loaded model (the PEFT-style "model" part of the trio).

Each method is one small function picked from `ATTACH`; they share the planner, the base-weight fingerprint
and the handle interface.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from tinyeval.adapters.config import AdapterConfig
from tinyeval.adapters.handle import AdapterHandle


def _attach_lowrank(model: nn.Module, cfg: AdapterConfig) -> AdapterHandle:
    from tinyeval.adapters.artifact import target_fingerprints, combine
    from tinyeval.adapters.lowrank import LowRankHandle, build_state
    from tinyeval.adapters.planner import plan_model

    targets, p = plan_model(model, cfg)
    prints = target_fingerprints(model, targets)
    state, info = build_state(model, cfg, p, targets, prints)
    base = combine(targets, target_fingerprints(model, targets, canonical=True))
    return LowRankHandle(model, cfg, p, targets, base, state, info)


def _attach_lora(model: nn.Module, cfg: AdapterConfig) -> AdapterHandle:
    from tinyeval.adapters.artifact import target_fingerprints, combine
    from tinyeval.adapters.lora import LoraHandle, wrap_lora
    from tinyeval.adapters.planner import plan_model

    targets, p = plan_model(model, cfg)
    base = combine(targets, target_fingerprints(model, targets, canonical=True))
    return LoraHandle(wrap_lora(model, cfg), cfg, p, targets, base)


def _attach_full(model: nn.Module, cfg: AdapterConfig) -> AdapterHandle:
    from tinyeval.adapters.artifact import target_fingerprints, combine
    from tinyeval.adapters.lora import FullHandle
    from tinyeval.adapters.planner import plan_model

    targets, p = plan_model(model, cfg)
    base = combine(targets, target_fingerprints(model, targets, canonical=True))
    model.requires_grad_(True)
    return FullHandle(model, cfg, p, targets, base)


ATTACH: dict[str, Callable[[nn.Module, AdapterConfig], AdapterHandle]] = {
    "tinylora": _attach_lowrank, "lora-xs": _attach_lowrank, "lora": _attach_lora, "full": _attach_full}


def attach(model: nn.Module, config: AdapterConfig) -> AdapterHandle:
    """Attach an adapter to `model` in place and freeze everything that does not train."""
    model.requires_grad_(False)
    return ATTACH[config.method](model, config)
