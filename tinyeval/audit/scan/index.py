"""The n-gram index of a benchmark: hashed n-grams of every item, and a fast membership test for the scan.

Membership of tens of millions of corpus n-gram hashes per second is a two-step lookup: a bitset
indexed by the top bits of the hash (~32 slots per indexed n-gram, so ~3% of corpus n-grams pass; tested
inside the compiled rolling-hash loop; one bit per slot keeps it in L2), then, for the few that pass, an
exact comparison against the sorted unique hashes in the bucket of their top bits (~1 hash per bucket).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyeval.audit.scan import kernels, ngrams
from tinyeval.audit.scan.config import Recipe


@dataclass
class Item:
    """One benchmark item as indexed."""

    id: str  # "<dataset>/<split>/<row>"
    text: str  # the indexed text (fields joined), as in the benchmark
    words: str  # its normalised words joined by spaces: what fuzzy confirmation compares
    k: int  # n-gram length used for it (n, or its length when shorter; 0 = too short, not indexed)
    positions: int  # number of k-gram positions (the denominator of the matched fraction)
    field_words: tuple[int, ...] = ()  # words of each joined field (question, answer), in order

    def field_coverage(self, matched: np.ndarray) -> float:
        """Best share of one field's own k-grams (those inside it) among `matched` positions.

        A copy of the question alone covers the question completely but only a small part of a long
        worked solution; this catches it where the item-wide fraction cannot.
        """
        best, start = 0.0, 0
        for n_words in self.field_words:
            inside = n_words - self.k + 1
            if self.k and inside > 0 and len(self.field_words) > 1:
                hit = np.count_nonzero((matched >= start) & (matched < start + inside))
                best = max(best, hit / inside)
            start += n_words
        return best


@dataclass
class NgramIndex:
    recipe: Recipe
    items: list[Item]
    hashes: np.ndarray  # (H,) uint64 sorted unique k-gram hashes
    ptr: np.ndarray  # (H + 1,) int64: entries of hash h are entry_*[ptr[h]:ptr[h + 1]]
    entry_item: np.ndarray  # (E,) int32 item number
    entry_pos: np.ndarray  # (E,) int32 k-gram position inside the item
    table: np.ndarray  # (2**bits / 64,) uint64 bitset: bit t set when some indexed hash has top bits t
    shift: int  # 64 - bits
    bucket: np.ndarray  # (2**dbits + 1,) int32: rows of the hashes with top dbits t are bucket[t]:bucket[t + 1]
    dshift: int  # 64 - dbits
    lengths: tuple[int, ...]  # the distinct k in use, longest first
    item_k: np.ndarray  # (I,) int32: k of each item
    item_positions: np.ndarray  # (I,) int32: k-gram positions of each item

    def lookup(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions in `g` (k-gram hashes) whose hash is indexed, and the index row of each."""
        t = g >> np.uint64(self.shift)
        cand = np.flatnonzero((self.table[t >> np.uint64(6)] >> (t & np.uint64(63))) & np.uint64(1))
        return self._exact(cand, g[cand])

    def find(self, wh: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the indexed k-grams among words with hashes `wh`, and their index rows.

        The compiled loop rolls the k-gram hash and tests the bit table; the few that pass are checked
        exactly against the sorted hashes.
        """
        pos, val = kernels.kgram_candidates(wh, k, self.table, np.uint64(self.shift),
                                            np.uint64(pow(kernels.P, k - 1, 1 << 64)))
        return self._exact(pos, val)

    def _exact(self, cand: np.ndarray, gc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return kernels.exact_rows(cand.astype(np.int64, copy=False), gc, self.hashes, self.bucket,
                                  np.uint64(self.dshift))


def _word_counts(texts: list[str], recipe: Recipe) -> tuple[ngrams.Encoded, np.ndarray]:
    """All texts encoded as one batch, and the word range [bounds[t], bounds[t + 1]) of each text."""
    enc = ngrams.encode(texts, recipe.normalisation)
    doc_of_word = np.searchsorted(enc.doc_starts, enc.to_raw(enc.starts), side="right") - 1
    return enc, np.searchsorted(doc_of_word, np.arange(len(texts) + 1))


def item_ids(rows: list[dict], recipe: Recipe, id_prefix: str | None = None) -> list[str]:
    """Each row's item id: its `recipe.id_field` (MATH500's unique_id), else "<dataset>/<split>/<row>" (or
    "<id_prefix>/<row>"). A name two rows share gets "#<row>" on the second, so ids stay unique."""
    prefix = id_prefix or f"{recipe.dataset}/{recipe.split}"
    out: list[str] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        name = row.get(recipe.id_field) if recipe.id_field else None
        name = f"{prefix}/{i}" if name is None else str(name)
        if name in seen:
            name = f"{name}#{i}"
        seen.add(name)
        out.append(name)
    return out


def build_index(rows: list[dict], recipe: Recipe, id_prefix: str | None = None) -> NgramIndex:
    """Index every row of a benchmark under `recipe` (one item per row, or per field if not joined).

    All items are encoded as one batch (the scan's own path), so an item's k-grams are a slice of the
    batch's k-gram hashes: an item shorter than n is one k-gram of its own length, down to `min_n`.
    """
    texts, ids, fields_of = [], [], []
    for i, (row, name) in enumerate(zip(rows, item_ids(rows, recipe, id_prefix))):
        item_texts = recipe.item_texts(row)
        for f, text in enumerate(item_texts):
            texts.append(text)
            ids.append(name + ("" if len(item_texts) == 1 else f":{recipe.fields[f]}"))
            fields_of.append(recipe.field_values(row) if recipe.join_fields else [])
    enc, bounds = _word_counts(texts, recipe)
    words = enc.words()
    _, field_bounds = _word_counts([v for fs in fields_of for v in fs], recipe)
    field_words = np.diff(field_bounds)
    n_words = np.diff(bounds)
    ks = np.where(n_words >= recipe.n, recipe.n, np.where(n_words >= recipe.min_n, n_words, 0))
    c = ngrams.prefix(enc.hashes)
    by_k = {int(k): ngrams.kgrams(c, int(k)) for k in np.unique(ks) if k}
    items: list[Item] = []
    all_hash, all_item, all_pos = [], [], []
    f0 = 0
    for t, text in enumerate(texts):
        a, b, k = int(bounds[t]), int(bounds[t + 1]), int(ks[t])
        g = by_k[k][a:b - k + 1] if k else np.zeros(0, np.uint64)
        all_hash.append(g)
        all_item.append(np.full(len(g), t, dtype=np.int32))
        all_pos.append(np.arange(len(g), dtype=np.int32))
        n_fields = len(fields_of[t])
        items.append(Item(ids[t], text, " ".join(words[a:b]), k, len(g),
                          tuple(int(x) for x in field_words[f0:f0 + n_fields])))
        f0 += n_fields
    h = np.concatenate(all_hash) if all_hash else np.zeros(0, np.uint64)
    it = np.concatenate(all_item) if all_item else np.zeros(0, np.int32)
    ps = np.concatenate(all_pos) if all_pos else np.zeros(0, np.int32)
    order = np.lexsort((ps, it, h))
    h, it, ps = h[order], it[order], ps[order]
    hashes, first = np.unique(h, return_index=True)
    ptr = np.append(first, len(h)).astype(np.int64)
    log_h = int(np.ceil(np.log2(max(len(hashes), 1))))
    bits = min(28, max(16, log_h + 5))
    slot = hashes >> np.uint64(64 - bits)
    table = np.zeros(1 << (bits - 6), dtype=np.uint64)
    np.bitwise_or.at(table, slot >> np.uint64(6), np.uint64(1) << (slot & np.uint64(63)))
    dbits = min(26, max(8, log_h))  # bucket directory: 2**dbits int32 entries (256 MB at the cap)
    bucket = np.searchsorted(hashes >> np.uint64(64 - dbits), np.arange((1 << dbits) + 1, dtype=np.uint64))
    lengths = tuple(sorted({x.k for x in items if x.k}, reverse=True))
    return NgramIndex(recipe, items, hashes, ptr, it, ps, table, 64 - bits, bucket.astype(np.int32), 64 - dbits,
                      lengths,
                      np.array([x.k for x in items], dtype=np.int32),
                      np.array([x.positions for x in items], dtype=np.int32))
