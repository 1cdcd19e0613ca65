"""Every adapter method by name. A new method is one new module (an `AdapterHandle` subclass) plus one line here.

    METHODS["tinylora"]            # -> lowrank.TinyLoraHandle
    register("bias-only", BiasOnly)   # at run time: a plug-in, or a test's toy method

`AdapterConfig` checks `method` against this dict when it is built, so a method registered at run time is
accepted everywhere a method name is: `attach`, `load_adapter`, `plan`, `tinyeval train --method NAME`.
What a method class implements is listed in `handle.py`.
"""

from __future__ import annotations

from tinyeval.adapters.full import FullHandle
from tinyeval.adapters.handle import AdapterHandle
from tinyeval.adapters.lora import LoraHandle
from tinyeval.adapters.lowrank import LoraXsHandle, TinyLoraHandle
from tinyeval.errors import TinyevalError

METHODS: dict[str, type[AdapterHandle]] = {
    "tinylora": TinyLoraHandle,
    "lora-xs": LoraXsHandle,
    "lora": LoraHandle,
    "full": FullHandle,
}


def register(name: str, cls: type[AdapterHandle]) -> type[AdapterHandle]:
    """Add a method under `name` (registering the same class again is a no-op); returns `cls`."""
    if not (isinstance(cls, type) and issubclass(cls, AdapterHandle)):
        raise TypeError(f"an adapter method must be an AdapterHandle subclass, got {cls!r}")
    if METHODS.get(name, cls) is not cls:
        raise TinyevalError(f"adapter method {name!r} is already registered ({METHODS[name].__name__})")
    METHODS[name] = cls
    return cls


def method(name: str) -> type[AdapterHandle]:
    """The class of method `name`."""
    if name not in METHODS:
        raise TinyevalError(f"unknown adapter method {name!r}: use one of {', '.join(METHODS)}")
    return METHODS[name]
