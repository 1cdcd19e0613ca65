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
