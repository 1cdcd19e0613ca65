"""JSON contracts: every JSON file the toolkit writes has a `TypedDict` schema, and `check` validates a loaded
document against it, field by field, with JSON types (a boolean is `true`, a count is an integer).

    class Summary(TypedDict):
        steps: int
        interrupted: bool
        reward: float | None          # null allowed
        note: NotRequired[str]        # may be absent

    check(json.loads(text), Summary)  # raises SchemaError("$.steps: expected int, got str '3'")

`typed_dict(SomeDataclass)` derives the schema of what `dataclasses.asdict` writes, so a field added to the dataclass is
in its schema too (tuples become lists, nested dataclasses their own schema, `X | None` stays a union).

Supported: TypedDict (total or not, `Required` / `NotRequired`), `list[X]`, `dict[str, X]`, unions (`X | None`),
`Literal[...]`, `Any`, and the scalars `str`, `int` (never a bool), `float` (an int is a float in JSON) and `bool`.
A TypedDict's unknown keys are errors unless it declares `__extra__ = True` (free-form mappings such as lm-eval's
per-task metrics).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import (
    Any,
    Literal,
    NotRequired,
    Required,
    TypedDict,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)


class SchemaError(ValueError):
    """A document does not match its schema; the message names the JSON path."""


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_typeddict(value: Any, tp: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise SchemaError(f"{path}: expected an object ({tp.__name__}), got {type(value).__name__}")
    hints = get_type_hints(tp, include_extras=True)
    for key, hint in hints.items():
        origin = get_origin(hint)
        optional = (origin is NotRequired) or (key not in tp.__required_keys__ and origin is not Required)
        if origin in (NotRequired, Required):
            hint = get_args(hint)[0]
        if key not in value:
            if not optional:
                raise SchemaError(f"{path}: missing key {key!r} ({tp.__name__})")
            continue
        check(value[key], hint, f"{path}.{key}")
    extra = set(value) - set(hints)
    if extra and not getattr(tp, "__extra__", False):
        raise SchemaError(f"{path}: unexpected keys {sorted(extra)} ({tp.__name__})")


def check(value: Any, tp: Any, path: str = "$") -> None:
    """Raise `SchemaError` unless `value` (parsed JSON) matches the type `tp`."""
    if tp is Any:
        return
    if is_typeddict(tp):
        return _check_typeddict(value, tp, path)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for arm in args:
            try:
                return check(value, arm, path)
            except SchemaError as e:
                errors.append(str(e))
        raise SchemaError(f"{path}: matches none of {' | '.join(map(_name, args))} ({'; '.join(errors)})")
    if origin is Literal:
        if value not in args or type(value) is not type(next(a for a in args if a == value)):
            raise SchemaError(f"{path}: expected one of {list(args)}, got {value!r}")
        return
    if origin is list:
        if not isinstance(value, list):
            raise SchemaError(f"{path}: expected a list, got {type(value).__name__} {value!r:.40}")
        for i, item in enumerate(value):
            check(item, args[0] if args else Any, f"{path}[{i}]")
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{path}: expected an object, got {type(value).__name__} {value!r:.40}")
        for k, item in value.items():
            check(item, args[1] if args else Any, f"{path}.{k}")
        return
    if tp is type(None):
        ok = value is None
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp in (str, dict, list):
        ok = isinstance(value, tp)
    else:
        raise TypeError(f"schema type {tp!r} at {path} is not supported")
    if not ok:
        raise SchemaError(f"{path}: expected {_name(tp)}, got {type(value).__name__} {value!r:.40}")


def check_lines(lines: typing.Iterable[Any], tp: Any, name: str = "$") -> int:
    """Check every row of a JSONL document; returns how many were checked."""
    n = 0
    for n, row in enumerate(lines, 1):
        check(row, tp, f"{name}[{n - 1}]")
    return n


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
    hints = get_type_hints(cls)
    fields = {f.name: override.get(f.name, _json_type(hints[f.name])) for f in dataclasses.fields(cls)}
    return TypedDict(name or f"{cls.__name__}JSON", fields)  # type: ignore[operator]
