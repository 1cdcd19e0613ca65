"""The shard function: stream one task's documents, hash their n-grams, and gather evidence per item.

Engines (local processes, Ray) only call `scan_task` on each task and hand the results, in task order, to
`merge`; so the result of a scan does not depend on the engine or on the number of workers.

Evidence is kept at two levels. Per item: the set of its n-gram positions found anywhere (the matched
fraction). Per (item, document) pair: how many n-gram hits, the longest run of consecutive n-grams that
are consecutive in the document too (the longest matched span), its character offsets, and the document
text from the first to the last matched n-gram for fuzzy confirmation; only the best `keep` pairs per item
survive a task.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass, field

import numpy as np

from tinyeval.audit.scan import ngrams
from tinyeval.audit.scan.index import NgramIndex
from tinyeval.audit.scan.readers.registry import read_batches
from tinyeval.audit.scan.readers.types import Batch, ShardTask, Stats, Window

MAX_WINDOW = 20_000  # characters of matched document text kept per (item, document) pair


@dataclass
class PairHit:
    """Evidence that one benchmark item occurs in one corpus document."""

    item: int
    source: str
    doc: int  # the document's position: byte offset of its line/paragraph, or row number
    doc_id: str | None  # the document's own id (its id/url field, `--id-field`), read for hit documents only
    hits: int  # matched n-gram occurrences in the document
    matched: int  # distinct item n-grams matched in the document
    span: int  # longest matched run, in words
    start: int  # character offsets of that run in the document
    end: int
    window: str  # the document text from its first to its last matched n-gram (what confirmation aligns)
    window_start: int  # character offset of window[0] in the document
    exact_offsets: bool  # False: offsets index the document's NFKC/lowercased text (it changed length)


@dataclass
class TaskResult:
    task: ShardTask
    stats: Stats
    matched: np.ndarray  # uint64 keys item << 32 | position of every item n-gram found, unique
    pairs: list[PairHit] = field(default_factory=list)  # best `keep` per item
    flagged: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # doc -> matched char ranges


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return ngrams._ranges(starts.astype(np.int64), lengths.astype(np.int64))


def _records(enc: ngrams.Encoded, index: NgramIndex) -> dict[str, np.ndarray]:
    """One record per (corpus n-gram hit, item n-gram it equals), inside one document."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("item", "pos", "doc", "word", "s", "e", "k")}
    for k in index.lengths:
        at, row = index.find(enc.hashes, k)
        if not len(at):
            continue
        s = enc.to_raw(enc.starts[at])
        e = enc.to_raw(enc.ends[at + k - 1] - 1) + 1
        d0 = np.searchsorted(enc.doc_starts, s, side="right") - 1
        same_doc = d0 == np.searchsorted(enc.doc_starts, e - 1, side="right") - 1
        at, row, s, e, d0 = at[same_doc], row[same_doc], s[same_doc], e[same_doc], d0[same_doc]
        count = index.ptr[row + 1] - index.ptr[row]
        rep = np.repeat(np.arange(len(row)), count)
        ent = _ranges(index.ptr[row], count)
        item = index.entry_item[ent]
        ok = index.item_k[item] == k
        rep, ent = rep[ok], ent[ok]
        for name, arr in (("item", item[ok]), ("pos", index.entry_pos[ent]), ("doc", d0[rep]),
                          ("word", at[rep]), ("s", s[rep]), ("e", e[rep]), ("k", np.full(len(rep), k))):
            cols[name].append(arr.astype(np.int64))
    return {name: np.concatenate(v) if v else np.zeros(0, np.int64) for name, v in cols.items()}


def _char_offset(doc_bytes: bytes, off: int) -> int:
    return off if doc_bytes.isascii() else len(doc_bytes[:off].decode("utf-8", "ignore"))


class _Pairs:
    """Group records into (item, document) pairs and runs of consecutive matches (all numpy)."""

    def __init__(self, r: dict[str, np.ndarray]):
        order = np.lexsort((r["pos"], r["word"], r["doc"], r["item"]))
        self.r = {k: v[order] for k, v in r.items()}
        item, doc, word, pos = (self.r[k] for k in ("item", "doc", "word", "pos"))
        new_pair = np.ones(len(item), dtype=bool)
        new_pair[1:] = (item[1:] != item[:-1]) | (doc[1:] != doc[:-1])
        new_run = new_pair.copy()
        new_run[1:] |= (np.diff(word) != 1) | (np.diff(pos) != 1)
        self.pair_of = np.cumsum(new_pair) - 1
        self.first = np.flatnonzero(new_pair)  # first record of each pair
        run_first = np.flatnonzero(new_run)
        run_len = np.diff(np.append(run_first, len(item)))
        run_pair = self.pair_of[run_first]
        best = np.lexsort((-run_len, run_pair))  # per pair, its longest run comes first
        keep = np.ones(len(best), dtype=bool)
        keep[1:] = run_pair[best][1:] != run_pair[best][:-1]
        best = best[keep]
        self.run_start, self.run_len = run_first[best], run_len[best]
        self.hits = np.bincount(self.pair_of, minlength=len(self.first))
        key = self.pair_of * (int(pos.max(initial=0)) + 1) + pos
        upairs = np.unique(key) // (int(pos.max(initial=0)) + 1)
        self.matched = np.bincount(upairs, minlength=len(self.first))

    @property
    def item(self) -> np.ndarray:
        return self.r["item"][self.first]

    @property
    def doc(self) -> np.ndarray:
        return self.r["doc"][self.first]

    @property
    def span(self) -> np.ndarray:
        return self.run_len + self.r["k"][self.first] - 1


def _pair_hit(p: _Pairs, j: int, batch: Batch, enc: ngrams.Encoded, task: ShardTask) -> PairHit:
    d = int(p.doc[j])
    base = batch.bases[d] if batch.bases is not None else 0  # a window's offset in its document
    lo, hi = int(enc.doc_starts[d]), int(enc.doc_ends[d])
    doc_bytes = enc.raw[lo:hi]
    first, last = int(p.run_start[j]), int(p.run_start[j] + p.run_len[j] - 1)
    start = _char_offset(doc_bytes, int(p.r["s"][first]) - lo)
    end = _char_offset(doc_bytes, int(p.r["e"][last]) - lo)
    rec_end = p.first[j + 1] - 1 if j + 1 < len(p.first) else len(p.r["item"]) - 1
    w0 = _char_offset(doc_bytes, int(p.r["s"][p.first[j]]) - lo)  # records are in document order
    w1 = _char_offset(doc_bytes, int(p.r["e"][rec_end]) - lo)
    original = batch.text(d)
    normalised = doc_bytes.decode("utf-8", "replace")
    exact = len(normalised) == len(original)
    text = original if exact else normalised
    return PairHit(int(p.item[j]), task.source, batch.positions[d], batch.doc_id(d, task.id_field), int(p.hits[j]),
                   int(p.matched[j]), int(p.span[j]), base + start, base + end, text[w0:min(w1, w0 + MAX_WINDOW)],
                   base + w0, exact)


def _flag_docs(p: _Pairs, index: NgramIndex, batch: Batch, enc: ngrams.Encoded,
               flagged: dict[int, list[tuple[int, int]]]) -> None:
    """Documents whose evidence alone meets the recipe's span or fraction threshold (for --decontaminate)."""
    thr = index.recipe.thresholds
    frac = p.matched / np.maximum(index.item_positions[p.item], 1)
    pairs = np.flatnonzero((p.span >= thr.min_span) | (frac >= thr.min_fraction))
    for j in pairs.tolist():
        d = int(p.doc[j])
        base = batch.bases[d] if batch.bases is not None else 0
        lo, hi = int(enc.doc_starts[d]), int(enc.doc_ends[d])
        doc_bytes = enc.raw[lo:hi]
        original = batch.text(d)
        exact = len(doc_bytes.decode("utf-8", "replace")) == len(original)
        recs = np.arange(p.first[j], p.first[j + 1] if j + 1 < len(p.first) else len(p.r["item"]))
        spans = flagged.setdefault(batch.positions[d], [])
        if not exact:  # offsets would not index the original text: mark the whole document (window)
            spans.append((base, base + len(original)))
            continue
        spans += [(base + _char_offset(doc_bytes, int(p.r["s"][i]) - lo),
                   base + _char_offset(doc_bytes, int(p.r["e"][i]) - lo)) for i in recs.tolist()]


def _top(p: _Pairs, keep: int) -> np.ndarray:
    """Indices of the best `keep` pairs of each item: longest span, then most hits, then first document."""
    order = np.lexsort((p.doc, -p.hits, -p.span, p.item))
    item = p.item[order]
    rank = np.arange(len(order)) - np.searchsorted(item, item, side="left")
    return order[rank < keep]


@functools.cache
def _keep_freed_memory() -> bool:
    """Ask glibc to reuse freed memory instead of returning it to the kernel after every batch.

    Each batch allocates a few dozen MB of numpy temporaries; by default glibc maps fresh pages for them
    and unmaps them on free, and the page faults cost ~25% of the scan. Raising the mmap and trim
    thresholds keeps the pages (up to ~1 GB per process stays reserved). No-op outside glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30)
                and libc.mallopt(m_top_pad, 64 << 20))


def scan_task(task: ShardTask, index: NgramIndex, keep: int = 3, batch_bytes: int = 4 << 20,
              spans: bool = False, window_chars: int = Window.chars) -> TaskResult:
    """Scan one shard task against the index; `spans` also collects flagged documents' matched ranges.

    A document longer than `window_chars` is scanned in windows overlapping by n - 1 words (`Window`)."""
    _keep_freed_memory()
    stats = Stats()
    keys: list[np.ndarray] = []
    pairs: list[PairHit] = []
    flagged: dict[int, list[tuple[int, int]]] = {}
    norm = index.recipe.normalisation
    window = Window(window_chars, max(index.lengths, default=1) - 1)
    for batch in read_batches(task, stats, batch_bytes, window=window):
        enc = batch.encode(norm)
        stats.bytes += int((enc.doc_ends - enc.doc_starts).sum())
        r = _records(enc, index)
        if not len(r["item"]):
            continue
        keys.append(np.unique((r["item"].astype(np.uint64) << np.uint64(32)) | r["pos"].astype(np.uint64)))
        p = _Pairs(r)
        pairs += [_pair_hit(p, int(j), batch, enc, task) for j in _top(p, keep)]
        if spans:
            _flag_docs(p, index, batch, enc, flagged)
    pairs.sort(key=lambda h: (h.item, -h.span, -h.hits, h.doc))
    best: list[PairHit] = []
    seen: set[tuple[int, int]] = set()  # (item, document): windows of one document give one pair
    for h in pairs:
        if (h.item, h.doc) not in seen and (len(best) < keep or best[-keep].item != h.item):
            best.append(h)
            seen.add((h.item, h.doc))
    matched = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.uint64)
    return TaskResult(task, stats, matched, best, flagged)
