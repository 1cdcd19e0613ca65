"""Normalise, split into words and hash n-grams over a whole batch of documents at once, in numpy.

The hot loop of the scan. Python touches each batch a handful of times (join, NFKC, lower, encode); every
per-byte and per-word step after that is one vectorised numpy pass over the batch's UTF-8 bytes:

  bytes  --LUT-->  word-character mask  --edges-->  word (start, end) offsets
  words  --8-byte unaligned loads, masked, fmix64-->  one uint64 hash per word
  hashes --prefix sum of h[i] * P**i (mod 2**64)-->  any k-gram hash in O(1): (C[i+k] - C[i]) * P**-i

Benchmark items go through exactly these functions, so item and corpus hashes agree by construction.
Documents are joined with a NUL byte, which is never a word character, so no word spans two documents;
n-grams that do are dropped after lookup (hits are rare, so that check costs nothing).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from tinyeval.audit.config import Normalisation

U64 = np.uint64
_P = 0x9E3779B97F4A7C15  # odd, so invertible mod 2**64
_P_INV = pow(_P, -1, 1 << 64)
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=U64)  # low k bytes of a little-endian load
MAX_WORD_BYTES = 64  # longer words hash their first 64 bytes and their length
_ASY = re.compile(rb"\[asy\][^\x00]*?\[/asy\]")  # MATH Asymptote code, never past a document end (NUL)
PAD = 8  # zero bytes after the text so an 8-byte load at any word start stays in bounds


def _word_mask(b: np.ndarray, punctuation: bool, out: np.ndarray) -> None:
    """Which bytes belong to words, written into `out` (a few uint8 SIMD passes; a LUT gather is 3x slower).

    With punctuation on, words are ASCII letters and digits; without, every printable ASCII byte. UTF-8
    bytes >= 0x80 always belong to words (Latin-1 and General Punctuation are cleared in `encode`).
    """
    if punctuation:
        np.less((b | 32) - 97, 26, out=out)
        out |= (b - 48) < 10
    else:
        np.less(b - 33, 94, out=out)
    out |= b >= 128


@dataclass
class Encoded:
    """A batch of documents as normalised bytes, split into words."""

    buf: np.ndarray  # (L + PAD,) uint8: normalised UTF-8, after number normalisation's deletions
    raw: bytes  # the normalised UTF-8 before those deletions (offsets reported to users live here)
    doc_starts: np.ndarray  # (D,) int64: each document's first byte in `raw`
    starts: np.ndarray  # (W,) int64: each word's first byte in `buf`
    ends: np.ndarray  # (W,) int64: one past each word's last byte in `buf`
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
    bp = np.concatenate((b, np.zeros(4, np.uint8))).astype(np.int64)
    first = bp[lead]
    c1, c2, c3 = bp[lead + 1] & 0x3F, bp[lead + 2] & 0x3F, bp[lead + 3] & 0x3F
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


def _utf8(texts: list[str], norm: Normalisation) -> bytes:
    """Documents joined by NUL as UTF-8; the slow Unicode steps run only on documents that need them.

    NFKC and full-Unicode lowercasing cost ~30-60 MB/s in CPython, so a numpy pass over the encoded
    bytes finds the documents holding a character they would change, and only those are folded. ASCII
    letters are lowercased afterwards on the bytes (`bytes.lower`, ~GB/s).
    """
    clean = [t.replace("\x00", " ") if "\x00" in t else t for t in texts]
    raw = "\x00".join(clean).encode("utf-8", "replace")
    table = _fold_table(norm)
    if table is not None and not raw.isascii():
        b = np.frombuffer(raw, dtype=np.uint8)
        lead = np.flatnonzero(b >= 0xC0)
        hit = lead[table[_code_points(b, lead)]]
        if len(hit):
            doc_starts = np.concatenate(([0], np.flatnonzero(b == 0) + 1))
            for d in np.unique(np.searchsorted(doc_starts, hit, side="right") - 1).tolist():
                clean[d] = normalise_text(clean[d], norm).replace("\x00", " ")
            raw = "\x00".join(clean).encode("utf-8", "replace")
    return raw.lower() if norm.lowercase else raw


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated aranges [s, s + n) for each (s, n), without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return offsets + np.arange(total)


def _annotation_bytes(b: np.ndarray) -> np.ndarray:
    """Positions inside GSM8K calculator annotations `<<expr=value>>` (the brackets included)."""
    opens = np.flatnonzero((b[:-1] == 60) & (b[1:] == 60))
    closes = np.flatnonzero((b[:-1] == 62) & (b[1:] == 62))
    if not len(opens) or not len(closes):
        return np.zeros(0, dtype=np.int64)
    j = np.searchsorted(closes, opens + 2)
    ok = j < len(closes)
    opens, close = opens[ok], closes[j[ok]]
    ok = close - opens < 200  # an annotation is one short expression, never a paragraph
    opens, close = opens[ok], close[ok]
    nul = np.flatnonzero(b == 0)
    ok = np.searchsorted(nul, opens) == np.searchsorted(nul, close)  # both brackets in one document
    return _ranges(opens[ok], close[ok] + 2 - opens[ok])


def _number_drops(b: np.ndarray) -> np.ndarray:
    """Positions to delete so "1,000" reads "1000" and "5.00" reads "5" (sorted, unique)."""
    n = len(b)
    bp = np.concatenate((b, np.zeros(PAD + 2, np.uint8)))  # reads past the end see a non-digit
    digit = (bp >= 48) & (bp <= 57)
    drops = []
    c = np.flatnonzero(b == 44)
    c = c[c > 0]
    if len(c):
        ok = digit[c - 1] & digit[c + 1] & digit[c + 2] & digit[c + 3] & ~digit[c + 4]
        drops.append(c[ok])
    d = np.flatnonzero(b == 46)
    d = d[d > 0]
    d = d[digit[d - 1] & (bp[d + 1] == 48)]
    if len(d):
        run = np.ones(len(d), dtype=np.int64)  # the dot, then the zeros after it
        live = np.ones(len(d), dtype=bool)
        for _ in range(PAD):
            more = live & (bp[np.minimum(d + run, n + PAD)] == 48)
            run += more
            live = more
        ok = ~digit[np.minimum(d + run, n + PAD)]
        drops.append(_ranges(d[ok], run[ok]))
    return np.unique(np.concatenate(drops)) if drops else np.zeros(0, dtype=np.int64)


def encode(texts: list[str], norm: Normalisation) -> Encoded:
    """Normalise a batch of documents and split it into words (all documents in one buffer)."""
    raw = _utf8(texts, norm)
    b = np.frombuffer(raw, dtype=np.uint8)
    doc_starts = np.concatenate(([0], np.flatnonzero(b == 0) + 1)).astype(np.int64)
    word = np.empty(len(b) + PAD, dtype=bool)
    _word_mask(b, norm.punctuation, word[: len(b)])
    word[len(b):] = False
    if norm.punctuation and not raw.isascii():
        e2 = np.flatnonzero(b[:-2] == 0xE2)  # U+2000-206F (dashes, curly quotes, ellipsis): E2 80/81 xx
        e2 = e2[(b[e2 + 1] == 0x80) | (b[e2 + 1] == 0x81)]
        c2 = np.flatnonzero(b[:-1] == 0xC2)  # U+00A0-00BF (no-break space, «», §, °, ·, ¿): C2 A0-BF
        c2 = c2[b[c2 + 1] >= 0xA0]
        word[np.concatenate((e2, e2 + 1, e2 + 2, c2, c2 + 1))] = False
    if norm.strip_annotations and b"<<" in raw:
        word[_annotation_bytes(b)] = False
    if norm.strip_asy and b"[asy]" in raw:
        for m in _ASY.finditer(raw):
            word[m.start():m.end()] = False
    dropped = _number_drops(b) if norm.numbers else np.zeros(0, dtype=np.int64)
    if len(dropped):
        keep = np.ones(len(b) + PAD, dtype=bool)
        keep[dropped] = False
        buf, word = np.concatenate((b, np.zeros(PAD, np.uint8)))[keep], word[keep]
    else:
        buf = np.concatenate((b, np.zeros(PAD, np.uint8)))
        dropped = None
    # word[-PAD:] is False, so every word has an end; a leading False makes every word have a start
    edges = np.flatnonzero(word[1:] != word[:-1]) + 1
    if word[0]:
        edges = np.concatenate(([0], edges))
    return Encoded(buf, raw, doc_starts, edges[0::2].astype(np.int64), edges[1::2].astype(np.int64), dropped)


def _fmix(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place: every input bit flips about half the output bits."""
    x ^= x >> U64(33)
    x *= U64(0xFF51AFD7ED558CCD)
    x ^= x >> U64(33)
    x *= U64(0xC4CEB9FE1A85EC53)
    x ^= x >> U64(33)
    return x


def word_hashes(enc: Encoded) -> np.ndarray:
    """(W,) uint64: one hash per word from 8-byte unaligned loads at each word start."""
    buf, starts = enc.buf, enc.starts
    lens = enc.ends - starts
    # a stride-1 uint64 view: element i is the little-endian load of bytes i..i+7
    loads = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))
    h = loads[starts] & _MASKS[np.minimum(lens, 8)]
    long = np.flatnonzero(lens > 8)
    off = 8
    while len(long) and off < MAX_WORD_BYTES:
        part = loads[starts[long] + off] & _MASKS[np.minimum(lens[long] - off, 8)]
        h[long] = _fmix(h[long]) ^ part
        off += 8
        long = long[lens[long] > off]
    h ^= lens.astype(U64) << U64(56)
    return _fmix(h)


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
