"""Shard planning: corpus arguments (files, directories, globs, hf:// datasets) -> shard tasks.

The order of tasks is stable (arguments in order, files sorted), and results are merged in that order, so
a report does not depend on the engine or the number of workers. Splittable files (uncompressed .jsonl)
larger than `split_bytes` become byte ranges aligned to lines, so one large file still feeds every worker.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from tinyeval.audit.scan.readers import registry
from tinyeval.audit.scan.readers.types import ShardTask
from tinyeval.errors import TinyevalError


def _expand(spec: str) -> list[str]:
    if os.path.isdir(spec):
        found = [str(p) for p in sorted(Path(spec).rglob("*")) if p.is_file() and registry.format_of(str(p))]
        if not found:
            raise TinyevalError(f"corpus directory {spec} holds no readable files "
                                f"({', '.join(registry.suffixes())})")
        return found
    if glob.has_magic(spec):
        found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        if not found:
            raise TinyevalError(f"corpus glob '{spec}' matches no files")
        return found
    if not os.path.exists(spec):
        raise TinyevalError(f"corpus '{spec}' does not exist")
    return [spec]


def plan_tasks(corpus: list[str], text_field: str = "text", split_bytes: int = 16 << 20) -> list[ShardTask]:
    """Shard tasks for every corpus argument, in a stable order (the order results are merged in)."""
    if not corpus:
        raise TinyevalError("no corpus given: pass --corpus PATH|GLOB|hf://dataset[:config[:split]]")
    tasks: list[ShardTask] = []
    for spec in corpus:
        url = registry.scheme_of(spec)
        if url is not None:
            if url.check is not None:
                url.check(spec)
            tasks.append(ShardTask(spec, url.name, text_field=text_field))
            continue
        for path in _expand(spec):
            fmt = registry.format_of(path)
            if fmt is None:
                raise TinyevalError(f"corpus file {path}: unknown format; readable: {', '.join(registry.suffixes())}")
            size = os.path.getsize(path)
            if registry.FORMATS[fmt].splittable and size > split_bytes:
                tasks += [ShardTask(path, fmt, s, min(s + split_bytes, size), text_field)
                          for s in range(0, size, split_bytes)]
            else:
                tasks.append(ShardTask(path, fmt, text_field=text_field))
    return tasks
