"""Atomic file output: a result file is either complete or absent, never half written."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    The temporary file lives in the destination directory so the final `os.replace` is a same-filesystem
    rename, which POSIX guarantees to be atomic.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared like any file
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that replaces `path` (if any) only when the block succeeds."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def to_json_value(obj: Any) -> Any:
    """`json.dumps`'s `default`: numpy scalars and arrays and paths become their JSON values; anything else
    is a TypeError. Nothing is ever stringified silently (a numpy bool written as "False" is truthy)."""
    import numpy as np  # numpy is a core dependency; imported here to keep `tinyeval --help` light

    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable: convert it explicitly")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    """The one JSON encoder of the toolkit (see `to_json_value`). Output is strict JSON: a NaN or infinite
    float (an undefined statistic) is written as null, since `NaN` is not JSON and breaks `jq`."""
    try:
        return json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False, default=to_json_value)
    except ValueError:
        return json.dumps(_finite(json.loads(json.dumps(obj, default=to_json_value))), indent=indent,
                          ensure_ascii=False, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, dumps_json(obj) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(dumps_json(row, indent=None) + "\n")


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one whole line and flush it, so a crash leaves whole lines only (see `read_jsonl`)."""
    line = dumps_json(row, indent=None) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike, warn=None) -> list[dict]:
    """Rows of a JSONL file written by `append_jsonl`. An incomplete last line (a crash mid-write of an older
    writer) is dropped, with `warn(message)` called; a damaged line elsewhere is an error."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # no newline after it: a torn last write
                if warn:
                    warn(f"{path}: dropped an incomplete last line ({len(line)} bytes)")
                break
            raise
    return rows
