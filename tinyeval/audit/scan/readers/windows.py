"""Documents into batches; a long document as overlapping windows, so its memory is bounded by the window.

Encoding a document costs ~13x its size in temporaries (word offsets and hashes), so a 300 MB line once
took 4 GB. A document longer than `Window.chars` is scanned as windows of at most that many characters,
cut at whitespace; each window after the first starts with the last `overlap_words` word-bearing tokens of
the one before (n - 1 words for n-grams: every n-gram lies whole inside some window, so the matched
fraction is the same as in one pass). A matched run across a cut is reported as its longest piece.
Readers that stream (JSONL long lines, text paragraphs) hand in pieces (`Doc.base` > 0), joined here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tinyeval.audit.scan.readers.types import Batch, Doc, Stats, Window, record_id

_TOKEN = re.compile(r"\S+")
_WORDY = re.compile(r"[0-9A-Za-z\u0080-\U0010ffff]")  # a token the normaliser keeps at least one word of


def _cut(text: str, limit: int) -> int:
    """Where to end a window of at most `limit` characters: after the last whitespace in its last 64k."""
    for i in range(limit - 1, max(limit - (64 << 10), 0), -1):
        if text[i].isspace():
            return i + 1
    return limit


def _overlap(text: str, cut: int, words: int) -> int:
    """Start of the last `words` word-bearing tokens before `cut` (at most half a window back)."""
    floor, span = cut // 2, 4096
    while True:
        lo = max(floor, cut - span)
        tokens = [m.start() for m in _TOKEN.finditer(text, lo, cut) if _WORDY.search(m.group())]
        if len(tokens) > words or lo == floor:  # one more than needed: the first may be cut at `lo`
            return tokens[-words] if words and len(tokens) >= words else cut
        span *= 4


def windowed(docs: Iterator[Doc], window: Window | None) -> Iterator[Doc]:
    """Each document whole (`window` None: pieces joined), or as windows of at most `window.chars`."""
    pos, record, text, base = None, None, "", 0
    for doc in docs:
        if doc.base == 0:
            if pos is not None:
                yield Doc(pos, text, record, base)
            pos, record, text, base = doc.pos, doc.record, doc.text, 0
        else:
            text += doc.text
            record = doc.record if doc.record is not None else record  # ids read since the first piece
        while window is not None and len(text) > window.chars:
            cut = _cut(text, window.chars)
            yield Doc(pos, text[:cut], record, base)
            keep = _overlap(text, cut, window.overlap_words)
            text, base = text[keep:], base + keep
    if pos is not None:
        yield Doc(pos, text, record, base)


def batched(docs: Iterator[Doc], stats: Stats, batch_bytes: int, keep_records: bool,
            window: Window | None, id_field: str | None = None) -> Iterator[Batch]:
    """Documents (windows of long ones unless rows are kept) in batches of about `batch_bytes` characters,
    each with its own id (`record_id` of its row; a row already parsed costs a lookup)."""
    texts: list[str] = []
    positions: list[int] = []
    records: list[dict | None] = []
    bases: list[int] = []
    ids: list[str | None] = []
    size = 0

    def batch() -> Batch:
        return Batch(texts, positions, records if keep_records else None, bases=bases if any(bases) else None,
                     ids=ids)

    for pos, text, record, base in windowed(docs, None if keep_records else window):
        texts.append(text)
        positions.append(pos)
        bases.append(base)
        ids.append(record_id(record, id_field))
        if keep_records:
            records.append(record)
        size += len(text)
        stats.docs += base == 0
        if size >= batch_bytes:
            yield batch()
            texts, positions, records, bases, ids, size = [], [], [], [], [], 0
    if texts:
        yield batch()
