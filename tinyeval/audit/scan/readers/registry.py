"""The corpus formats: one module per format, one line each below. Planning (file suffixes, URL schemes,
byte-range splits), the scan and decontamination all look a format up here, by name or by source.

A new format is one module defining `FORMATS = (Format(name, docs, suffixes), ...)` plus its line in the
loop below (or a `register(Format(...))` call, as tests do).
"""

from __future__ import annotations

from collections.abc import Iterator

from tinyeval.audit.scan.readers import hf, jsonl, parquet, txt
from tinyeval.audit.scan.readers.types import Batch, Doc, Format, ShardTask, Stats

FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add (or replace) a format; its suffixes and scheme take part in planning from now on."""
    FORMATS[fmt.name] = fmt
    return fmt


for _module in (jsonl, txt, parquet, hf):  # one entry per reader module
    for _fmt in _module.FORMATS:
        register(_fmt)


def suffixes() -> list[str]:
    """Every file suffix some format claims, longest first (the order they are matched in)."""
    return sorted((s for f in FORMATS.values() for s in f.suffixes), key=lambda s: (-len(s), s))


def format_of(path: str) -> str | None:
    """The format claiming `path`'s name (longest suffix wins), or None."""
    name = path.lower()
    by_suffix = {s: f.name for f in FORMATS.values() for s in f.suffixes}
    return next((by_suffix[s] for s in suffixes() if name.endswith(s)), None)


def scheme_of(source: str) -> Format | None:
    """The format of a URL source (`hf://...`), or None for a file path."""
    return next((f for f in FORMATS.values() if f.scheme and source.startswith(f.scheme)), None)


def stem(source: str) -> str:
    """A source's file name without its scheme and format suffix (decontamination names its output so)."""
    fmt = scheme_of(source)
    name = (source.removeprefix(fmt.scheme) if fmt else source).rstrip("/").rsplit("/", 1)[-1]
    suffix = next((s for s in suffixes() if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)] if suffix else name


def _batched(docs: Iterator[Doc], stats: Stats, batch_bytes: int, keep_records: bool) -> Iterator[Batch]:
    texts: list[str] = []
    positions: list[int] = []
    records: list[dict | None] = []
    size = 0
    for pos, text, record in docs:
        texts.append(text)
        positions.append(pos)
        if keep_records:
            records.append(record)
        size += len(text)
        stats.docs += 1
        if size >= batch_bytes:
            yield Batch(texts, positions, records if keep_records else None)
            texts, positions, records, size = [], [], [], 0
    if texts:
        yield Batch(texts, positions, records if keep_records else None)


def read_batches(task: ShardTask, stats: Stats, batch_bytes: int = 1 << 20,
                 keep_records: bool = False) -> Iterator[Batch]:
    """Documents of one task in batches of about `batch_bytes` characters (rows kept if `keep_records`)."""
    fmt = FORMATS[task.fmt]
    if fmt.batches is not None and not keep_records:
        yield from fmt.batches(task, stats, batch_bytes)
    else:
        yield from _batched(fmt.docs(task, stats), stats, batch_bytes, keep_records)
