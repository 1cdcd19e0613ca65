"""The scan's compiled loops (numba): word hashes from 8-byte loads, and the rolling k-gram hash fused
with the index's bit-table test.

In numpy these are a dozen gathers, masks and passes over the words, each with an 8-byte temporary
(~5 ms/MB here); these loops touch each word once (~1 ms/MB).
It computes exactly the hash that `ngrams.kgrams` defines for the index's items, sum_j h[i+j] * P**j
mod 2**64, rolled as g[i+1] = (g[i] - h[i]) * P**-1 + h[i+k] * P**(k-1) (a test checks both agree).
Compiled once per machine and cached beside this file (`cache=True`); the first call costs a few seconds.
Byte-level loops stay in numpy: a compiled per-byte word splitter was slower than numpy's SIMD passes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

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


@njit(cache=True)
def split_words(p, m, word_byte, punctuation, clear, cuts):
    """(starts, ends) of the words of p[:m]: runs of bytes with word_byte[b] set, in one pass.

    Beside the byte classes it applies, per byte, what numpy did as extra passes and fix-ups: with
    `punctuation`, U+2000-206F (E2 80/81 xx) and U+00A0-00BF (C2 A0-BF) separate words; the sorted
    positions `clear` (annotations, [asy] blocks) are no word bytes; no word runs across a position
    in the sorted `cuts` (document starts). Cursors advance by 0 or 1 per byte, so word boundaries
    cost no branch (a branching splitter was 2x slower than numpy); the rare cases branch.
    p must hold 2 readable bytes past m (the NUL padding).
    """
    starts = np.empty(m // 2 + 1, np.int64)  # sized for the worst case: only the used part is touched
    ends = np.empty(m // 2 + 1, np.int64)
    cs = 0
    ce = 0
    prev = 0
    clear_until = 0  # bytes before this end a General Punctuation / Latin-1 punctuation character
    ci = 0
    ki = 0
    next_clear = clear[0] if len(clear) else m
    next_cut = cuts[0] if len(cuts) else m
    for i in range(m):
        c = p[i]
        w = np.int64(word_byte[c])
        if punctuation and c >= 0xC2:
            if c == 0xE2 and (p[i + 1] == 0x80 or p[i + 1] == 0x81):
                clear_until = i + 3
            elif c == 0xC2 and p[i + 1] >= 0xA0:
                clear_until = i + 2
        if i < clear_until:
            w = 0
        if i == next_clear:
            w = 0
            while ci < len(clear) and clear[ci] <= i:
                ci += 1
            next_clear = clear[ci] if ci < len(clear) else m
        if i == next_cut:  # a word running into the next document ends here
            ends[ce] = i
            ce += prev
            prev = 0
            while ki < len(cuts) and cuts[ki] <= i:
                ki += 1
            next_cut = cuts[ki] if ki < len(cuts) else m
        starts[cs] = i
        ends[ce] = i
        cs += w & (1 - prev)
        ce += prev & (1 - w)
        prev = w
    if prev:
        ends[ce] = m
        ce += 1
    return starts[:cs], ends[:ce]
