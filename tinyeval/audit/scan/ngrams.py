"""Normalise documents and split them into hashed words, a whole batch at once; k-gram hashes of items.

The first half of the scan's hot path. Python touches each batch a handful of times (Unicode folding
only for the documents that need it); ASCII lowercasing is a compiled pass (`kernels.lower_padded`);
the rare byte patterns (number formats, annotations) are found with numpy passes and
`kernels.sparse_nonzero`, then compiled passes split the batch's UTF-8 bytes into words:

  bytes  --kernels.split_words: byte classes, cleared ranges, document cuts-->  words (start, end)
  words  --kernels.word_hashes: 8-byte loads, masked, mixed-->  hashes
  hashes --prefix sum of h[i] * P**i (mod 2**64)-->  any k-gram hash in O(1): (C[i+k] - C[i]) * P**-i

Benchmark items go through exactly these functions, so item and corpus hashes agree by construction;
the corpus side computes the same k-gram hashes by rolling them inside `kernels.kgram_candidates`.
Documents stored back to back are split at their boundaries, so no word or n-gram spans two documents
(n-grams that would are dropped after lookup; hits are rare, so that check costs nothing).
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import numpy as np

from tinyeval.audit.scan import kernels
from tinyeval.audit.scan.config import Normalisation

U64 = np.uint64
_P, _P_INV = kernels.P, kernels.P_INV
MAX_WORD_BYTES = 64  # longer words hash their first 64 bytes
PAD = 8  # zero bytes after the text so an 8-byte load at any word start stays in bounds


# Which bytes belong to words, as three inclusive ranges of ASCII bytes (what `kernels.split_words` tests
# 8 bytes at a time); UTF-8 bytes >= 0x80 always belong to words (Latin-1 and General Punctuation are
# cleared in the splitter). With punctuation on, words are ASCII letters and digits; without, every
# printable ASCII byte ((0x80, 0x7F) is an empty range).
_WORD_RANGES = {True: np.array([0x30, 0x39, 0x41, 0x5A, 0x61, 0x7A], dtype=np.int64),
                False: np.array([0x21, 0x7E, 0x80, 0x7F, 0x80, 0x7F], dtype=np.int64)}


@dataclass
class Encoded:
    """A batch of documents as normalised bytes, split into words."""

    buf: np.ndarray  # (L + PAD,) uint8: normalised UTF-8, after number normalisation's deletions
    raw: bytes  # the normalised UTF-8 before those deletions (offsets reported to users live here)
    doc_starts: np.ndarray  # (D,) int64: each document's first byte in `raw`
    doc_ends: np.ndarray  # (D,) int64: one past each document's last byte in `raw`
    starts: np.ndarray  # (W,) int64: each word's first byte in `buf`
    ends: np.ndarray  # (W,) int64: one past each word's last byte in `buf`
    hashes: np.ndarray  # (W,) uint64: each word's hash
    dropped: np.ndarray | None  # sorted positions in `raw` deleted by number normalisation, or None

    def to_raw(self, pos: np.ndarray) -> np.ndarray:
        """Map byte positions in `buf` back to `raw` (identity unless number normalisation deleted bytes)."""
        if self.dropped is None:
            return pos
        shifted = self.dropped - np.arange(len(self.dropped))
        return pos + np.searchsorted(shifted, pos, side="right")

    def words(self) -> list[str]:
        data = self.buf.tobytes()
        return [data[s:e].decode("utf-8", "replace") for s, e in zip(self.starts.tolist(), self.ends.tolist())]


@functools.lru_cache(maxsize=8)
def _fold_table(norm: Normalisation) -> np.ndarray | None:
    """(0x110000,) bool: the non-ASCII code points that NFKC or lowercasing would change.

    No-break space and General Punctuation separate words at the byte level anyway (when punctuation
    is on), so they are left out: documents holding only those skip the slow per-character Unicode path.
    Built once per process from the BMP and the mathematical alphanumerics (~50 ms).
    """
    if not (norm.nfkc or norm.lowercase):
        return None
    table = np.zeros(0x110000, dtype=bool)
    byte_level = set(range(0x2000, 0x2070)) | {0xA0} if norm.punctuation else set()
    for cp in (*range(0x80, 0xD800), *range(0xE000, 0x10000), *range(0x1D400, 0x1D800)):
        if cp in byte_level:
            continue
        c = chr(cp)
        table[cp] = ((norm.nfkc and (unicodedata.combining(c) > 0 or unicodedata.normalize("NFKC", c) != c))
                     or (norm.lowercase and c.lower() != c))
    return table


def _code_points(b: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """Code points of the UTF-8 sequences starting at byte positions `lead` (all >= 0xC0)."""
    last = len(b) - 1
    first = b[lead].astype(np.int64)
    c1, c2, c3 = (b[np.minimum(lead + i, last)].astype(np.int64) & 0x3F for i in (1, 2, 3))
    two = ((first & 0x1F) << 6) | c1
    three = ((first & 0x0F) << 12) | (c1 << 6) | c2
    four = ((first & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3
    cp = np.where(first < 0xE0, two, np.where(first < 0xF0, three, four))
    return np.minimum(cp, 0x10FFFF)


def normalise_text(text: str, norm: Normalisation) -> str:
    """The per-character Unicode steps (NFKC, then lowercase) for one document that needs them."""
    if norm.nfkc:
        text = unicodedata.normalize("NFKC", text)
    return text.lower() if norm.lowercase else text


def _fold(raw: bytes, starts: np.ndarray, ends: np.ndarray, norm: Normalisation
          ) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Run the slow Unicode steps only on documents that need them (ASCII lowercasing comes after).

    NFKC and full-Unicode lowercasing cost ~30-60 MB/s in CPython, so a numpy pass over the UTF-8 bytes
    finds the documents holding a character they would change, and only those are decoded, folded and
    spliced back. ASCII letters are lowercased later, on the bytes (`kernels.lower_padded`).
    """
    table = _fold_table(norm)
    if table is not None and not raw.isascii():
        b = np.frombuffer(raw, dtype=np.uint8)
        lead = kernels.sparse_nonzero(b >= 0xC0)
        hit = lead[table[_code_points(b, lead)]]
        if len(hit):
            docs = np.unique(np.searchsorted(starts, hit, side="right") - 1).tolist()
            pieces, prev, shift = [], 0, np.zeros(len(starts) + 1, dtype=np.int64)
            for d in docs:
                s, e = int(starts[d]), int(ends[d])
                folded = normalise_text(raw[s:e].decode("utf-8", "replace"), norm).encode("utf-8", "replace")
                pieces += [raw[prev:s], folded]
                prev = e
                shift[d + 1] += len(folded) - (e - s)
            raw = b"".join([*pieces, raw[prev:]])
            moved = np.cumsum(shift)
            starts, ends = starts + moved[:-1], ends + moved[1:]
    return raw, starts, ends


def encode(texts: list[str], norm: Normalisation) -> Encoded:
    """Normalise a batch of documents given as strings (joined with NUL) and split it into words."""
    clean = [t.replace("\x00", " ") if "\x00" in t else t for t in texts]
    joined = "\x00".join(clean)
    raw = joined.encode("utf-8", "replace")
    if len(raw) == len(joined):  # ASCII: character lengths are byte lengths
        lengths = np.fromiter(map(len, clean), dtype=np.int64, count=len(clean))
    else:
        lengths = np.diff(np.concatenate(([-1], np.flatnonzero(np.frombuffer(raw, np.uint8) == 0), [len(raw)]))) - 1
    ends = np.cumsum(lengths + 1) - 1
    return encode_utf8(raw, ends - lengths, ends, norm)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges [s, s + n) for each (s, n), without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return offsets + np.arange(total)


def _isdigit(x: np.ndarray) -> np.ndarray:
    return (x - 48) < 10  # uint8 wraps below "0"


def _annotation_bytes(p: np.ndarray, n: int, doc_starts: np.ndarray) -> np.ndarray:
    """Positions inside GSM8K calculator annotations `<<expr=value>>` (the brackets included)."""
    angle = (p[: n + 1] | 2) == 62  # "<" (60) or ">" (62)
    pairs = kernels.sparse_nonzero(angle[:-1] & angle[1:])  # "<<", ">>" (and the rare "<>", "><")
    opens = pairs[(p[pairs] == 60) & (p[pairs + 1] == 60)]
    closes = pairs[(p[pairs] == 62) & (p[pairs + 1] == 62)]
    if not len(opens) or not len(closes):
        return np.zeros(0, dtype=np.int64)
    j = np.searchsorted(closes, opens + 2)
    ok = j < len(closes)
    opens, close = opens[ok], closes[j[ok]]
    ok = close - opens < 200  # an annotation is one short expression, never a paragraph
    opens, close = opens[ok], close[ok]
    ok = np.searchsorted(doc_starts, opens, "right") == np.searchsorted(doc_starts, close, "right")  # same doc
    return _ranges(opens[ok], close[ok] + 2 - opens[ok])


def _number_drops(p: np.ndarray, n: int) -> np.ndarray:
    """Positions to delete so "1,000" reads "1000" and "5.00" reads "5" (sorted, unique).

    `p` is the text padded with NUL bytes, so looking a few bytes past the end reads a non-digit.
    """
    drops = []
    # "," (44) or "." (46) between two digits: commas and dots are ~2% of the bytes, so the digit test
    # runs on them only, not as two more passes over the batch
    marks = kernels.sparse_nonzero((p[1:n] | 2) == 46) + 1
    marks = marks[_isdigit(p[marks - 1]) & _isdigit(p[marks + 1])]
    c = marks[p[marks] == 44]
    if len(c):
        ok = (_isdigit(p[c - 1]) & _isdigit(p[c + 1]) & _isdigit(p[c + 2]) & _isdigit(p[c + 3])
              & ~_isdigit(p[c + 4]))
        drops.append(c[ok])
    d = marks[p[marks] == 46]
    d = d[p[d + 1] == 48]
    if len(d):
        last = len(p) - 1
        run = np.ones(len(d), dtype=np.int64)  # the dot, then the zeros after it
        live = np.ones(len(d), dtype=bool)
        for _ in range(PAD - 2):
            more = live & (p[np.minimum(d + run, last)] == 48)
            run += more
            live = more
        ok = ~_isdigit(p[np.minimum(d + run, last)])
        drops.append(_ranges(d[ok], run[ok]))
    return np.unique(np.concatenate(drops)) if drops else np.zeros(0, dtype=np.int64)


def _delete(raw: bytes, dropped: np.ndarray) -> bytes:
    """`raw` without the bytes at the sorted positions `dropped` (runs are few: one slice join)."""
    brk = np.flatnonzero(np.diff(dropped) != 1) + 1
    run_start = dropped[np.concatenate(([0], brk))].tolist()
    run_end = (dropped[np.concatenate((brk - 1, [len(dropped) - 1]))] + 1).tolist()
    keep_from = [0, *run_end]
    return b"".join(raw[a:b] for a, b in zip(keep_from, [*run_start, len(raw)]))


def _asy_blocks(buf: bytes, doc_starts: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of MATH's Asymptote code blocks `[asy]...[/asy]`, each inside one document."""
    out, at = [], buf.find(b"[asy]")
    while at >= 0:
        close = buf.find(b"[/asy]", at)
        if close < 0:
            break
        if np.searchsorted(doc_starts, at, "right") == np.searchsorted(doc_starts, close, "right"):
            out.append((at, close + 6))
            at = buf.find(b"[asy]", close)
        else:
            at = buf.find(b"[asy]", at + 5)
    return out


def encode_utf8(raw: bytes, doc_starts: np.ndarray, doc_ends: np.ndarray, norm: Normalisation) -> Encoded:
    """Normalise documents stored in one UTF-8 buffer (`raw[doc_starts[d]:doc_ends[d]]`); split into words.

    This is the scan's entry point for Arrow string columns, whose data buffer already is such a buffer:
    no Python string is made for a document unless it needs Unicode folding or holds a hit.
    """
    raw, doc_starts, doc_ends = _fold(raw, doc_starts.astype(np.int64), doc_ends.astype(np.int64), norm)
    n = len(raw)
    padded = kernels.lower_padded(raw, norm.lowercase, PAD)  # NUL padding: loads past the end stay in bounds
    raw = padded[:n].tobytes()
    dropped = None
    if norm.numbers and (b"," in raw or b"." in raw):
        drops = _number_drops(padded, n)
        dropped = drops if len(drops) else None
    buf = raw if dropped is None else _delete(raw, dropped)
    m = len(buf)
    p = padded if dropped is None else np.frombuffer(buf + bytes(PAD), dtype=np.uint8)
    starts_buf = doc_starts if dropped is None else doc_starts - np.searchsorted(dropped, doc_starts)
    cleared = []
    if norm.strip_annotations and b"<<" in buf:
        cleared.append(_annotation_bytes(p, m, starts_buf))
    if norm.strip_asy and b"[asy]" in buf:
        cleared += [np.arange(a, b) for a, b in _asy_blocks(buf, starts_buf)]
    clear = np.unique(np.concatenate(cleared)) if cleared else np.zeros(0, dtype=np.int64)
    starts, ends = kernels.split_words(p, m, _WORD_RANGES[norm.punctuation], norm.punctuation and not buf.isascii(),
                                       clear.astype(np.int64, copy=False), starts_buf[1:])
    return Encoded(p, raw, doc_starts, doc_ends, starts, ends, _word_hashes(p, starts, ends), dropped)


def _word_hashes(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(W,) uint64: one hash per word (`kernels.word_hashes` over a stride-1 uint64 view of the bytes)."""
    loads = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
    return kernels.word_hashes(loads, starts, ends, MAX_WORD_BYTES)


def word_hashes(enc: Encoded) -> np.ndarray:
    """(W,) uint64: one hash per word."""
    return enc.hashes


_POW_CACHE: dict[str, np.ndarray] = {}


def _powers(m: int) -> tuple[np.ndarray, np.ndarray]:
    """P**i and P**-i mod 2**64 for i < m, cached and grown by doubling."""
    pw = _POW_CACHE.get("pow")
    if pw is None or len(pw) < m:
        size = max(m, 2 * len(pw) if pw is not None else 1 << 16)
        for key, base in (("pow", _P), ("inv", _P_INV)):
            arr = np.full(size, base, dtype=U64)
            arr[0] = 1
            _POW_CACHE[key] = np.cumprod(arr, dtype=U64)
    return _POW_CACHE["pow"][:m], _POW_CACHE["inv"][:m]


def prefix(wh: np.ndarray) -> np.ndarray:
    """(W + 1,) uint64 prefix sums C[j] = sum_{i<j} h[i] * P**i, the basis of every k-gram hash."""
    pw, _ = _powers(len(wh))
    c = np.empty(len(wh) + 1, dtype=U64)
    c[0] = 0
    np.cumsum(wh * pw, out=c[1:])
    return c


def kgrams(c: np.ndarray, k: int) -> np.ndarray:
    """(W - k + 1,) uint64: the hash of words i..i+k-1 is (C[i+k] - C[i]) * P**-i."""
    m = len(c) - k
    if m <= 0:
        return np.zeros(0, dtype=U64)
    _, inv = _powers(m)
    return (c[k:] - c[:-k]) * inv


def words_of(text: str, norm: Normalisation) -> list[str]:
    """The normalised words of one text (what the scan sees); used for fuzzy confirmation and tests."""
    return encode([text], norm).words()
