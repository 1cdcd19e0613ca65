"""Matrix planning from config alone, and the train-and-eval runner's caching and resume on a tiny model."""

import json

import pytest
from typer.testing import CliRunner

from tinyeval.cli import app
from tinyeval.errors import TinyevalError
from tinyeval.models import load_config
from tinyeval.report import matrix, runner


def test_paper_matrix_for_qwen7b_from_config_only(data_root):
    cells = matrix.select("paper", n_layers_params=7.6e9)
    names = [c.name for c in cells]
    assert names[0] == "base" and "full-grpo" not in names  # full FT is opt-in above 3B
    assert "full-grpo" in [c.name for c in matrix.select("paper", include_full=True, n_layers_params=7.6e9)]
    rows = matrix.plan_rows(load_config("qwen2.5-7b"), cells)
    assert [rows[f"tinylora-{p}-grpo"]["trainable"] for p in (1, 13, 49, 196, 392)] == [1, 13, 49, 196, 392]
    assert rows["tinylora-13-grpo"]["bytes_bf16"] == 26
    assert rows["lora-r1-grpo"]["trainable"] == 2_523_136  # the paper's "LoRA r1 (2.52M)"
    assert rows["lora-xs-r2-grpo"]["trainable"] == 196 * 4


def test_dry_run_rows_and_cli(data_root):
    result = CliRunner().invoke(app, ["train-and-eval", "--model", "qwen2.5-7b", "--preset", "paper", "--dry-run",
                                      "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["cell"]: r for r in json.loads(result.stdout)}
    grpo = rows["tinylora-13-grpo"]
    assert grpo["steps"] == 351  # ceil(3 epochs x 7,473 prompts / 64 per step)
    assert grpo["gen_tokens"] > rows["base"]["gen_tokens"] > 0
    assert rows["base"]["gpu_hours"] < grpo["gpu_hours"]


def test_methods_filter_and_unknown_preset():
    cells = matrix.select("cpu", methods=["lora"])
    assert [c.name for c in cells] == ["base", "lora-r1-grpo", "lora-r1-sft"]
    with pytest.raises(TinyevalError, match="not in preset"):
        matrix.select("cpu", methods=["dora"])
    with pytest.raises(TinyevalError, match="unknown matrix preset"):
        matrix.select("huge")


@pytest.fixture
def tiny_run(tiny_llama_dir, tmp_path, data_root):
    cells = matrix.select("cpu", methods=["tinylora-13-grpo", "lora-r1-sft"])
    cfg = runner.RunConfig(model=str(tiny_llama_dir), preset="cpu", out=tmp_path / "run", cells=cells,
                           tasks=["gsm8k"], eval_limit=2, max_gen_toks=8, backend="hf",
                           train_overrides={"steps": 2, "limit": 8})
    return cfg, matrix.plan_rows(load_config(str(tiny_llama_dir)), cells)


def test_cells_run_then_cached_then_resumed(tiny_run, monkeypatch):
    cfg, sizes = tiny_run
    first = runner.run(cfg, sizes)
    assert [c.status for c in first.cells] == ["done"] * 3, [c.error for c in first.cells]
    assert first.cell("tinylora-13-grpo").curve and first.cell("lora-r1-sft").trainable == sizes["lora-r1-sft"]["trainable"]
    saved = json.loads((cfg.out / "results.json").read_text())
    assert [c["name"] for c in saved["cells"]] == ["base", "tinylora-13-grpo", "lora-r1-sft"]

    # A re-run trains and evaluates nothing: every cell is cached.
    def boom(*a, **k):
        raise AssertionError("a cached cell was recomputed")

    monkeypatch.setattr("tinyeval.eval.run.evaluate", boom)
    monkeypatch.setattr(runner, "_train", boom)
    again = runner.run(cfg, sizes)
    assert [c.scores["gsm8k"].value for c in again.cells] == [c.scores["gsm8k"].value for c in first.cells]
    monkeypatch.undo()

    # A cell that crashed after its checkpoints resumes training instead of restarting it.
    cell_dir = cfg.out / "cells" / "lora-r1-sft"
    (cell_dir / "cell.json").unlink()
    (cell_dir / "train" / "summary.json").unlink()
    resumed = []
    from tinyeval.train import recipes

    real = recipes.run
    monkeypatch.setattr(recipes, "run", lambda *a, **k: resumed.append(k["resume"]) or real(*a, **k))
    cfg.train_overrides = {"steps": 3, "limit": 8}
    runner.run(cfg, sizes)
    assert resumed == [True]
    records = (cell_dir / "train" / "records.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == [1, 2, 3]


def test_failed_cell_is_recorded_and_matrix_goes_on(tiny_run, monkeypatch):
    cfg, sizes = tiny_run
    cfg.cells = cfg.cells[:2]

    def broken(spec, cfg, train_dir):
        raise RuntimeError("simulated OOM")

    monkeypatch.setattr(runner, "_train", broken)
    results = runner.run(cfg, sizes)
    assert [c.status for c in results.cells] == ["done", "failed"]
    assert "simulated OOM" in results.cells[1].error
    assert "simulated OOM" in (cfg.out / "cells" / "tinylora-13-grpo" / "log.txt").read_text()


def test_an_interrupted_cell_is_not_done(tiny_run, monkeypatch, tmp_path):
    """A cell whose training was stopped by Ctrl-C (summary `interrupted`) resumes; a Ctrl-C stops the matrix."""
    from tinyeval.train import recipes

    cfg, _ = tiny_run
    train_dir = tmp_path / "train"
    (train_dir / "adapter").mkdir(parents=True)
    (train_dir / "checkpoints" / "step-000001").mkdir(parents=True)
    (train_dir / "summary.json").write_text(json.dumps({"interrupted": True, "steps": 1}))
    calls = []

    def fake_run(algo, loop, objective, out, resume=False, progress=True):
        calls.append(resume)
        return {"interrupted": len(calls) == 2, "steps": 2}

    monkeypatch.setattr(recipes, "run", fake_run)
    spec = cfg.cells[1]
    assert runner._train(spec, cfg, train_dir) == train_dir / "adapter"
    with pytest.raises(KeyboardInterrupt):
        runner._train(spec, cfg, train_dir)
    assert calls == [True, True]


def test_dry_run_without_data_says_the_size_is_unknown(monkeypatch):
    """No data root and no hub: steps and GPU-hours are unknown (null + a note), never 0."""
    from tinyeval.schema import check

    monkeypatch.delenv("TINYEVAL_DATA", raising=False)  # conftest: HF_HUB_OFFLINE=1
    result = CliRunner().invoke(app, ["train-and-eval", "--model", "qwen2.5-7b", "--preset", "paper", "--dry-run",
                                      "--json", "--methods", "tinylora-13-grpo,lora-r1-sft"])
    assert result.exit_code == 0, result.output
    rows = {r["cell"]: r for r in json.loads(result.stdout)}
    check(list(rows.values()), list[matrix.PlanRow])
    for name in ("tinylora-13-grpo", "lora-r1-sft"):
        assert rows[name]["steps"] is None and rows[name]["gpu_hours"] is None and rows[name]["train_tokens"] is None
        assert "dataset size unknown" in rows[name]["note"]
    assert rows["base"]["gpu_hours"] is None and rows["base"]["steps"] == 0  # base trains nothing; its eval is unknown
    table = CliRunner().invoke(app, ["train-and-eval", "--model", "qwen2.5-7b", "--dry-run",
                                     "--methods", "tinylora-13-grpo"])
    assert table.exit_code == 0 and "unknown" in table.stdout and "dataset size unknown" in table.stdout


def test_dry_run_json_matches_its_schema(data_root):
    from tinyeval.schema import check

    result = CliRunner().invoke(app, ["train-and-eval", "--model", "qwen2.5-7b", "--preset", "cpu", "--dry-run",
                                      "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    check(rows, list[matrix.PlanRow])
    assert all("note" not in r and r["gpu_hours"] is not None for r in rows)


def test_cli_run_writes_typed_json_and_keeps_the_terminal_quiet(tiny_llama_dir, tmp_path, data_root):
    """A real train-and-eval run: results.json, every cell.json and the --json rows match their schemas; stdout is
    the JSON alone and each cell's third-party output is in its log.txt."""
    import subprocess
    import sys

    from tinyeval.report.render import ReportRow
    from tinyeval.report.results import CellJson, ResultsJson
    from tinyeval.schema import check

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tinyeval.cli", "train-and-eval", "--model", str(tiny_llama_dir),
                           "--preset", "cpu", "--methods", "tinylora-13-grpo", "--tasks", "gsm8k", "--eval-limit", "2",
                           "--max-gen-toks", "8", "--steps", "1", "--backend", "hf", "--out", str(out), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check(json.loads(proc.stdout), list[ReportRow])
    assert proc.stderr.strip() == "", proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    check(results, ResultsJson)
    assert [c["status"] for c in results["cells"]] == ["done", "done"]
    for name in ("base", "tinylora-13-grpo"):
        check(json.loads((out / "cells" / name / "cell.json").read_text()), CellJson)
        assert "Running generate_until requests" in (out / "cells" / name / "log.txt").read_text()


def test_board_reads_step_reward_and_eta_from_records(tmp_path):
    from rich.console import Console

    from tinyeval.report.board import Board, CellRow

    train = tmp_path / "cells" / "tinylora-13-grpo" / "train"
    train.mkdir(parents=True)
    records = [{"step": s, "reward_mean": 0.25 * s, "step_s": 10.0} for s in (1, 2)]
    (train / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 3, "rew')
    board = Board("run", [CellRow("base", tmp_path / "cells" / "base" / "train", None),
                          CellRow("tinylora-13-grpo", train, 8)])
    board.update("base", "cached")
    board.update("tinylora-13-grpo", "training")
    console = Console(width=200, record=True)
    console.print(board.table())
    text = console.export_text()
    row = next(line for line in text.splitlines() if "tinylora-13-grpo" in line)
    assert "training" in row and "2/8" in row and "reward 0.5" in row and "1:00 + eval" in row  # 6 steps x 10 s
    assert "cached" in next(line for line in text.splitlines() if "base" in line)
