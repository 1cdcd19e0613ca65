"""`tinyeval audit`: reports, --fail-above, --decontaminate, clear errors (GSM8K from the data root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tinyeval import data
from tinyeval.cli import app

runner = CliRunner()
FILLER = "Homarus gammarus is a large crustacean with a body length up to sixty centimetres. " * 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_root):
    """Three shards: GSM8K items 0 and 3 copied verbatim, item 1's question only, the rest clean."""
    rows = data.load("gsm8k", "test").rows
    docs = [FILLER, FILLER + rows[0]["question"] + "\n" + rows[0]["answer"], FILLER + rows[1]["question"] + FILLER,
            rows[3]["question"] + " " + rows[3]["answer"], FILLER]
    root = tmp_path_factory.mktemp("corpus")
    for i in range(3):
        with open(root / f"shard{i}.jsonl", "w") as f:
            for j, d in enumerate(docs):
                if j % 3 == i:
                    f.write(json.dumps({"text": d, "id": j}) + "\n")
    return root


def audit(*args: str):
    return runner.invoke(app, ["audit", "gsm8k", "--limit", "30", "--workers", "1", *args])


def test_reports_and_fail_above(corpus, tmp_path):
    result = audit("--corpus", str(corpus / "*.jsonl"), "--out", str(tmp_path / "out"), "--fail-above", "5")
    assert result.exit_code == 1, result.output  # 3 of 30 items = 10% > 5%
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    flagged = {v["id"]: v for v in report["items"] if v["contaminated"]}
    assert set(flagged) == {"gsm8k/test/0", "gsm8k/test/1", "gsm8k/test/3"}
    assert flagged["gsm8k/test/0"]["fraction"] == 1.0 and flagged["gsm8k/test/1"]["fraction"] < 0.6
    assert report["summary"]["contaminated_pct"] == 10.0 and report["corpus"]["documents"] == 5
    assert "gsm8k/test/0" in (tmp_path / "out" / "report.md").read_text()
    assert audit("--corpus", str(corpus), "--out", str(tmp_path / "o2"), "--fail-above", "20").exit_code == 0


def test_decontaminate_removes_contaminated_documents(corpus, tmp_path):
    clean = tmp_path / "clean"
    result = audit("--corpus", str(corpus), "--out", str(tmp_path / "out"), "--decontaminate", str(clean))
    assert result.exit_code == 0, result.output
    kept = [json.loads(x) for f in sorted(clean.glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert sorted(r["id"] for r in kept) == [0, 4]
    rescan = audit("--corpus", str(clean), "--out", str(tmp_path / "again"), "--json")
    assert json.loads(rescan.stdout)[0]["contaminated"] == 0


def test_decontaminate_spans_cuts_gpt3_style(corpus, tmp_path):
    clean = tmp_path / "clean"
    result = audit("--corpus", str(corpus), "--out", str(tmp_path / "out"), "--decontaminate", str(clean),
                   "--decontaminate-mode", "spans")
    assert result.exit_code == 0, result.output
    kept = [json.loads(x) for f in sorted(clean.glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert sorted({r["id"] for r in kept}) == [0, 1, 2, 4]  # doc 3 is all item: nothing long enough remains
    assert all("Natalia" not in r["text"] for r in kept)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["decontaminate"]["cut"] + run["decontaminate"]["removed"] == 3


def test_no_corpus_scans_the_sample_corpora_and_says_so(tmp_path, data_root):
    """`tinyeval audit gsm8k` alone runs on the data root's sample corpora, labelled as a sample everywhere."""
    proc = subprocess.run([sys.executable, "-m", "tinyeval.cli", "audit", "gsm8k", "--limit", "50", "--workers", "1",
                           "--out", str(tmp_path)], check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    shown = " ".join(proc.stdout.split())  # rich wraps table titles to the table's width
    assert "on SAMPLE corpora" in shown and "--corpus" in shown and "hf://" in shown
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["corpus"]["sample"] is True and report["corpus"]["documents"] > 1000
    assert all(src.startswith(str(data_root / "corpora")) for src in report["corpus"]["sources"])
    assert "**Sample corpus.**" in (tmp_path / "report.md").read_text()


def test_no_corpus_and_no_sample_is_one_line_exit_2(tmp_path):
    env = {**os.environ, "TINYEVAL_DATA": str(tmp_path)}  # a data root without corpora/
    proc = subprocess.run([sys.executable, "-m", "tinyeval.cli", "audit", "gsm8k", "--out", str(tmp_path / "o")],
                          check=False, capture_output=True, text=True, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "no corpus given" in proc.stderr and "Traceback" not in proc.stderr
    assert "--corpus" in proc.stderr and "hf://" in proc.stderr and ".jsonl" in proc.stderr


@pytest.mark.parametrize("kw,needle", [
    ({"bench": "gsm9k", "corpus": ("x.jsonl",)}, "no audit recipe 'gsm9k'"),
    ({"corpus": ("/nonexistent/*.jsonl",)}, "matches no files"),
    ({"engine": "spark"}, "unknown engine"),
    ({"workers": 0}, "--workers must be >= 1"),
])
def test_user_mistakes_raise_clear_errors(kw, needle, tmp_path):
    from tinyeval.audit.scan.run import AuditOptions, run_audit
    from tinyeval.errors import TinyevalError

    with pytest.raises(TinyevalError, match=needle):
        run_audit(AuditOptions(**{"bench": "gsm8k", "corpus": (str(tmp_path),), "out": str(tmp_path / "o"), **kw}))


def test_model_probes_on_an_unsupported_benchmark_fail_before_the_scan(tmp_path):
    from tinyeval.errors import TinyevalError

    result = runner.invoke(app, ["audit", "boolq", "--corpus", str(tmp_path), "--model", "smollm2-135m",
                                 "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, TinyevalError) and "probes support" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_add_section_extends_both_reports(corpus, tmp_path):
    from tinyeval.audit.scan import report

    assert audit("--corpus", str(corpus), "--out", str(tmp_path)).exit_code == 0
    report.add_section(tmp_path, "extra", {"verdict": "none", "auroc": 0.51})  # a section it has no renderer for
    assert json.loads((tmp_path / "report.json").read_text())["sections"]["extra"]["auroc"] == 0.51
    assert "## extra" in (tmp_path / "report.md").read_text()


def test_model_probes_become_one_rendered_section(corpus, tmp_path, monkeypatch):
    """`--model` runs the probes inside the audit call; report.md renders their section once, from the data."""
    from tinyeval.audit.probes import run as probes_run
    from tinyeval.audit.probes.config import ProbeConfig

    section = {"config": {"benchmark": "gsm8k", "model": "tiny"}, "backend": "hf", "coverage": None, "seconds": 0.1,
               "rows": [{"probe": "prefix", "signal": "prefix exact match", "value": 0.0, "ci95": "[0.000, 0.000]",
                         "n": 4, "suggests": "no evidence"}], "signals": []}
    seen = []
    monkeypatch.setattr(probes_run, "run_probes", lambda config: seen.append(config) or section)
    result = audit("--corpus", str(corpus), "--out", str(tmp_path), "--model", "smollm2-135m")
    assert result.exit_code == 0, result.output
    assert seen == [ProbeConfig(model="smollm2-135m", benchmark="gsm8k")]
    assert json.loads((tmp_path / "report.json").read_text())["sections"]["probes"] == section
    md = (tmp_path / "report.md").read_text()
    assert md.count("## Leakage probes: gsm8k on tiny") == 1 and "| prefix | prefix exact match |" in md
    assert "leakage probes: gsm8k on smollm2-135m" in result.output
