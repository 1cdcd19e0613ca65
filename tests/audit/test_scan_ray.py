"""The ray engine gives the same report as the local one, byte for byte (skipped without Ray)."""

from __future__ import annotations

import json
import os

import pytest

from tinyeval import data
from tinyeval.audit.run import AuditOptions, run_audit

ray = pytest.importorskip("ray")


def test_ray_and_local_reports_are_identical(tmp_path, data_root):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    rows = data.load("gsm8k", "test").rows
    filler = "The lobster is a crustacean of the eastern Atlantic Ocean. " * 20
    for i in range(4):
        docs = [filler, filler + rows[i]["question"] + " " + rows[i]["answer"], filler]
        (tmp_path / f"s{i}.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    corpus = (str(tmp_path / "*.jsonl"),)
    run_audit(AuditOptions("gsm8k", corpus, str(tmp_path / "local"), workers=2, limit=50))
    try:
        run_audit(AuditOptions("gsm8k", corpus, str(tmp_path / "ray"), engine="ray", workers=2, limit=50))
    finally:
        ray.shutdown()
    local = (tmp_path / "local" / "report.json").read_bytes()
    assert (tmp_path / "ray" / "report.json").read_bytes() == local
    assert json.loads(local)["summary"]["contaminated"] == 4
