"""Pseudo-formats for what a corpus directory or glob reaches but no reader takes: a file no format claims
(a README, a .tex), and a path that is not a readable regular file (a broken link, a FIFO, a device). They
are planned as tasks like any other, so that each one is counted and named in the report, with its size."""

from __future__ import annotations

import os
from collections.abc import Iterator

from tinyeval.audit.scan.readers import streams
from tinyeval.audit.scan.readers.types import Doc, Format, ShardTask, Stats

UNKNOWN = "unknown"
UNREADABLE = "unreadable"


def unknown(task: ShardTask, stats: Stats) -> Iterator[Doc]:
    stats.skip("unknown_format", streams.file_size(task.source), f"{task.source}: no reader for this file name")
    return iter(())


def unreadable(task: ShardTask, stats: Stats) -> Iterator[Doc]:
    why = "broken symbolic link" if not os.path.exists(task.source) else "not a regular file"
    stats.skip("unreadable_files", 0, f"{task.source}: {why}")
    return iter(())


FORMATS = (Format(UNKNOWN, unknown), Format(UNREADABLE, unreadable))
NAMES = frozenset(f.name for f in FORMATS)  # tasks of these hold no documents (decontamination skips them)
