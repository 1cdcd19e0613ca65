"""Merge shard results into per-item verdicts, confirming the top hits with rapidfuzz alignment.

Exact n-gram hits say *that* an item's words occur; the confirmation says *how closely* the document
reproduces the item: `rapidfuzz.fuzz.partial_ratio_alignment` aligns the item's normalised words with the
document window around its longest matched run and returns a 0-100 score and the aligned snippet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from tinyeval.audit.scan import ngrams
from tinyeval.audit.scan.index import NgramIndex
from tinyeval.audit.scan.readers.types import Stats
from tinyeval.audit.scan.shard import PairHit, TaskResult
from tinyeval.schema import typed_dict

SNIPPET_CHARS = 240


@dataclass
class Hit:
    """One confirmed (item, document) occurrence, as reported."""

    source: str
    doc: int  # byte offset of its line / paragraph, or its row number
    doc_id: str | None  # the document's own id (its id/url field, `--id-field`); None when it has none
    start: int
    end: int
    span: int
    matched: int
    hits: int
    similarity: float
    snippet: str
    exact_offsets: bool


@dataclass
class ItemVerdict:
    id: str
    fraction: float  # distinct item n-grams found anywhere in the corpus / all of its n-grams
    field_coverage: float  # the same, for the best single field (question or answer) of a joined item
    span: int  # longest matched run in one document, in words
    similarity: float  # best rapidfuzz confirmation score, 0-100
    contaminated: bool
    hits: list[Hit] = field(default_factory=list)


@dataclass
class Merged:
    stats: Stats
    verdicts: list[ItemVerdict]  # items with any match, most contaminated first
    flagged: dict[str, dict[int, list[tuple[int, int]]]]  # source -> doc -> matched char ranges
    skipped: dict[str, Stats] = field(default_factory=dict)  # source -> its counts, for sources with skips


def _confirm(index: NgramIndex, h: PairHit) -> Hit:
    from rapidfuzz import fuzz

    item_words = index.items[h.item].words
    window_words = " ".join(ngrams.words_of(h.window, index.recipe.normalisation))
    al = fuzz.partial_ratio_alignment(item_words, window_words)
    snippet = window_words[al.dest_start:al.dest_end]
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[: SNIPPET_CHARS - 1] + "…"
    return Hit(h.source, h.doc, h.doc_id, h.start, h.end, h.span, h.matched, h.hits, round(float(al.score), 2),
               snippet, h.exact_offsets)


def merge(results: list[TaskResult], index: NgramIndex, keep: int = 3) -> Merged:
    """Combine task results (in task order) into verdicts; the output depends only on the results."""
    stats, skipped = Stats(), {}
    for r in results:
        stats.add(r.stats)
        if r.stats.skipped:
            skipped.setdefault(r.task.source, Stats()).add(r.stats)
    keys = np.unique(np.concatenate([r.matched for r in results])) if results else np.zeros(0, np.uint64)
    key_item = (keys >> np.uint64(32)).astype(np.int64)
    key_pos = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    found = np.bincount(key_item, minlength=len(index.items))
    bounds = np.searchsorted(key_item, np.arange(len(index.items) + 1))
    by_item: dict[int, list[PairHit]] = {}
    for r in results:
        for h in r.pairs:
            by_item.setdefault(h.item, []).append(h)
    thr = index.recipe.thresholds
    verdicts = []
    for i in np.flatnonzero(found).tolist():
        pairs = sorted(by_item.get(i, []), key=lambda h: (-h.span, -h.hits, h.source, h.doc))[:keep]
        hits = [_confirm(index, h) for h in pairs]
        fraction = round(float(found[i]) / max(int(index.item_positions[i]), 1), 4)
        coverage = round(float(index.items[i].field_coverage(key_pos[bounds[i]:bounds[i + 1]])), 4)
        span = max((h.span for h in hits), default=0)
        similarity = max((h.similarity for h in hits), default=0.0)
        evidence = fraction >= thr.min_fraction or span >= thr.min_span or coverage >= thr.min_field_coverage
        flagged = bool(evidence and similarity >= thr.min_similarity)  # a numpy bool would leak into JSON
        verdicts.append(ItemVerdict(index.items[i].id, fraction, coverage, span, similarity, flagged, hits))
    verdicts.sort(key=lambda v: (not v.contaminated, -v.fraction, -v.span, v.id))
    flagged_docs: dict[str, dict[int, list[tuple[int, int]]]] = {}
    for r in results:
        if r.flagged:
            flagged_docs.setdefault(r.task.source, {}).update(r.flagged)
    return Merged(stats, verdicts, flagged_docs, skipped)


class ByFraction(TypedDict):
    min_fraction: float
    label: str
    items: int
    pct: float


class SummaryJSON(TypedDict):
    """report.json's "summary" (and `tinyeval audit --json`): how many items are contaminated."""

    items: int
    indexed: int
    too_short: int  # items with fewer words than the recipe's min_n: not indexed, never flagged
    contaminated: int
    contaminated_pct: float
    by_fraction: list[ByFraction]
    incomplete: list[str]  # why the verdict does not cover the corpus (scan.gate); [] when it does


ItemJSON = typed_dict(ItemVerdict)  # one entry of report.json's "items"


def summary(verdicts: list[ItemVerdict], index: NgramIndex, incomplete: list[str]) -> SummaryJSON:
    """% of items contaminated under the recipe's rule, and at each matched-fraction cut-off."""
    total = len(index.items)
    pct = (lambda n: round(100.0 * n / total, 2)) if total else (lambda n: 0.0)
    flagged = int(sum(v.contaminated for v in verdicts))
    rows = []
    for t in index.recipe.thresholds.report:
        n = int(sum(v.fraction > 0 if t == 0 else v.fraction >= t for v in verdicts))
        label = f"any {index.recipe.n}-gram" if t == 0 else f">= {t:g} of n-grams"
        rows.append({"min_fraction": t, "label": label, "items": n, "pct": pct(n)})
    return {"items": total, "indexed": int(sum(1 for it in index.items if it.k)),
            "too_short": int(sum(1 for it in index.items if not it.k)),
            "contaminated": flagged, "contaminated_pct": pct(flagged), "by_fraction": rows, "incomplete": incomplete}
