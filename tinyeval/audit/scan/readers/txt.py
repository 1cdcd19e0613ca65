"""Plain text corpora (.txt, .txt.gz, .txt.zst): documents are paragraphs, runs of non-blank lines."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tinyeval.audit.scan.readers import streams
from tinyeval.audit.scan.readers.types import Doc, Format, ShardTask, Stats

_BLANK = re.compile(rb"[ \t\r\f\v]*\n?")


def docs(task: ShardTask, stats: Stats) -> Iterator[Doc]:
    """Paragraphs of a text file, located by their first byte; a paragraph with invalid UTF-8 is skipped."""
    para: list[bytes] = []
    start = 0

    def flush() -> Iterator[Doc]:
        try:
            yield Doc(start, b"".join(para).decode("utf-8"), None)
        except UnicodeDecodeError:
            stats.skipped["invalid_utf8"] += 1

    for pos, line in streams.lines(task, stats):
        if _BLANK.fullmatch(line):
            if para:
                yield from flush()
                para = []
            continue
        if not para:
            start = pos
        para.append(line)
    if para:
        yield from flush()


FORMATS = (
    Format("txt", docs, (".txt",)),
    Format("txt.gz", docs, (".txt.gz",)),
    Format("txt.zst", docs, (".txt.zst",)),
)
