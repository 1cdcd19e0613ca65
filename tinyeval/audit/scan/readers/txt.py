"""Plain text corpora (.txt, .txt.gz, .txt.zst): documents are paragraphs, runs of non-blank lines.

Lines are read at most `PIECE` bytes at a time and a paragraph longer than that is handed on in pieces
(`Doc.base` > 0), so a huge paragraph or a line without newlines never has to be held whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tinyeval.audit.scan.readers import streams
from tinyeval.audit.scan.readers.types import Doc, Format, ShardTask, Stats

_BLANK = re.compile(rb"[ \t\r\f\v]*\n?")
PIECE = 1 << 20


class _Paragraph:
    """The paragraph being read: its first byte, its bytes not handed on yet, and how it is going."""

    def __init__(self, start: int):
        self.start, self.parts, self.size, self.base, self.bad = start, [], 0, 0, False

    def add(self, line: bytes) -> None:
        self.parts.append(line)
        self.size += len(line)

    def pieces(self, final: bool, stats: Stats) -> Iterator[Doc]:
        """Hand on the text so far (all of it when `final`, else up to the last whole UTF-8 character)."""
        data, self.parts, self.size = b"".join(self.parts), [], 0
        if self.bad:
            stats.skipped_bytes += len(data)
            return
        try:
            text, rest = data.decode("utf-8"), b""
        except UnicodeDecodeError as e:
            if final or e.start < len(data) - 3 or e.reason != "unexpected end of data":
                self.bad = True  # a paragraph with invalid UTF-8 is skipped (from here on)
                stats.skip("invalid_utf8", len(data))
                return
            text, rest = data[: e.start].decode("utf-8"), data[e.start:]
        if text:
            yield Doc(self.start, text, None, self.base)
            self.base += len(text)
        if rest:
            self.add(rest)


def docs(task: ShardTask, stats: Stats) -> Iterator[Doc]:
    """Paragraphs of a text file, located by their first byte; a paragraph with invalid UTF-8 is skipped."""
    para: _Paragraph | None = None
    line_start = True  # the piece read next begins a line
    for pos, line in streams.lines(task, stats, PIECE):
        whole = line.endswith(b"\n") or len(line) < PIECE
        if line_start and whole and _BLANK.fullmatch(line):
            if para is not None:
                yield from para.pieces(True, stats)
                para = None
            continue
        line_start = line.endswith(b"\n")
        if para is None:
            para = _Paragraph(pos)
        para.add(line)
        if para.size > PIECE:
            yield from para.pieces(False, stats)
    if para is not None:
        yield from para.pieces(True, stats)


FORMATS = (
    Format("txt", docs, (".txt",)),
    Format("txt.gz", docs, (".txt.gz",)),
    Format("txt.zst", docs, (".txt.zst",)),
)
