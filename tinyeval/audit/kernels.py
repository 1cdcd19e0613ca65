"""The scan's compiled loop (numba): the rolling k-gram hash fused with the index's bit-table test.

In numpy the same step is a prefix sum, a difference, a multiply, a shift, a gather and a nonzero, each a
pass over the words with an 8-byte temporary (~3 ms/MB here); this loop touches each word once (~0.5 ms/MB).
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


@njit(cache=True)
def kgram_candidates(wh, k, table, shift, pow_k1):
    """(positions, hashes) of the k-grams whose top `64 - shift` hash bits are set in `table`.

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
        if table[g >> sh]:
            pos[count] = i
            val[count] = g
            count += 1
        if i + 1 < n:
            g = (g - wh[i]) * p_inv + wh[i + k] * pk
    return pos[:count], val[:count]
