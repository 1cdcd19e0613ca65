"""The scan's compiled loops (numba): the word splitter (one bit per byte, then word edges), word hashes
from 8-byte loads, and the rolling k-gram hash fused with the index's bit-table test.

In numpy these are a dozen gathers, masks and passes over the words, each with an 8-byte temporary
(~5 ms/MB here); these loops touch each word once (~1 ms/MB).
It computes exactly the hash that `ngrams.kgrams` defines for the index's items, sum_j h[i+j] * P**j
mod 2**64, rolled as g[i+1] = (g[i] - h[i]) * P**-1 + h[i+k] * P**(k-1) (a test checks both agree).
Compiled once per machine and cached beside this file (`cache=True`); the first call costs a few seconds.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types, uint64
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

P = 0x9E3779B97F4A7C15  # odd, so invertible mod 2**64
P_INV = pow(P, -1, 1 << 64)


@njit(cache=True, inline="always")
def _fmix(x):
    """MurmurHash3's 64-bit finaliser: chains the 8-byte loads of a long word."""
    x ^= x >> uint64(33)
    x *= uint64(0xFF51AFD7ED558CCD)
    x ^= x >> uint64(33)
    x *= uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> uint64(33)
    return x


@njit(cache=True)
def word_hashes(loads, starts, ends, max_bytes):
    """(W,) uint64: each word's hash from 8-byte little-endian loads of its bytes.

    loads: a stride-1 uint64 view of the padded text (element i = bytes i..i+7). A word of <= 8 bytes is
    its load masked to its length (words hold no NUL byte, so that is unambiguous); a longer one chains
    its first `max_bytes` bytes through fmix64. Then multiply, xor-shift, multiply (a bijection).
    """
    out = np.empty(len(starts), np.uint64)
    for w in range(len(starts)):
        s = starts[w]
        n = min(ends[w] - s, max_bytes)
        h = loads[s] if n >= 8 else loads[s] & ((uint64(1) << uint64(8 * n)) - uint64(1))
        off = 8
        while off < n:
            rest = n - off
            part = loads[s + off] if rest >= 8 else loads[s + off] & ((uint64(1) << uint64(8 * rest)) - uint64(1))
            h = _fmix(h) ^ part
            off += 8
        h *= uint64(0x9E3779B97F4A7C15)
        h ^= h >> uint64(29)
        h *= uint64(0xBF58476D1CE4E5B9)
        out[w] = h
    return out


@njit(cache=True)
def kgram_candidates(wh, k, bits, shift, pow_k1):
    """(positions, hashes) of the k-grams whose top `64 - shift` hash bits are set in the bitset `bits`.

    bits: (2**(64 - shift) / 64,) uint64, bit t of word t >> 6 set when some indexed hash has top bits t
    (one bit per slot, not one byte, keeps the table in L2: every word tests a random slot).
    pow_k1 = P**(k-1) mod 2**64. Only ~1-3% of positions pass the bit table; the caller checks them exactly.
    """
    n = max(len(wh) - k + 1, 0)
    pos = np.empty(n, np.int64)  # sized for the worst case: growing inside the loop slows it ~5x
    val = np.empty(n, np.uint64)
    count = 0
    if n == 0:
        return pos, val
    p = uint64(P)
    p_inv = uint64(P_INV)
    pk = uint64(pow_k1)
    sh = uint64(shift)
    g = uint64(0)
    w = uint64(1)
    for j in range(k):
        g += wh[j] * w
        w *= p
    for i in range(n):
        t = g >> sh
        if (bits[t >> uint64(6)] >> (t & uint64(63))) & uint64(1):
            pos[count] = i
            val[count] = g
            count += 1
        if i + 1 < n:
            g = (g - wh[i]) * p_inv + wh[i + k] * pk
    return pos[:count], val[:count]


def sparse_nonzero(mask: np.ndarray) -> np.ndarray:
    """np.flatnonzero of a 1-D bool mask that is mostly False (newlines, lead bytes, "<<"), ~5x faster.

    np.flatnonzero costs ~1 ns per byte whatever the density; `_sparse_nonzero` reads the mask 8 bytes
    at a time and looks inside only the loads holding a True (~0.15 ns per byte).
    """
    return _sparse_nonzero(np.ascontiguousarray(mask), np.count_nonzero(mask))


@njit(cache=True)
def _sparse_nonzero(mask, count):
    """(count,) int64: positions of the `count` True bytes of `mask`."""
    out = np.empty(count, np.int64)
    n8 = len(mask) // 8
    words = mask[:n8 * 8].view(np.uint64)
    c = 0
    for j in range(n8):
        if words[j]:
            for i in range(8 * j, 8 * j + 8):
                if mask[i]:
                    out[c] = i
                    c += 1
    for i in range(8 * n8, len(mask)):
        if mask[i]:
            out[c] = i
            c += 1
    return out



@njit(cache=True)
def exact_rows(pos, val, hashes, bucket, dshift):
    """(positions, rows) of the candidates whose hash is in the sorted `hashes`: its index row.

    bucket[t]:bucket[t + 1] are the rows whose hash has top bits t (t = hash >> dshift, ~1 row per
    bucket): one or two loads per candidate where a binary search over all hashes missed the cache
    at every step.
    """
    out_pos = np.empty(len(pos), np.int64)
    out_row = np.empty(len(pos), np.int64)
    c = 0
    for j in range(len(pos)):
        g = val[j]
        t = g >> dshift
        for r in range(bucket[t], bucket[t + 1]):
            if hashes[r] == g:
                out_pos[c] = pos[j]
                out_row[c] = r
                c += 1
                break
    return out_pos[:c], out_row[:c]


_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_HIGH = np.uint64(0x8080808080808080)
_ONES = np.uint64(0x0101010101010101)


def lower_padded(raw: bytes, lowercase: bool, pad: int) -> np.ndarray:
    """(len(raw) + pad,) uint8: `raw` with ASCII A-Z lowercased when asked (what `bytes.lower` does),
    then `pad` NUL bytes.

    bytes.lower is a per-byte table loop (~1.4 cycles per byte); this is SWAR over 8-byte loads,
    vectorised (~0.1), and writes the padded array the splitter needs in the same pass (no
    `raw + bytes(pad)` copy).
    """
    return _lower_padded(np.frombuffer(raw, np.uint8), lowercase, pad)


@njit(cache=True)
def _lower_padded(src, lowercase, pad):
    """See `lower_padded`: an upper-case byte (0x41-0x5A, high bit clear) gains 0x20."""
    n = len(src)
    out = np.empty(n + pad, np.uint8)
    n8 = n // 8
    words = src[:n8 * 8].view(np.uint64)
    dest = out[:n8 * 8].view(np.uint64)
    ge_a = _ONES * uint64(0x80 - 0x41)
    gt_z = _ONES * uint64(0x7F - 0x5A)
    flip = uint64(0x20) if lowercase else uint64(0)
    for g in range(n8):
        x = words[g]
        x7 = x & _LOW7
        upper = (x7 + ge_a) & ~(x7 + gt_z) & ~x & _HIGH
        dest[g] = x | ((upper >> uint64(2)) & (_ONES * flip))
    for i in range(n8 * 8, n):
        c = src[i]
        out[i] = c | 0x20 if lowercase and 0x41 <= c <= 0x5A else c
    out[n:] = 0
    return out


@intrinsic
def _popcount(typingctx, x):
    """Set bits of a uint64 (LLVM ctpop: one instruction)."""
    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return types.uint64(types.uint64), codegen


def split_words(p: np.ndarray, m: int, word_ranges: np.ndarray, punctuation: bool, clear: np.ndarray,
                cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the words of p[:m]: runs of word bytes, none across a position in `cuts`.

    Word bytes are the bytes >= 0x80 and those in the three inclusive ranges `word_ranges`
    (lo0, hi0, lo1, hi1, lo2, hi2; an unused range is (0x80, 0x7F)). With `punctuation`, U+2000-206F
    (E2 80/81 xx) and U+00A0-00BF (C2 A0-BF) separate words; the sorted positions `clear` (annotations,
    [asy] blocks) are no word bytes; `cuts` (sorted document starts) end any word running into them.
    p must hold 8 NUL bytes past m (the padding). Three compiled passes: one bit per byte (SWAR over
    8-byte loads, vectorised), the rare clearings, then word edges from the bits (~1.3 cycles per byte
    in all, where a per-byte loop with cursors took ~7).
    """
    n8 = (m + 8) // 8  # 8-byte groups up to and including byte m (a NUL, so a word at the end ends)
    groups = p[:n8 * 8].view(np.uint64)
    bits = _word_bits(groups, word_ranges)
    if punctuation:
        _clear_punctuation(p, groups, bits, m)
    _clear_bytes(bits, clear)
    return _word_edges(bits.view(np.uint64), cuts)


@njit(cache=True)
def _word_bits(groups, word_ranges):
    """(8 * ceil(G / 8),) uint8: bit j of byte g says whether byte 8g + j is a word byte; zero-padded.

    Each range test is SWAR on the 7 low bits of 8 bytes at once: x7 + (0x80 - lo) sets a byte's high
    bit iff that byte >= lo, with no carry between bytes; the 8 high bits are gathered by one multiply.
    The loop has no branch, so LLVM vectorises it (~0.25 cycles per byte).
    """
    out = np.zeros((len(groups) + 7) // 8 * 8, np.uint8)
    r = np.empty(6, np.uint64)
    for j in range(3):
        r[2 * j] = _ONES * np.uint64(0x80 - word_ranges[2 * j])
        r[2 * j + 1] = _ONES * np.uint64(0x7F - word_ranges[2 * j + 1])
    ge0, gt0, ge1, gt1, ge2, gt2 = r[0], r[1], r[2], r[3], r[4], r[5]
    for g in range(len(groups)):
        x = groups[g]
        x7 = x & _LOW7
        word = x | ((x7 + ge0) & ~(x7 + gt0)) | ((x7 + ge1) & ~(x7 + gt1)) | ((x7 + ge2) & ~(x7 + gt2))
        out[g] = np.uint8(((word & _HIGH) * uint64(0x0002040810204081)) >> uint64(56))
    return out


@njit(cache=True)
def _clear_punctuation(p, groups, bits, m):
    """Clear the bits of General Punctuation (E2 80/81 xx) and U+00A0-00BF (C2 A0-BF) characters.

    Looks inside only the 512-byte blocks holding a non-ASCII byte (an OR-reduction, vectorised), then
    the 8-byte groups holding an E2 or C2 byte (SWAR zero-byte test): most text has neither.
    """
    for b0 in range(0, len(groups), 64):
        b1 = min(b0 + 64, len(groups))
        acc = uint64(0)
        for g in range(b0, b1):
            acc |= groups[g]
        if not acc & _HIGH:
            continue
        for g in range(b0, b1):
            x = groups[g]
            e2 = x ^ uint64(0xE2E2E2E2E2E2E2E2)
            c2 = x ^ uint64(0xC2C2C2C2C2C2C2C2)
            if not (((e2 - _ONES) & ~e2) | ((c2 - _ONES) & ~c2)) & _HIGH:
                continue
            for i in range(8 * g, min(8 * g + 8, m)):
                c = p[i]
                if c == 0xE2 and (p[i + 1] == 0x80 or p[i + 1] == 0x81):
                    n = 3
                elif c == 0xC2 and p[i + 1] >= 0xA0:
                    n = 2
                else:
                    continue
                for j in range(i, min(i + n, m)):
                    bits[j >> 3] &= np.uint8(0xFF ^ (1 << (j & 7)))


@njit(cache=True)
def _clear_bytes(bits, positions):
    """Clear the bits of the given byte positions."""
    for j in positions:
        bits[j >> 3] &= np.uint8(0xFF ^ (1 << (j & 7)))


@njit(cache=True)
def _word_edges(bits, cuts):
    """(starts, ends) of the runs of set bits in `bits` (uint64, bit i = byte i), split at `cuts`.

    Per 64 bytes: start bits = x & ~(x << 1), end bits = (x << 1) & ~x (carrying bit 63 over), a cut
    forcing both where a run crosses it; positions come out by count-trailing-zeros. The first 8 of each
    kind are written unconditionally (a word loop would mispredict its exit every 64 bytes) and the
    cursor advances by the popcount; the output is sized from a first popcount pass (+ one per cut),
    not for the worst case, so its pages are touched only where used.
    """
    count = 0
    carry = uint64(0)
    for w in range(len(bits)):
        x = bits[w]
        count += _popcount(x & ~((x << uint64(1)) | carry))
        carry = x >> uint64(63)
    size = count + len(cuts) + 64  # slack for the unconditional writes past the last edge
    starts = np.empty(size, np.int64)
    ends = np.empty(size, np.int64)
    cs = 0
    ce = 0
    ki = 0
    far = len(bits) * 64
    next_cut = cuts[0] if len(cuts) else far
    carry = uint64(0)
    for w in range(len(bits)):
        base = w * 64
        x = bits[w]
        prev = (x << uint64(1)) | carry
        carry = x >> uint64(63)
        cut = uint64(0)
        while next_cut < base + 64:  # ~1 document start per 700 bytes here: rarely taken
            cut |= uint64(1) << uint64(next_cut - base)
            ki += 1
            next_cut = cuts[ki] if ki < len(cuts) else far
        s = x & (~prev | cut)
        e = prev & (~x | cut)
        ns = np.int64(_popcount(s))
        ne = np.int64(_popcount(e))
        cs = _emit(starts, cs, s, ns, base)
        ce = _emit(ends, ce, e, ne, base)
    return starts[:cs], ends[:ce]


@njit(cache=True, inline="always")
def _emit(out, c, bits, n, base):
    """Write base + the positions of the n set bits of `bits` to out[c:], return c + n.

    Eight writes happen whatever n is (cttz of 0 is 64; later writes overwrite the extras), so the
    common case (< 9 edges per 64 bytes) takes no data-dependent branch.
    """
    for k in range(8):
        out[c + k] = base + np.int64(trailing_zeros(bits))
        bits &= bits - uint64(1)
    k = 8
    while k < n:
        out[c + k] = base + np.int64(trailing_zeros(bits))
        bits &= bits - uint64(1)
        k += 1
    return c + n
