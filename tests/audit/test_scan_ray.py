"""The ray engine gives the same report as the local one, byte for byte (skipped without Ray)."""

from __future__ import annotations

import json
import os

import pytest

from tinyeval import data
from tinyeval.audit.scan.run import AuditOptions, run_audit

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


def test_ray_actors_are_reused_in_a_session_and_rebuilt_after_shutdown(tmp_path, data_root):
    """Later scans of a session reuse the scanner actors; a new session never gets the dead ones back."""
    from dataclasses import asdict

    from tinyeval.audit.scan import engines
    from tinyeval.audit.scan.config import load_recipe
    from tinyeval.audit.scan.index import build_index
    from tinyeval.audit.scan.plan import plan_tasks
    from tinyeval.audit.scan.verdict import merge

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    rows = data.load("gsm8k", "test").rows[:20]
    for i in range(3):
        (tmp_path / f"s{i}.jsonl").write_text(json.dumps({"text": rows[i]["question"] + " " + rows[i]["answer"]}) + "\n")
    index = build_index(rows, load_recipe("gsm8k"))
    tasks = plan_tasks([str(tmp_path / "*.jsonl")])

    def verdicts(results):
        return [asdict(v) for v in merge(results, index).verdicts]

    local = verdicts(engines.run("local", tasks, index, 1))
    try:
        assert verdicts(engines.run("ray", tasks, index, 2)) == local
        actors = list(engines._RAY_POOL["actors"])
        assert verdicts(engines.run("ray", tasks, index, 2)) == local
        assert engines._RAY_POOL["actors"] == actors  # same session, index and options: kept
        ray.shutdown()
        assert verdicts(engines.run("ray", tasks, index, 2)) == local  # fresh session: fresh actors
        assert engines._RAY_POOL["actors"] != actors
    finally:
        ray.shutdown()
