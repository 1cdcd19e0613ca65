"""Audit report usability: each hit names the corpus document's own id beside its offset (every reader path),
`--id-field` chooses the field, a document without one is null; MATH items are named by their unique_id."""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from tinyeval import data
from tinyeval.audit.scan.index import build_index
from tinyeval.audit.scan.plan import plan_tasks
from tinyeval.audit.scan.readers.types import record_id
from tinyeval.audit.scan.report import ReportJSON
from tinyeval.audit.scan.run import AuditOptions, run_audit
from tinyeval.audit.scan.shard import scan_task
from tinyeval.audit.scan.verdict import merge
from tinyeval.cli import app
from tinyeval.schema import check

FILLER = "Homarus gammarus is a large crustacean with a body length up to sixty centimetres. " * 3


def item(i: int) -> str:
    row = data.load("gsm8k", "test").rows[i]
    return row["question"] + "\n" + row["answer"]


def hit_ids(report: dict) -> dict[str, list]:
    """Item id -> the doc_id of each of its hits."""
    return {v["id"]: [h["doc_id"] for h in v["hits"]] for v in report["items"] if v["contaminated"]}


def test_record_id_picks_the_chosen_field_or_the_first_of_id_url_doc_id():
    assert record_id({"url": "http://a", "doc_id": 7}, None) == "http://a"  # id absent: url comes next
    assert record_id({"id": None, "doc_id": 7}, None) == "7"  # a null id counts as absent; numbers as JSON
    assert record_id({"id": "x", "meta": {"url": "http://b"}}, "meta.url") == "http://b"  # a.b reaches inside
    assert record_id({"id": "x"}, "name") is None and record_id({"text": "t"}, None) is None and \
        record_id(None, None) is None  # missing: null, never an error


def test_hits_name_the_documents_own_id(tmp_path, data_root):
    lines = [{"text": FILLER, "id": "doc-a"}, {"text": FILLER + item(0), "id": "doc-b", "url": "http://b"},
             {"text": FILLER + item(1), "url": "http://c"}, {"text": FILLER + item(2)},  # url; nothing: null
             {"text": FILLER + item(3), "id": 42}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = run_audit(AuditOptions("gsm8k", (str(tmp_path / "c.jsonl"),), str(tmp_path / "out"), workers=1, limit=5))
    check(json.loads((tmp_path / "out" / "report.json").read_text()), ReportJSON)
    assert hit_ids(out.report) == {"gsm8k/test/0": ["doc-b"], "gsm8k/test/1": ["http://c"],
                                   "gsm8k/test/2": [None], "gsm8k/test/3": ["42"]}
    hit = next(v for v in out.report["items"] if v["id"] == "gsm8k/test/0")["hits"][0]
    assert hit["doc"] > 0  # the byte offset stays beside the id
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"c.jsonl@{hit['doc']} (doc-b)" in md
    # --id-field chooses another field; a row without it is null, not an error
    CliRunner().invoke(app, ["audit", "gsm8k", "--corpus", str(tmp_path / "c.jsonl"), "--limit", "5", "--workers",
                             "1", "--id-field", "url", "--out", str(tmp_path / "by-url"), "--json"])
    chosen = json.loads((tmp_path / "by-url" / "report.json").read_text())
    assert hit_ids(chosen) == {"gsm8k/test/0": ["http://b"], "gsm8k/test/1": ["http://c"], "gsm8k/test/2": [None],
                               "gsm8k/test/3": [None]}


@pytest.mark.parametrize("path", ["fast", "damaged", "gz", "parquet", "long", "txt"])
def test_every_reader_path_names_hit_documents(path, tmp_path, data_root):
    """The compiled JSONL decoder, a block with a damaged line (parsed line by line), gzip, parquet rows, a
    line longer than a block (streamed), and text files (no rows: null)."""
    rows = [{"text": FILLER, "id": "a"}, {"text": FILLER + item(0) + FILLER, "id": "b"}]
    body = "".join(json.dumps(r) + "\n" for r in rows)
    if path in ("fast", "long"):
        (tmp_path / "c.jsonl").write_text(body)
    elif path == "damaged":
        (tmp_path / "c.jsonl").write_text('{"text": "broken\n' + body)
    elif path == "gz":
        (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(body.encode()))
    elif path == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    else:
        (tmp_path / "c.txt").write_text(FILLER + "\n\n" + FILLER + item(0) + "\n")
    recipe_rows = data.load("gsm8k", "test").rows[:3]
    from tinyeval.audit.scan.config import load_recipe

    index = build_index(recipe_rows, load_recipe("gsm8k"))
    small = {"batch_bytes": 200, "window_chars": 600} if path == "long" else {}  # every line is a long one
    verdicts = merge([scan_task(t, index, **small) for t in plan_tasks([str(tmp_path)])], index).verdicts
    (hit,) = [h for v in verdicts if v.id == "gsm8k/test/0" for h in v.hits]
    assert hit.doc_id == (None if path == "txt" else "b"), path


def test_math_items_are_named_by_their_unique_id(tmp_path, data_root):
    full = data.load("math", "test").rows
    in_500 = {r["problem"]: r["unique_id"] for r in data.load("math500", "test").rows}
    first = next(i for i, r in enumerate(full) if r["problem"] in in_500)  # a MATH500 problem (row 4)
    other = next(i for i, r in enumerate(full) if r["problem"] not in in_500)
    docs = [FILLER + full[i]["problem"] + "\n" + full[i]["solution"] + FILLER for i in (first, other)]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d, "id": f"d{k}"}) + "\n"
                                              for k, d in enumerate(docs)))
    result = CliRunner().invoke(app, ["audit", "math", "--corpus", str(tmp_path / "c.jsonl"), "--limit",
                                      str(max(first, other) + 1), "--workers", "1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    check(report, ReportJSON)
    assert report["recipe"]["dataset"] == "math" and report["recipe"]["id_field"] == "unique_id"
    assert hit_ids(report) == {in_500[full[first]["problem"]]: ["d0"], f"math/test/{other}": ["d1"]}
    assert in_500[full[first]["problem"]].startswith("test/") and in_500[full[first]["problem"]] in \
        (tmp_path / "out" / "report.md").read_text()
