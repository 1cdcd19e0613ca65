"""Tiny adapters behind one interface: TinyLoRA, LoRA-XS, LoRA (PEFT), full fine-tuning, any registered method.

    from tinyeval.adapters import AdapterConfig, attach, load_adapter
    handle = attach(model, AdapterConfig(method="tinylora", params=13))

The contract is `AdapterHandle` (handle.py); `plan(config, params, tying, rank)` sizes an adapter without
weights.
A new method is one module (an `AdapterHandle` subclass, see handle.py) plus one line in `registry.METHODS`,
or `register(name, cls)` at run time.
Public names resolve on first use (PEP 562): importing the package, as the CLI does to register
`tinyeval plan`, must not pay for importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AdapterConfig": "config", "DEFAULT_TARGETS": "config", "AdapterHandle": "handle", "Plan": "planner",
    "METHODS": "registry", "register": "registry", "plan": "wiring", "attach": "wiring", "load_adapter": "wiring",
    "AdapterJson": "artifact",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"tinyeval.adapters.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tinyeval.adapters' has no attribute {name!r}")
