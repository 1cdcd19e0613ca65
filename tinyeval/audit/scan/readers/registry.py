"""The corpus formats: one module per format, one line each below. Planning (file suffixes, URL schemes,
byte-range splits), the scan and decontamination all look a format up here, by name or by source.

A new format is one module defining `FORMATS = (Format(name, docs, suffixes), ...)` plus its line in the
loop below (or a `register(Format(...))` call, as tests do).
"""

from __future__ import annotations

from collections.abc import Iterator

from tinyeval.audit.scan.readers import hf, jsonl, parquet, skipped, txt
from tinyeval.audit.scan.readers.types import Batch, Format, ShardTask, Stats, Window
from tinyeval.audit.scan.readers.windows import batched

FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add (or replace) a format; its suffixes and scheme take part in planning from now on."""
    FORMATS[fmt.name] = fmt
    return fmt


for _module in (jsonl, txt, parquet, hf, skipped):  # one entry per reader module
    for _fmt in _module.FORMATS:
        register(_fmt)


def suffixes() -> list[str]:
    """Every file suffix some format claims, in the order the formats were registered."""
    return [s for f in FORMATS.values() for s in f.suffixes]


def _longest_first() -> list[str]:
    return sorted(suffixes(), key=len, reverse=True)


def format_of(path: str) -> str | None:
    """The format claiming `path`'s name (longest suffix wins), or None."""
    name = path.lower()
    by_suffix = {s: f.name for f in FORMATS.values() for s in f.suffixes}
    return next((by_suffix[s] for s in _longest_first() if name.endswith(s)), None)


def scheme_of(source: str) -> Format | None:
    """The format of a URL source (`hf://...`), or None for a file path."""
    return next((f for f in FORMATS.values() if f.scheme and source.startswith(f.scheme)), None)


def stem(source: str) -> str:
    """A source's file name without its scheme and format suffix (decontamination names its output so)."""
    fmt = scheme_of(source)
    name = (source.removeprefix(fmt.scheme) if fmt else source).rstrip("/").rsplit("/", 1)[-1]
    suffix = next((s for s in _longest_first() if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)] if suffix else name


SCAN_WINDOW = Window()


def read_batches(task: ShardTask, stats: Stats, batch_bytes: int = 1 << 20, keep_records: bool = False,
                 window: Window | None = SCAN_WINDOW) -> Iterator[Batch]:
    """Documents of one task in batches of about `batch_bytes` characters. The scan reads a long document
    in overlapping windows (`window`); with `keep_records` (decontamination) every document comes whole."""
    fmt = FORMATS[task.fmt]
    if fmt.batches is not None and not keep_records:
        yield from fmt.batches(task, stats, batch_bytes, window or Window(chars=1 << 62))
    else:
        yield from batched(fmt.docs(task, stats), stats, batch_bytes, keep_records, window, task.id_field)
