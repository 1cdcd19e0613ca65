"""Tiny adapters behind one interface: TinyLoRA, LoRA-XS, LoRA (PEFT) and full fine-tuning.

    from tinyeval.adapters import AdapterConfig, attach, load_adapter
    handle = attach(model, AdapterConfig(method="tinylora", params=13))

The contract is notes/ADAPTER_API.md; `plan(config, params, tying, rank)` sizes an adapter without weights.
Public names resolve on first use (PEP 562): importing the package, as the CLI does to register
`tinyeval plan`, must not pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AdapterConfig": "config", "DEFAULT_TARGETS": "config", "METHODS": "config", "AdapterHandle": "handle",
    "Plan": "planner", "plan": "planner", "load_adapter": "artifact", "attach": "wiring", "ATTACH": "wiring",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"tinyeval.adapters.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tinyeval.adapters' has no attribute {name!r}")
