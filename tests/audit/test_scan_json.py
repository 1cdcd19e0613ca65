"""Every JSON file `tinyeval audit` writes (report.json, run.json, `--json` stdout) matches its schema, with JSON
types: a verdict is true/false (once "False", a truthy string), a count an integer (once "3")."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tinyeval import data
from tinyeval.audit.scan.config import load_recipe
from tinyeval.audit.scan.index import item_ids
from tinyeval.audit.scan.report import ReportJSON
from tinyeval.audit.scan.run import RunJSON
from tinyeval.audit.scan.verdict import SummaryJSON
from tinyeval.cli import app
from tinyeval.schema import check

FILLER = "Homarus gammarus is a large crustacean with a body length up to sixty centimetres. " * 4
FIELDS = {"math500": ("problem", "solution"), "gsm8k": ("question", "answer")}


@pytest.mark.parametrize("bench", ["math500", "gsm8k"])
def test_audit_writes_typed_json(bench, tmp_path, data_root):
    q, a = FIELDS[bench]
    rows = data.load(bench, "test").rows
    words = {i: (len(rows[i][q].split()), len(rows[i][a].split())) for i in range(1, 20)}
    # the question alone of an item whose long solution keeps its matched fraction and span under the recipe's
    # thresholds (MATH500): flagged by field coverage only, the case that once wrote "contaminated": "False"
    short = next((i for i, (nq, na) in words.items() if 16 < nq < 26 and na > 4 * nq), 1)
    long = max((i for i in words if i != short), key=lambda i: words[i][1])
    docs = [FILLER + rows[0][q] + "\n" + rows[0][a], FILLER + rows[short][q] + FILLER,  # whole item; question
            FILLER + " ".join(rows[long][a].split()[5:19]) + FILLER, FILLER]  # two stray 13-grams of an answer
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    result = CliRunner().invoke(app, ["audit", bench, "--corpus", str(tmp_path / "c.jsonl"), "--limit", "20",
                                      "--workers", "1", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    stdout = json.loads(result.stdout)
    check(stdout, list[SummaryJSON])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    check(report, ReportJSON)
    check(json.loads((tmp_path / "out" / "run.json").read_text()), RunJSON)
    verdicts = {v["id"]: v["contaminated"] for v in report["items"]}
    ids = item_ids(rows, load_recipe(bench))  # MATH500: the unique_id (test/precalculus/807.json), GSM8K: gsm8k/test/<row>
    assert ids[0] == (rows[0]["unique_id"] if bench == "math500" else "gsm8k/test/0")
    assert verdicts[ids[0]] is True and verdicts[ids[short]] is True  # true, not "True"
    assert next(v for v in report["items"] if v["id"] == ids[0])["hits"][0]["doc_id"] == "0"  # the row's own id
    if bench == "math500":
        by_coverage = next(v for v in report["items"] if v["id"] == ids[short])
        thr = report["recipe"]["thresholds"]
        assert by_coverage["fraction"] < thr["min_fraction"] and by_coverage["span"] < thr["min_span"]
    assert all(isinstance(v, bool) for v in verdicts.values()) and False in verdicts.values()
    assert report["summary"]["contaminated"] == stdout[0]["contaminated"] == sum(verdicts.values())
