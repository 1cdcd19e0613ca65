"""Is a cell's gain real? Its gain over the base model on the original items beside its gain on their twins.

A twin is the same problem with its numbers redrawn and its answer recomputed (`tinyeval.audit.perturb` for GSM8K,
`arith_twins` for arith); it carries its original's item id, so a cell's scores on originals and on twins pair item
by item. Per paired item i (correctness averaged over the cell's seeds; the base model is deterministic):

    g_i = cell_orig_i - base_orig_i        the gain on the original
    h_i = cell_twin_i - base_twin_i        the gain on its twin
    d_i = g_i - h_i                        what the gain owes to the original's exact wording and numbers

Δ orig, Δ twins and their difference are means over the paired items with 95% intervals mean ± 1.96·sd/√n.
The verdict, on lenient correctness (the right value: what a memorised answer would give), in this order:

    drops on twins  d's interval lies above 0: the gain on originals exceeds the gain on twins beyond the interval
                    (also without a gain on originals: a cell that loses more on twins than on originals has
                    learnt something about those exact items)
    no gain         Δ orig's interval reaches 0 or below: nothing to explain
    holds on twins  Δ twins' interval lies above 0 (and d's does not)
    inconclusive    otherwise: a gain on originals, but the twins cannot tell (too few items, too much noise)
    no twins        the run has no twin task of this task, or its items carry no ids
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyeval.report.results import TaskScore
from tinyeval.report.stats import Delta, paired_delta

VERDICTS = ("drops on twins", "no gain", "holds on twins", "inconclusive", "no twins")


def _by_id(score: TaskScore | None, key: str) -> dict[str, float]:
    values = getattr(score, key, None) if score is not None else None
    if not score or not score.ids or values is None or len(values) != len(score.ids):
        return {}
    return dict(zip(score.ids, values))


@dataclass(frozen=True)
class TwinCheck:
    """A cell's gain on originals and on their twins over the same paired items, and the verdict."""

    orig: Delta | None
    twins: Delta | None
    difference: Delta | None  # orig - twins, per item
    n: int  # paired items
    verdict: str

    def as_dict(self) -> dict:
        show = lambda d: None if d is None else {"value": d.value, "low": d.low, "high": d.high}  # noqa: E731
        return {"orig": show(self.orig), "twins": show(self.twins), "difference": show(self.difference), "n": self.n,
                "verdict": self.verdict}


def twin_check(cell_orig: TaskScore | None, base_orig: TaskScore | None, cell_twin: TaskScore | None,
               base_twin: TaskScore | None, key: str = "lenient_correct") -> TwinCheck:
    """The rule in the module docstring on the items all four scores share (`key`: lenient_correct |
    strict_correct | correct)."""
    maps = [_by_id(s, key) for s in (cell_orig, base_orig, cell_twin, base_twin)]
    if not all(maps):
        return TwinCheck(None, None, None, 0, "no twins")
    ids = [i for i in maps[0] if all(i in m for m in maps[1:])]
    g = [maps[0][i] - maps[1][i] for i in ids]
    h = [maps[2][i] - maps[3][i] for i in ids]
    orig, twins, diff = paired_delta(g), paired_delta(h), paired_delta([a - b for a, b in zip(g, h)])
    if orig is None or twins is None or diff is None:
        return TwinCheck(orig, twins, diff, len(ids), "no twins")
    if diff.low > 0:
        verdict = "drops on twins"
    elif orig.low <= 0:
        verdict = "no gain"
    elif twins.low > 0:
        verdict = "holds on twins"
    else:
        verdict = "inconclusive"
    return TwinCheck(orig, twins, diff, len(ids), verdict)
