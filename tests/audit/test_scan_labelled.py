"""The labelled contamination set (small version): recall per edit group and precision at default settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyeval.audit.scan import labelled
from tinyeval.audit.scan.run import AuditOptions, run_audit
from tinyeval.schema import check


@pytest.fixture(scope="module")
def labelled_set(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("labelled")
    return out, labelled.build(out, labelled.LabelledSpec(per_kind=10, negatives_prose=200))


def test_builder_injects_every_kind_and_writes_labels(labelled_set):
    out, labels = labelled_set
    assert set(labels.injected["gsm8k"].values()) == set(labelled.EDITS)
    assert "no_annotations" not in labels.injected["math500"].values()
    assert labels.negatives == 250 and json.loads((out / "labels.json").read_text())["negatives"] == 250
    check(json.loads((out / "labels.json").read_text()), labelled.LabelsJSON)
    text = "".join(Path(s).read_text() for s in labels.shards)
    assert text.count("<<") > 10  # verbatim GSM8K copies keep their calculator annotations
    item = next(i for i, k in labels.injected["gsm8k"].items() if k == "verbatim")
    shard, offset = labels.hosts[item]
    with open(shard, "rb") as f:
        f.seek(offset)
        host = json.loads(f.readline())["text"]
    assert labels.texts[list(labels.injected["gsm8k"]).index(item)] in host


@pytest.mark.parametrize("bench", ["gsm8k", "math500"])
def test_recall_and_precision_meet_the_targets(labelled_set, bench, tmp_path):
    out, labels = labelled_set
    outcome = run_audit(AuditOptions(bench, (str(out / "*.jsonl"),), str(tmp_path / "out"), workers=1))
    score = labelled.evaluate(outcome.report, labels, bench)
    assert score["groups"]["verbatim+reformatted"] >= labelled.TARGETS["verbatim+reformatted"], score
    assert score["groups"]["partial"] >= labelled.TARGETS["partial"], score
    assert score["precision"] >= labelled.TARGETS["precision"], score


def test_score_counts_recall_per_kind_and_false_positives():
    injected = {"a": "verbatim", "b": "verbatim", "c": "half"}
    s = labelled.score({"a", "c", "z"}, injected)
    assert s["recall"] == {"verbatim": 0.5, "half": 1.0} and s["precision"] == round(2 / 3, 4)
    assert s["false_positives"] == ["z"] and s["groups"]["partial"] == 1.0
    s = labelled.score({"a", "c", "z"}, injected, overlap={"z": 40}, min_words=30)
    assert s["precision"] == 1.0 and s["verified_overlaps"] == ["z"] and s["false_positives"] == []


def test_shared_run_is_an_independent_exact_check():
    item = "Zack's locker is half as big as Timothy's locker. How big is it?"
    assert labelled.shared_run(item, ["nothing here", "ZACK'S LOCKER is half as big as timothys"]) == 8
