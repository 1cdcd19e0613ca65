"""Benchmark anchors (benchmarks/anchors.py): a missing anchor is one line and a `skipped` entry in the record,
never a traceback that loses the figures measured before it."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyeval import schema

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


@pytest.fixture
def anchors(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import anchors

    return anchors


def test_missing_anchor_is_one_line_and_never_runs(anchors, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "datatrove", None)  # as if not installed
    runs = anchors.Anchors()
    called = []
    assert runs.measure("datatrove", lambda: called.append(1)) is None
    assert runs.measure("datatrove", lambda: called.append(1)) is None  # asked twice, said once
    assert called == []
    line = "anchor datatrove not installed (datatrove missing): `make bench`; skipped"
    assert capsys.readouterr().err.splitlines() == [line]
    assert runs.fields() == {"skipped": {"datatrove": line}}


def test_dependency_missing_at_first_use_is_a_skip_too(anchors, capsys):
    """datatrove imports its word tokenizer (spaCy) only when it first tokenizes: an ImportError from the run."""
    runs = anchors.Anchors()

    def run():
        raise ImportError("Please install `spacy` to use en word tokenizer (`pip install spacy`).\nmore")

    assert runs.measure("lm-eval Janitor", run) is None
    err = capsys.readouterr().err.splitlines()
    assert err == [("anchor lm-eval Janitor not installed (Please install `spacy` to use en word tokenizer "
                    "(`pip install spacy`).): `make bench`; skipped")]
    assert list(runs.fields()["skipped"]) == ["lm-eval Janitor"]


def test_installed_anchor_runs_and_records_nothing(anchors, capsys):
    runs = anchors.Anchors()
    assert runs.measure("lm-eval Janitor", lambda: 42) == 42  # lm-eval is a core dependency
    assert runs.fields() == {"skipped": {}}
    assert capsys.readouterr().err == ""


def test_every_anchor_names_importable_module_paths(anchors):
    assert set(anchors.INSTALL_HINT) <= set(anchors.ANCHORS)
    for name, modules in anchors.ANCHORS.items():
        assert modules and all(m.replace(".", "").replace("_", "").isalnum() for m in modules), name


def _run_audit_scan(tmp: Path, block: list[str]) -> subprocess.CompletedProcess:
    """benchmarks/audit_scan.py at 1 MB with `block`ed modules importing as if not installed."""
    code = ("import runpy, sys\n"
            f"for m in {block!r}: sys.modules[m] = None\n"
            f"sys.path.insert(0, {str(BENCH)!r})\n"
            f"sys.argv = ['audit_scan.py', '--mb', '1', '--anchor-mb', '1', '--no-ray', '--work', {str(tmp / 'work')!r},"
            f" '--out', {str(tmp / 'out.json')!r}]\n"
            f"runpy.run_path({str(BENCH / 'audit_scan.py')!r}, run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600,
                          check=False)


@pytest.mark.parametrize("block", [["datatrove"], ["datatrove", "lm_eval.decontamination"]],
                         ids=["datatrove", "datatrove+janitor"])
def test_audit_scan_without_anchors_writes_what_it_measured(anchors, block, tmp_path):
    proc = _run_audit_scan(tmp_path, block)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("anchor ")]
    line = {"lm-eval Janitor": "anchor lm-eval Janitor not installed (lm_eval missing): `make bench`; skipped",
            "datatrove": "anchor datatrove not installed (datatrove missing): `make bench`; skipped"}
    names = (["lm-eval Janitor"] if len(block) == 2 else []) + ["datatrove"]  # the order they run in
    assert lines == [line[n] for n in names]
    record = json.loads((tmp_path / "out.json").read_text())
    schema.check(record, anchors.BenchRecord)
    assert record["tinyeval"] > 0 and record["details"]["tinyeval_1_worker"]["recall"]["groups"]["partial"] == 1.0
    assert record["skipped"] == {n: line[n] for n in names}
    assert record["details"]["datatrove"] == {"skipped": record["skipped"]["datatrove"]}
    if "lm-eval Janitor" in names:
        assert record["anchor"] is None and record["ratio"] is None
        assert record["details"]["janitor"] == {"skipped": record["skipped"]["lm-eval Janitor"]}
    else:  # the figures measured before the missing anchor are all there
        assert record["anchor"] > 0 and record["ratio"] == round(record["tinyeval"] / record["anchor"], 1)
        assert record["details"]["janitor"]["injections_scanned"] > 0


def test_grpo_vs_trl_without_trl_records_tinyeval_alone(anchors, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "trl", None)
    import grpo_vs_trl

    runs = anchors.Anchors()
    assert not runs.available("TRL")
    measured = {"step_s": [3.0, 2.0, 2.0], "steps_per_min": 30.0, "cpu_s_per_step_incl_setup": 4.0}
    grpo_vs_trl.write_results(argparse.Namespace(steps=3), {"tinyeval-hf": measured,
                                                            "trl-hf": {"skipped": runs.skipped["TRL"]}},
                              {}, runs, tmp_path / "grpo_vs_trl.json")
    record = json.loads((tmp_path / "grpo_vs_trl.json").read_text())
    schema.check(record, anchors.BenchRecord)
    assert record["tinyeval"] == 30.0 and record["anchor"] is None and record["ratio"] is None
    assert record["skipped"] == {"TRL": "anchor TRL not installed (trl missing): `make bench`; skipped"}
    assert record["runs"]["trl-hf"] == {"skipped": record["skipped"]["TRL"]}
