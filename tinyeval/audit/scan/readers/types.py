"""What a corpus reader takes (a shard task) and gives (documents in batches), and what it counts (Stats).

A document is located by `(source, position)`: the byte offset of its line (or paragraph) in the
(decompressed) file, or its row number in a parquet file or hub dataset. It is named by its own id, when its
row has one (`record_id`: the task's `id_field`, else the first of `ID_FIELDS` present); the scan reads the
id of a document only when the document has a hit (`Batch.doc_id`), so the hot loop never parses rows for it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from tinyeval.audit.scan import ngrams

ID_FIELDS = ("id", "url", "doc_id")  # a row's own name, tried in this order when no id field is chosen
SKIP_KINDS = ("malformed_json", "invalid_utf8", "missing_text", "empty_files", "truncated_files",
              "unreadable_files", "unknown_format")


@dataclass(frozen=True)
class ShardTask:
    """One unit of scan work: a whole file, a byte range of a splittable file, or a hub dataset."""

    source: str  # a file path or hf://...
    fmt: str  # a format name in readers.registry.FORMATS
    start: int = 0
    end: int | None = None  # byte range [start, end) of an uncompressed .jsonl; None = to the end
    text_field: str = "text"
    id_field: str | None = None  # the row field that names a document ("a.b" reaches into an object);
    # None: the first of ID_FIELDS present


def record_id(record: object, field: str | None) -> str | None:
    """A row's own name: its `field` ("metadata.url" reaches into an object), or with no field chosen the
    first of `ID_FIELDS` it has; strings as they are, other values as compact JSON; None when it has none."""
    if not isinstance(record, dict):
        return None
    value = None
    if field is None:
        value = next((record[k] for k in ID_FIELDS if record.get(k) is not None), None)
    elif field in record:
        value = record[field]
    else:
        value = record
        for key in field.split("."):
            value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Stats:
    """Counters of one task: documents and bytes scanned, and everything skipped."""

    docs: int = 0
    bytes: int = 0  # UTF-8 bytes of the documents' text (counted by the scan, which encodes them anyway)
    skipped: Counter = field(default_factory=Counter)  # kind (SKIP_KINDS) -> lines, rows or files
    skipped_bytes: int = 0  # input bytes not scanned: skipped lines, rows and files, unread rests of damaged ones
    problems: list[str] = field(default_factory=list)  # "source: what happened" for damaged files

    def add(self, other: Stats) -> None:
        self.docs += other.docs
        self.bytes += other.bytes
        self.skipped.update(other.skipped)
        self.skipped_bytes += other.skipped_bytes
        self.problems.extend(other.problems)

    def skip(self, kind: str, size: int, problem: str | None = None) -> None:
        """Count one skipped line, row or file of `size` input bytes, and why."""
        self.skipped[kind] += 1
        self.skipped_bytes += size
        if problem:
            self.problems.append(problem)


class Doc(NamedTuple):
    """One document as a reader yields it (the slow, general path: every format has it).

    A reader may stream a long document as several pieces: the first with base 0, the rest with the same
    `pos` and `base` = the character offset of the piece in the document (`windows.windowed` joins them).
    """

    pos: int  # byte offset of its line / paragraph, or its row number
    text: str
    record: dict | None  # the parsed row (JSONL, parquet, hub) or None (text files)
    base: int = 0  # character offset of `text` in the document


@dataclass(frozen=True)
class Window:
    """How long documents are scanned: in windows of at most `chars` characters that overlap by the last
    `overlap_words` words (n - 1 for n-grams, so every n-gram lies whole inside some window)."""

    chars: int = 4 << 20
    overlap_words: int = 12


@dataclass
class Batch:
    """Documents of one read: Python strings, or (JSONL fast paths) one UTF-8 buffer with offsets."""

    texts: list[str] | None
    positions: list[int]
    records: list[dict | None] | None = None  # the parsed rows, only when asked for (decontamination)
    data: bytes | None = None  # documents back to back (compiled decoder or Arrow string column)
    offsets: np.ndarray | None = None  # (D + 1,) int64 document boundaries in `data`
    bases: list[int] | None = None  # character offset of each entry in its document (windows); None: all 0
    ids: list[str | None] | None = None  # each document's own name (`record_id`), where the reader had rows
    lines: bytes | None = None  # JSONL: the block the documents' lines lie in (`doc_id` parses one of them)
    line_base: int = 0  # offset of `lines` in the stream (`positions` are offsets in the stream)

    def __len__(self) -> int:
        return len(self.positions)

    def doc_id(self, d: int, field: str | None) -> str | None:
        """Document d's own name (`record_id`): from the rows a reader kept, else by parsing its JSONL line
        (only documents with a hit are asked); None for text files and rows without one."""
        if self.ids is not None:
            return self.ids[d]
        if self.records is not None:
            return record_id(self.records[d], field)
        if self.lines is None:
            return None
        start = self.positions[d] - self.line_base
        end = self.lines.find(b"\n", start)
        try:
            return record_id(json.loads(self.lines[start:end if end >= 0 else len(self.lines)]), field)
        except ValueError:
            return None

    def text(self, d: int) -> str:
        if self.texts is not None:
            return self.texts[d]
        return self.data[self.offsets[d]:self.offsets[d + 1]].decode("utf-8", "replace")

    def encode(self, norm) -> ngrams.Encoded:
        if self.texts is not None:
            return ngrams.encode(self.texts, norm)
        return ngrams.encode_utf8(self.data, self.offsets[:-1], self.offsets[1:], norm)


DocReader = Callable[[ShardTask, Stats], Iterator[Doc]]
BatchReader = Callable[[ShardTask, Stats, int, Window], Iterator[Batch]]


@dataclass(frozen=True)
class Format:
    """One corpus format: how its sources are recognised and how their documents are read.

    `docs` is required: every document with its row, one at a time (decontamination rewrites rows from it,
    and the scan batches it when there is no `batches`). `batches` is an optional fast path for the scan
    that must give the same documents (JSONL's compiled decoder). Register it in `readers.registry`.
    """

    name: str  # ShardTask.fmt, e.g. "jsonl.gz"; a ".gz" / ".zst" ending selects the decompressor (streams)
    docs: DocReader  # (task, stats) -> Doc per document, damage counted in stats
    suffixes: tuple[str, ...] = ()  # file name endings it claims, matched case-insensitively, longest first
    batches: BatchReader | None = None  # (task, stats, batch_bytes, window) -> Batch: the scan's fast path
    splittable: bool = False  # line-based and uncompressed: a large file is split into byte ranges
    scheme: str | None = None  # sources named by a URL prefix ("hf://") instead of a file suffix
    check: Callable[[str], object] | None = None  # validates such a URL at planning time (raises TinyevalError)
