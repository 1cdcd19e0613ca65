"""One JSONL line too long to hold (a `streams.LongLine`), streamed: the object is parsed as its chunks
arrive, and the text field's string is decoded and handed on in pieces (`Doc.base` > 0 after the first),
so memory stays at a chunk or two whatever the line's length.

It decides what `json.loads` would about the line: invalid UTF-8 anywhere -> `invalid_utf8`, not an object
or bad JSON -> `malformed_json`, no text field or a non-string one -> `missing_text`; each counted with the
line's bytes as skipped. Text is held back until the line ends or `hold` characters have come; past that,
inherent to streaming, damage found after text was handed on does not take that text back (the line is
counted as skipped *and* its text before the damage scanned).
A repeated text key is scanned as one document of both values (`json.loads` keeps the last).
The document's own id (a top-level string or scalar, `types.record_id`) is kept as the line is parsed; text
handed on before the id was read (an id after more than `hold` characters of text) goes without it.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator

from tinyeval.audit.scan.readers.streams import LongLine
from tinyeval.audit.scan.readers.types import ID_FIELDS, Doc, Stats

_WS = re.compile(rb"[ \t\r\n]*")
_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)  # up to the closing quote or a last lone "\"
_SCALAR = re.compile(rb"[^,}\]\s]*")
_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}$")
MAX_TOKEN = 1 << 20  # a number this long is not JSON anyone writes: malformed
MAX_DEPTH = 512
MAX_ID = 4096  # characters of an id kept (a longer one is cut: ids are names, not documents)


class Malformed(ValueError):
    """The line is not what the scan reads; `kind` is the skip kind it is counted as."""

    def __init__(self, kind: str = "malformed_json"):
        super().__init__(kind)
        self.kind = kind


class _Buffer:
    """The line's bytes as a cursor over its chunks: `buf[i:]` is what has not been consumed yet."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.buf, self.i = chunks, b"", 0

    def more(self) -> bool:
        chunk = next(self.chunks, b"")
        if chunk:
            self.buf, self.i = self.buf[self.i:] + chunk, 0
        return bool(chunk)

    def peek(self) -> bytes:
        """The next non-whitespace byte (whitespace before it consumed), or b"" at the end of the line."""
        while True:
            self.i = _WS.match(self.buf, self.i).end()
            if self.i < len(self.buf) or not self.more():
                return self.buf[self.i:self.i + 1]

    def expect(self, byte: bytes) -> None:
        if self.peek() != byte:
            raise Malformed()
        self.i += 1

    def string(self) -> Iterator[bytes]:
        """The raw (still escaped) contents of the string at the cursor, in pieces; consumes its quotes."""
        self.expect(b'"')
        while True:
            end = _STRING_BODY.match(self.buf, self.i).end()
            piece = self.buf[self.i:end]
            self.i = end
            if self.buf[end:end + 1] == b'"':
                self.i += 1
                yield piece
                return
            if piece:
                yield piece
            if not self.more():  # the line ended inside the string
                raise Malformed()

    def scalar(self) -> bytes:
        """A number, true, false or null at the cursor (bounded)."""
        while _SCALAR.match(self.buf, self.i).end() == len(self.buf) and self.more():
            if len(self.buf) - self.i > MAX_TOKEN:
                raise Malformed()
        end = _SCALAR.match(self.buf, self.i).end()
        out, self.i = self.buf[self.i:end], end
        return out


def _decode(raw: bytes) -> str:
    try:
        return json.loads(b'"' + raw + b'"')
    except UnicodeDecodeError:
        raise Malformed("invalid_utf8") from None
    except ValueError:
        raise Malformed() from None


def _text(buf: _Buffer) -> Iterator[str]:
    """The string at the cursor, decoded, in pieces cut where no escape or UTF-8 character is split."""
    pending = b""
    for piece in buf.string():
        pending += piece
        for back in range(13):  # the longest unit is a surrogate pair "\\uD83D\\uDE00": 12 bytes
            head = pending[: len(pending) - back]
            if not head or _HIGH_SURROGATE.search(head[-6:]):
                continue
            try:
                text = json.loads(b'"' + head + b'"')
            except ValueError:  # a cut unit, or damage: decided once more has arrived
                continue
            yield text
            pending = pending[len(head):]
            break
        else:
            if len(pending) > 64:  # no cut decodes, though a whole unit fits: damage
                _decode(pending)
                raise Malformed()
    if pending:
        yield _decode(pending)


def _value(buf: _Buffer, depth: int = 0) -> None:
    """Consume and check one value that is not the text: a string, object, array or scalar."""
    first = buf.peek()
    if depth > MAX_DEPTH:
        raise Malformed()
    if first == b'"':
        for _ in _text(buf):
            pass
    elif first in (b"{", b"["):
        close = b"}" if first == b"{" else b"]"
        buf.i += 1
        if buf.peek() == close:
            buf.i += 1
            return
        while True:
            if close == b"}":
                for _ in _text(buf):  # the key
                    pass
                buf.expect(b":")
            _value(buf, depth + 1)
            if buf.peek() != b",":
                break
            buf.i += 1
        buf.expect(close)
    else:
        try:
            json.loads(buf.scalar())
        except ValueError:
            raise Malformed() from None


def _id_value(buf: _Buffer) -> object:
    """A string (its first MAX_ID characters) or scalar at the cursor, consumed; other values are skipped."""
    first = buf.peek()
    if first == b'"':
        pieces, size = [], 0
        for piece in _text(buf):
            if size < MAX_ID:
                pieces.append(piece)
                size += len(piece)
        return "".join(pieces)[:MAX_ID]
    if first in (b"{", b"["):
        _value(buf)
        return None
    try:
        return json.loads(buf.scalar())
    except ValueError:
        raise Malformed() from None


def _fields(buf: _Buffer, text_field: str, ids: dict | None = None) -> Iterator[str]:
    """Text pieces of the line's object; raises Malformed when it is not an object with a string text. The
    values of the keys in `ids` (the id fields) are put there as they are read."""
    buf.expect(b"{")
    found = False
    if buf.peek() != b"}":
        while True:
            key = "".join(_text(buf))
            buf.expect(b":")
            if ids is not None and key in ids and key != text_field:
                ids[key] = _id_value(buf)
            elif key != text_field:
                _value(buf)
            elif buf.peek() == b'"':
                found = True
                yield from _text(buf)
            else:
                _value(buf)
                raise Malformed("missing_text")
            if buf.peek() != b",":
                break
            buf.i += 1
    buf.expect(b"}")
    if buf.peek():
        raise Malformed()
    if not found:
        raise Malformed("missing_text")


def _utf8_checked(line: LongLine, bad: list[bool]) -> Iterator[bytes]:
    """The line's chunks; `bad[0]` turns True once they are not UTF-8 (`json.loads` checks that first)."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")
    for chunk in line:
        if not bad[0]:
            try:
                decoder.decode(chunk, final=chunk.endswith(b"\n"))
            except UnicodeDecodeError:
                bad[0] = True
        yield chunk


def docs(pos: int, line: LongLine, text_field: str, stats: Stats, hold: int = 4 << 20,
         id_field: str | None = None) -> Iterator[Doc]:
    """The line's document in pieces (the first with base 0), or nothing, the line counted as skipped.

    Up to `hold` characters are held back until the line has been read to its end, so a line shorter than
    that is decided exactly as `json.loads` would decide it before any of its text is scanned. Each piece
    carries the id fields read so far as its row (`record_id` picks the id from them)."""
    bad = [False]
    chunks = _utf8_checked(line, bad)
    buf, held, size, base = _Buffer(chunks), [], 0, 0
    ids: dict = dict.fromkeys((id_field,) if id_field else ID_FIELDS)
    try:
        if not buf.peek():  # a blank line, as long as it is
            return
        for text in _fields(buf, text_field, ids):
            held.append(text)
            size += len(text)
            if size > hold:
                for piece in held:
                    yield Doc(pos, piece, dict(ids), base)
                    base += len(piece)
                held, size = [], 0
    except Malformed as e:
        for _ in chunks:  # the rest of the line: skipped with it
            pass
        stats.skip("invalid_utf8" if bad[0] else e.kind, line.length)
        return
    if base == 0:
        yield Doc(pos, "".join(held), ids, 0)  # the whole text (an empty text is a document too)
    else:
        for piece in held:
            yield Doc(pos, piece, ids, base)
            base += len(piece)
