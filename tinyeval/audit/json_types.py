"""JSON schemas derived from dataclasses: the `TypedDict` of what `dataclasses.asdict` writes, for
`tinyeval.schema.check`. One source of truth: a field added to the dataclass is in its schema too.

    HitJSON = typed_dict(Hit)              # {"source": str, "doc": int, ...}
    check(json.loads(text)["hits"][0], HitJSON)

Tuples become lists (JSON has no tuples), nested dataclasses their own schema, `X | None` stays a union.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypedDict, Union, get_args, get_origin


def _json_type(tp: Any) -> Any:
    if dataclasses.is_dataclass(tp):
        return typed_dict(tp)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (tuple, list):
        return list[_json_type(args[0])] if args else list
    if origin is dict:
        return dict[str, _json_type(args[1])] if args else dict
    if origin in (Union, types.UnionType):
        return Union[tuple(_json_type(a) for a in args)]  # noqa: UP007 - built from a runtime tuple
    return tp


def typed_dict(cls: type, name: str | None = None, **override: Any) -> type:
    """The TypedDict of `dataclasses.asdict(cls(...))`; `override` replaces the type of named fields."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: override.get(f.name, _json_type(hints[f.name])) for f in dataclasses.fields(cls)}
    return TypedDict(name or f"{cls.__name__}JSON", fields)  # type: ignore[operator]
