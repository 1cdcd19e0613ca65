"""Twins: the paired gain on originals vs on twins, and the verdict rule, against hand computations."""

from __future__ import annotations

import math

import pytest

from tinyeval.report.render import gate, parse_threshold, rows, twin_checks
from tinyeval.report.results import Cell, Results, SeedRun, TaskScore
from tinyeval.report.verdict import twin_check


def score(lenient: list[int], ids: list[str] | None = None) -> TaskScore:
    ids = ids or [f"arith/test/{i}" for i in range(len(lenient))]
    return TaskScore("exact_match", sum(lenient) / len(lenient), None, len(lenient), 0.0, sum(lenient) / len(lenient),
                     lenient, ids, [0] * len(lenient), lenient)


def test_paired_gains_and_difference_match_a_hand_computation() -> None:
    base = score([0, 0, 1, 0, 1, 0])
    cell = score([1, 1, 1, 0, 1, 1])  # g = 1,1,0,0,0,1
    base_t = score([0, 1, 0, 0, 1, 0])
    cell_t = score([1, 1, 0, 0, 1, 0])  # h = 1,0,0,0,0,0
    c = twin_check(cell, base, cell_t, base_t)
    g, d = [1, 1, 0, 0, 0, 1], [0, 1, 0, 0, 0, 1]
    mean = sum(d) / 6
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 5)
    assert c.n == 6 and c.orig.value == pytest.approx(sum(g) / 6) and c.twins.value == pytest.approx(1 / 6)
    assert c.difference.low == pytest.approx(mean - 1.959964 * sd / math.sqrt(6))
    assert c.difference.high == pytest.approx(mean + 1.959964 * sd / math.sqrt(6))


def test_pairs_by_id_not_by_position() -> None:
    base = score([0, 0], ["a", "b"])
    cell = score([1, 0], ["a", "b"])
    twin_base = score([0, 0], ["b", "a"])
    twin_cell = score([0, 1], ["b", "a"])  # a's twin right, b's wrong: h = [1 (a), 0 (b)]
    c = twin_check(cell, base, twin_cell, twin_base)
    assert c.difference.value == 0 and c.twins.value == 0.5


def test_verdicts_on_constructed_items() -> None:
    n = 60
    zeros, ones = [0] * n, [1] * n
    half = [i % 2 for i in range(n)]
    # gain on originals everywhere, none on twins: memorised
    assert twin_check(score(ones), score(zeros), score(zeros), score(zeros)).verdict == "drops on twins"
    # the same gain on originals and twins
    assert twin_check(score(ones), score(zeros), score(ones), score(zeros)).verdict == "holds on twins"
    # no gain at all
    assert twin_check(score(zeros), score(zeros), score(zeros), score(zeros)).verdict == "no gain"
    # no gain on originals but a loss on every twin: the difference is what the verdict reads first
    assert twin_check(score(zeros), score(zeros), score(zeros), score(ones)).verdict == "drops on twins"
    # a loss on originals as large as on twins: nothing owed to the originals
    assert twin_check(score(zeros), score(ones), score(zeros), score(ones)).verdict == "no gain"
    # a gain on every original, on half of the twins, over 60 items: the twins' gain is real but smaller
    assert twin_check(score(ones), score(zeros), score(half), score(zeros)).verdict == "drops on twins"
    assert twin_check(score(ones), score(zeros), None, None).verdict == "no twins"
    assert twin_check(score([1, 1, 1, 1]), score([0] * 4), score([1, 0, 1, 0]), score([0] * 4)).verdict == "inconclusive"


def test_report_columns_and_fail_if_drop_gate() -> None:
    n = 40
    zeros, ones = [0] * n, [1] * n

    def cell(name: str, method: str, algo, orig: list[int], twin: list[int]) -> Cell:
        run = SeedRun(0, None if algo is None else 0.01, "done", {"arith": score(orig), "arith_twins": score(twin)})
        return Cell(name, method, algo, 210 if algo else 0, status="done", seeds=[run])

    results = Results("m", "cpu", ["arith", "arith_twins"], [cell("base", "base", None, zeros, zeros),
                                                           cell("tinylora-210-grpo", "tinylora", "grpo", ones, zeros),
                                                           cell("tinylora-210-sft", "tinylora", "sft", ones, ones)])
    checks = twin_checks(results)
    assert checks[("tinylora-210-grpo", "arith")].verdict == "drops on twins"
    assert checks[("tinylora-210-sft", "arith")].verdict == "holds on twins"
    table = {r["cell"]: r for r in rows(results)}
    assert table["tinylora-210-grpo"]["verdict arith"] == "drops on twins"
    assert table["base"]["verdict arith"] == "–" and list(table["base"]) == list(table["tinylora-210-grpo"])
    assert gate(results, []) == []
    assert gate(results, [], fail_if_drop=True) == [
        "tinylora-210-grpo arith: drops on twins (gain on originals minus gain on twins +100.0 [+100.0, +100.0])"]


def test_a_threshold_without_a_cell_leaves_the_controls_out() -> None:
    """`--fail-under arith=V` gates the trained cells; a random-reward control is meant to score low (named, it is
    gated like any cell)."""
    n = 20

    def cell(name: str, method: str, algo, correct: list[int]) -> Cell:
        run = SeedRun(0, None if algo is None else 0.01, "done", {"arith": score(correct)})
        return Cell(name, method, algo, 210 if algo else 0, status="done", seeds=[run])

    results = Results("m", "cpu", ["arith"], [cell("base", "base", None, [0] * n),
                                              cell("tinylora-210-grpo", "tinylora", "grpo", [1] * n),
                                              cell("tinylora-210-grpo-random", "tinylora", "grpo", [0] * n)])
    assert [c.is_control for c in results.cells] == [False, False, True]
    assert gate(results, [parse_threshold("arith=0.5")]) == []
    assert gate(results, [parse_threshold("tinylora-210-grpo-random/arith=0.5")]) == [
        "tinylora-210-grpo-random arith: 0.0000 < 0.5"]
