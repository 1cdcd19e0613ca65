"""`tinyeval perturb`: writes verified twins in GSM8K's format, reports coverage, refuses MATH500 cleanly."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tinyeval.audit.perturb.chain import final_answer, verify_chain
from tinyeval.audit.perturb.twins import PerturbSummary
from tinyeval.cli import app
from tinyeval.data import read_jsonl
from tinyeval.schema import check


def test_perturb_command_writes_twins_and_coverage(tmp_path, data_root):
    out = tmp_path / "twins.jsonl"
    result = CliRunner().invoke(app, ["perturb", "gsm8k", "--seed", "1", "--n", "7", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)[0]
    check(summary, PerturbSummary)
    assert summary["total"] == 1319 and summary["written"] == 7 and summary["coverage"] > 0.7
    rows = read_jsonl(out)
    assert len(rows) == 7 and all(set(r) == {"question", "answer"} for r in rows)
    for row in rows:
        verify_chain(row["answer"])
        final_answer(row["answer"])


def test_perturb_command_refuses_math500(tmp_path, data_root):
    result = CliRunner().invoke(app, ["perturb", "math500", "--out", str(tmp_path / "m.jsonl")])
    assert result.exit_code != 0 and not (tmp_path / "m.jsonl").exists()
