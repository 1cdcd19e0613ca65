"""The JSON-contract checker and the typed encoder: numpy scalars become JSON values, never strings."""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict

import numpy as np
import pytest

from tinyeval.io import append_jsonl, dumps_json, read_jsonl
from tinyeval.schema import SchemaError, check


class Inner(TypedDict):
    n: int
    x: float | None


class Doc(TypedDict):
    name: str
    flag: bool
    kind: Literal["a", "b"]
    items: list[Inner]
    scores: dict[str, float]
    note: NotRequired[str]
    free: Any


def _doc(**over):
    d = {"name": "x", "flag": True, "kind": "a", "items": [{"n": 1, "x": None}], "scores": {"a": 1, "b": 0.5},
         "free": {"anything": [1]}}
    return {**d, **over}


def test_check_accepts_a_valid_document():
    check(_doc(), Doc)
    check(_doc(note="hi"), Doc)


@pytest.mark.parametrize("over, where", [
    ({"flag": "False"}, "$.flag"), ({"flag": 0}, "$.flag"), ({"items": [{"n": True, "x": 1.0}]}, "$.items[0].n"),
    ({"items": [{"n": "3", "x": 1.0}]}, "$.items[0].n"), ({"kind": "c"}, "$.kind"), ({"scores": {"a": "1"}}, "$.scores.a"),
    ({"extra": 1}, "unexpected keys"), ({"note": 3}, "$.note")])
def test_check_names_the_bad_field(over, where):
    with pytest.raises(SchemaError, match=where.replace("$", r"\$").replace("[", r"\[").replace("]", r"\]")):
        check(_doc(**over), Doc)


def test_check_reports_a_missing_key():
    d = _doc()
    del d["flag"]
    with pytest.raises(SchemaError, match="missing key 'flag'"):
        check(d, Doc)


def test_numpy_scalars_become_json_values_not_strings():
    out = json.loads(dumps_json({"b": np.bool_(False), "i": np.int64(3), "f": np.float32(0.5), "a": np.arange(2)}))
    assert out == {"b": False, "i": 3, "f": 0.5, "a": [0, 1]}
    assert out["b"] is False and type(out["i"]) is int


def test_unknown_types_are_refused_not_stringified():
    with pytest.raises(TypeError, match="not JSON serialisable"):
        dumps_json({"x": object()})


def test_non_finite_floats_become_null():
    assert json.loads(dumps_json({"x": float("nan"), "y": [float("inf"), 1.0]})) == {"x": None, "y": [None, 1.0]}


def test_jsonl_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "records.jsonl"
    append_jsonl(path, {"step": 1})
    append_jsonl(path, {"step": 2})
    with open(path, "a") as f:
        f.write('{"step": 3, "rew')
    warned = []
    assert read_jsonl(path, warn=warned.append) == [{"step": 1}, {"step": 2}]
    assert "incomplete last line" in warned[0]
