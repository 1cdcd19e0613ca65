import json
import math
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tinyeval.cli import app
from tinyeval.errors import TinyevalError
from tinyeval.report import render, results
from tinyeval.report.results import SeedRun, TaskScore
from tinyeval.report.stats import delta, mean_score, seed_interval, t_quantile

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


@pytest.fixture
def run_dir(tmp_path) -> Path:
    shutil.copy(FIXTURES / "results.json", tmp_path / "results.json")
    return tmp_path


def test_report_rerenders_golden_markdown_and_plots(run_dir):
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (run_dir / "report.md").read_text() == (FIXTURES / "report.md").read_text()
    for name in ("accuracy_vs_params_gsm8k.png", "accuracy_vs_params_arc_easy.png", "training_curves.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_json_rows(run_dir):
    result = runner.invoke(app, ["report", str(run_dir), "--json"])
    rows = json.loads(result.stdout)
    assert [r["cell"] for r in rows] == ["base", "tinylora-13", "lora-r1-sft", "lora-r8"]
    assert rows[1]["gsm8k"] == "50.0 / 75.0"


@pytest.mark.parametrize("gate,code", [
    (["gsm8k=0.25"], 1),                 # lora-r8 failed: a missing score fails the gate
    (["tinylora-13/gsm8k=0.7"], 0),
    (["tinylora-13/gsm8k=0.8"], 1),
    (["lora-r1-sft/arc_easy=0.2", "tinylora-13/arc_easy=0.5"], 0),
])
def test_fail_under_exit_codes(run_dir, gate, code):
    argv = ["report", str(run_dir)] + [x for g in gate for x in ("--fail-under", g)]
    assert runner.invoke(app, argv).exit_code == code


@pytest.mark.parametrize("spec", ["gsm8k", "gsm8k=high", "=0.5"])
def test_bad_threshold_is_clear(spec):
    with pytest.raises(TinyevalError, match="--fail-under"):
        render.parse_threshold(spec)


def test_gate_rejects_unknown_task_and_cell(run_dir):
    r = results.load(run_dir)
    with pytest.raises(TinyevalError, match="not in this run"):
        render.gate(r, [render.parse_threshold("math500=0.1")])
    with pytest.raises(TinyevalError, match="no cell named"):
        render.gate(r, [render.parse_threshold("nope/gsm8k=0.1")])


def test_missing_or_bad_results_file(tmp_path):
    with pytest.raises(TinyevalError, match="no results.json"):
        results.load(tmp_path)
    (tmp_path / "results.json").write_text('{"version": 2, "cells": []}')
    with pytest.raises(TinyevalError, match="not a tinyeval results file"):
        results.load(tmp_path)


def test_paired_delta_matches_hand_computation():
    a = TaskScore("acc", 0.75, 0.2, 4, correct=[1, 1, 1, 0])
    b = TaskScore("acc", 0.25, 0.2, 4, correct=[1, 0, 0, 0])
    d = delta(a, b)
    diffs = [0, 1, 1, 0]  # mean 0.5, sample sd sqrt(1/3)
    half = 1.959964 * math.sqrt(1 / 3) / 2
    assert d.paired and d.value == pytest.approx(0.5)
    assert (d.low, d.high) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert sum(diffs) / 4 == d.value


def test_unpaired_delta_uses_both_stderrs():
    d = delta(TaskScore("acc", 0.6, 0.03), TaskScore("acc", 0.5, 0.04))
    assert not d.paired
    assert d.high - d.value == pytest.approx(1.959964 * 0.05)


def test_report_json_matches_its_schema(run_dir):
    from tinyeval.report.render import ReportRow
    from tinyeval.schema import check

    result = runner.invoke(app, ["report", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    check(json.loads(result.stdout), list[ReportRow])


def test_fixture_is_what_the_writer_writes():
    """The golden results.json matches `ResultsJson` exactly (every key the runner always writes), and a load +
    write round trip gives the same document back."""
    from tinyeval.report.results import ResultsJson
    from tinyeval.schema import check

    raw = json.loads((FIXTURES / "results.json").read_text())
    check(raw, ResultsJson)
    assert results.Results.from_dict(raw).to_dict() == raw


def test_version_1_results_still_render(tmp_path):
    """A results.json written before seeds and sweeps (version 1) reads as one seed 0 per cell."""
    shutil.copy(FIXTURES / "results_v1.json", tmp_path / "results.json")
    old = results.load(tmp_path)
    assert [[s.status for s in c.seeds] for c in old.cells] == [["done"]] * 3 + [["failed"]] and old.lr_sweep is None
    assert render.rows(old)[1]["gsm8k"] == "50.0 / 75.0"
    assert runner.invoke(app, ["report", str(tmp_path)]).exit_code == 0 and (tmp_path / "report.md").is_file()
    assert runner.invoke(app, ["report", str(tmp_path), "--fail-under", "gsm8k=0.25"]).exit_code == 1  # lora-r8


def test_seed_interval_is_a_student_t_interval():
    seeds = [SeedRun(i, 1e-5, scores={"gsm8k": TaskScore("acc", v, 0.1, 4)}) for i, v in enumerate((0.2, 0.3, 0.4))]
    interval = seed_interval(seeds, "gsm8k")
    half = 4.302653 * 0.1 / math.sqrt(3)  # t(0.975, df 2) x sd / sqrt(k)
    assert t_quantile(2) == pytest.approx(4.302653, abs=1e-6) and interval.k == 3
    assert (interval.value, interval.low, interval.high) == (pytest.approx(0.3), pytest.approx(0.3 - half),
                                                             pytest.approx(0.3 + half))
    assert seed_interval(seeds[:1], "gsm8k") is None  # one seed: no interval across seeds
    failed = seeds[:2] + [SeedRun(9, 1e-5, status="failed", error="boom")]
    assert seed_interval(failed, "gsm8k").k == 2  # failed seeds do not count


def test_welch_interval_matches_a_hand_computation():
    from tinyeval.report.stats import welch

    a, b = [0.5, 0.6, 0.7], [0.2, 0.2, 0.5, 0.3]  # variances 0.01 and 0.02, n 3 and 4
    va, vb = 0.01 / 3, 0.02 / 4
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)  # Welch-Satterthwaite: 5.0
    half = t_quantile(df) * math.sqrt(va + vb)
    d = welch(a, b)
    assert df == pytest.approx(5.0, abs=0.01) and d.k == 7
    assert (d.value, d.low, d.high) == (pytest.approx(0.3), pytest.approx(0.3 - half), pytest.approx(0.3 + half))
    assert welch([0.5, 0.5], [0.2, 0.2]).low == pytest.approx(0.3)  # no spread: the difference itself
    assert welch([0.5], [0.2, 0.3]) is None


def test_welch_from_two_recorded_intervals_is_welch_on_the_values():
    from tinyeval.report.stats import t_interval, welch, welch_of

    a, b = [0.5, 0.6, 0.7], [0.2, 0.2, 0.5, 0.3]
    d, e = welch(a, b), welch_of(t_interval(a), t_interval(b))
    assert (e.value, e.low, e.high, e.k) == (pytest.approx(d.value), pytest.approx(d.low), pytest.approx(d.high), 7)
    flat = t_interval([0.4, 0.4, 0.4])
    same = welch_of(flat, flat)  # no spread on either side: the difference itself
    assert (same.low, same.high) == (pytest.approx(0, abs=1e-12), pytest.approx(0, abs=1e-12))
    assert welch_of(t_interval(a), type(flat)(0.4, 0.4, 0.4, 1)) is None  # one value: no seed interval


def test_mean_over_seeds_pairs_items_with_the_base():
    """Each item's correctness is averaged over seeds, then paired with the base's items."""
    seeds = [SeedRun(i, 1e-5, scores={"gsm8k": TaskScore("acc", sum(c) / 4, 0.2, 4, correct=c)})
             for i, c in enumerate(([1, 1, 0, 0], [1, 0, 1, 0]))]
    mean = mean_score(seeds, "gsm8k")
    assert mean.value == 0.5 and mean.correct == [1.0, 0.5, 0.5, 0.0]
    d = delta(mean, TaskScore("acc", 0.25, 0.2, 4, correct=[1, 0, 0, 0]))
    diffs = [0.0, 0.5, 0.5, 0.0]
    sd = math.sqrt(sum((x - 0.25) ** 2 for x in diffs) / 3)
    assert d.paired and d.value == pytest.approx(0.25) and d.high - d.value == pytest.approx(1.959964 * sd / 2)
