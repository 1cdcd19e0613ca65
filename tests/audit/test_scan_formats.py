"""A new corpus format is one module plus one registry line: here a toy `.tsv` reader defined in this file,
registered at run time, scans a corpus end to end (planning, the scan, the report and decontamination)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tinyeval import data
from tinyeval.audit.scan.readers import registry, streams
from tinyeval.audit.scan.readers.types import Doc, Format, ShardTask, Stats

FILLER = "Homarus gammarus is a large crustacean with a body length up to sixty centimetres. " * 3


def tsv_docs(task: ShardTask, stats: Stats) -> Iterator[Doc]:
    """Tab-separated rows under a header line; the document is the `--text-field` column."""
    header: list[str] | None = None
    for pos, line in streams.lines(task, stats):
        cells = line.decode("utf-8").rstrip("\n").split("\t")
        if header is None:
            header = cells
            continue
        row = dict(zip(header, cells))
        if task.text_field in row:
            yield Doc(pos, row[task.text_field].replace("\\n", "\n"), row)
        else:
            stats.skipped["missing_text"] += 1


@pytest.fixture
def tsv_format():
    fmt = registry.register(Format("tsv", tsv_docs, (".tsv",)))  # the one registry line
    yield fmt
    registry.FORMATS.pop("tsv")


def test_a_format_registered_from_outside_scans_end_to_end(tsv_format, tmp_path, data_root):
    from tinyeval.audit.scan.run import AuditOptions, run_audit

    rows = data.load("gsm8k", "test").rows
    item = (rows[2]["question"] + "\n" + rows[2]["answer"]).replace("\n", "\\n")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.tsv").write_text("id\ttext\n1\t" + FILLER + "\n2\t" + FILLER + item + "\n")
    (corpus / "b.tsv").write_text("id\ttext\n3\t" + FILLER + "\n")
    assert registry.format_of(str(corpus / "a.tsv")) == "tsv" and ".tsv" in registry.suffixes()
    outcome = run_audit(AuditOptions("gsm8k", (str(corpus),), str(tmp_path / "out"), workers=1, limit=10,
                                     decontaminate=str(tmp_path / "clean")))
    flagged = [v["id"] for v in outcome.report["items"] if v["contaminated"]]
    assert flagged == ["gsm8k/test/2"] and outcome.report["corpus"]["documents"] == 3
    assert outcome.report["items"][0]["hits"][0]["doc"] > 0  # located by the row's byte offset
    kept = [json.loads(x) for f in sorted((tmp_path / "clean").glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert sorted(r["id"] for r in kept) == ["1", "3"]  # the contaminated row is dropped, the others kept whole
    assert sorted(p.name for p in (tmp_path / "clean").iterdir()) == ["00000-a.jsonl", "00001-b.jsonl"]
