"""Write the corpus without its contaminated documents, or without the contaminated spans (GPT-3 style).

  docs   drop every document with evidence meeting the recipe's span or fraction threshold
  spans  the GPT-3 / lm-eval Janitor cut: remove each matched n-gram plus 200 characters on each side,
         keep the remaining pieces of >= 200 characters as separate documents, and drop a document cut
         into more than 10 pieces as too dirty

Each shard task becomes one JSONL file in the output directory (rows keep their other fields; text
files become {"text": ...} rows), written atomically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from tinyeval.audit.scan.readers import registry, skipped
from tinyeval.audit.scan.readers.types import ShardTask, Stats
from tinyeval.errors import TinyevalError
from tinyeval.io import atomic_path


@dataclass(frozen=True)
class JanitorCut:
    """GPT-3's span-removal parameters (lm-eval's Janitor defaults)."""

    window: int = 200
    min_piece: int = 200
    too_dirty: int = 10


def _cut(text: str, spans: list[tuple[int, int]], cut: JanitorCut = JanitorCut()) -> list[str]:
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        s, e = max(0, s - cut.window), min(len(text), e + cut.window)
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    if len(merged) > cut.too_dirty:
        return []
    pieces, prev = [], 0
    for s, e in merged:
        pieces.append(text[prev:s])
        prev = e
    pieces.append(text[prev:])
    return [p for p in pieces if len(p) >= cut.min_piece]


def _drop(text: str, spans: list[tuple[int, int]]) -> list[str]:
    return []


MODES: dict[str, Callable[[str, list[tuple[int, int]]], list[str]]] = {"docs": _drop, "spans": _cut}


def _name(i: int, task: ShardTask) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", registry.stem(task.source))
    return f"{i:05d}-{base}.jsonl"


class DecontaminateJSON(TypedDict):
    """run.json's "decontaminate": documents kept whole, removed, cut (spans mode), and rows written."""

    kept: int
    removed: int
    cut: int
    pieces_written: int


def write_clean(tasks: list[ShardTask], flagged: dict[str, dict[int, list[tuple[int, int]]]],
                out: str | Path, mode: str = "docs") -> DecontaminateJSON:
    """Re-read every task and write the clean corpus; returns counts of kept, removed and cut documents."""
    if mode not in MODES:
        raise TinyevalError(f"unknown decontamination mode '{mode}'; known: {', '.join(MODES)}")
    clean = MODES[mode]
    counts: DecontaminateJSON = {"kept": 0, "removed": 0, "cut": 0, "pieces_written": 0}
    out = Path(out)
    for i, task in enumerate(tasks):
        if task.fmt in skipped.NAMES:  # a file no reader takes: nothing to rewrite (the report names it)
            continue
        spans_of = flagged.get(task.source, {})
        with atomic_path(out / _name(i, task)) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for batch in registry.read_batches(task, Stats(), keep_records=True):
                for text, pos, record in zip(batch.texts, batch.positions, batch.records or []):
                    spans = spans_of.get(pos)
                    pieces = [text] if spans is None else clean(text, spans)
                    counts["kept" if spans is None else ("cut" if pieces else "removed")] += 1
                    for piece in pieces:
                        row = dict(record) if record is not None else {}
                        row[task.text_field] = piece
                        f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                        counts["pieces_written"] += 1
    return counts
