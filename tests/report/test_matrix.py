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
    controls = [c for c in cells if c.reward]  # the random-reward and format-only controls of TinyLoRA-13
    assert [c.name for c in controls] == ["tinylora-13-grpo-random", "tinylora-13-grpo-format"]
    assert all(rows[c.name] == rows["tinylora-13-grpo"] for c in controls)  # same adapter and budget
    assert "gsm8k_twins" in matrix.PRESETS["paper"].tasks


def test_dry_run_rows_and_cli(data_root):
    result = CliRunner().invoke(app, ["train-and-eval", "--model", "qwen2.5-7b", "--preset", "paper", "--dry-run",
                                      "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["cell"]: r for r in json.loads(result.stdout)["cells"]}
    grpo = rows["tinylora-13-grpo"]
    assert grpo["steps"] == 351  # ceil(3 epochs x 7,473 prompts / 64 per step)
    assert grpo["gen_tokens"] > rows["base"]["gen_tokens"] > 0
    assert rows["base"]["gpu_hours"] < grpo["gpu_hours"]
    calibration = 8 * 4 * 300  # the random control's p: 8 prompts x group 4 x ~300 tokens before step 1, per unit
    random = rows["tinylora-13-grpo-random"]
    assert random["gen_tokens"] == grpo["gen_tokens"] + calibration * random["units"]
    assert rows["tinylora-13-grpo-format"]["gen_tokens"] == grpo["gen_tokens"]


def test_methods_filter_and_unknown_preset():
    cells = matrix.select("cpu-gsm8k", methods=["lora"])
    assert [c.name for c in cells] == ["base", "lora-r1-grpo", "lora-r1-sft"]
    with pytest.raises(TinyevalError, match="not in preset"):
        matrix.select("cpu-gsm8k", methods=["dora"])
    with pytest.raises(TinyevalError, match="unknown matrix preset"):
        matrix.select("huge")


@pytest.fixture
def tiny_run(tiny_llama_dir, tmp_path, data_root):
    cells = matrix.select("cpu-gsm8k", methods=["tinylora-13-grpo", "lora-r1-sft"])
    cfg = runner.RunConfig(model=str(tiny_llama_dir), preset="cpu-gsm8k", out=tmp_path / "run", cells=cells,
                           tasks=["gsm8k"], eval_limit=2, max_gen_toks=8, backend="hf",
                           train_overrides={"steps": 2, "limit": 8}, workers=1)
    return cfg, matrix.plan_rows(load_config(str(tiny_llama_dir)), cells)


def _unit_dir(cfg, cell: str):
    """The one unit of `cell` (one seed, no sweep)."""
    (unit,) = runner.plan_units(cfg)[cell]
    return unit.dir(cfg.out)


def test_cells_run_then_cached_then_resumed(tiny_run, monkeypatch):
    from tinyeval.train import recipes

    cfg, sizes = tiny_run
    first = runner.run(cfg, sizes)
    assert [c.status for c in first.cells] == ["done"] * 3, [c.error for c in first.cells]
    assert first.cell("tinylora-13-grpo").seeds[0].curve
    assert first.cell("lora-r1-sft").trainable == sizes["lora-r1-sft"]["trainable"]
    saved = json.loads((cfg.out / "results.json").read_text())
    assert [c["name"] for c in saved["cells"]] == ["base", "tinylora-13-grpo", "lora-r1-sft"]

    # A re-run trains and evaluates nothing: every unit is cached.
    def boom(*a, **k):
        raise AssertionError("a cached unit was recomputed")

    monkeypatch.setattr("tinyeval.eval.run.evaluate", boom)
    monkeypatch.setattr(recipes, "run", boom)
    again = runner.run(cfg, sizes)
    assert [c.seeds[0].scores["gsm8k"].value for c in again.cells] == \
        [c.seeds[0].scores["gsm8k"].value for c in first.cells]
    monkeypatch.undo()

    # A unit that crashed after its checkpoints resumes training instead of restarting it.
    unit_dir = _unit_dir(cfg, "lora-r1-sft")
    (unit_dir / "unit.json").unlink()
    (unit_dir / "train" / "summary.json").unlink()
    resumed = []
    real = recipes.run
    monkeypatch.setattr(recipes, "run", lambda *a, **k: resumed.append(k["resume"]) or real(*a, **k))
    cfg.train_overrides = {"steps": 3, "limit": 8}
    runner.run(cfg, sizes)
    assert resumed == [True]
    records = (unit_dir / "train" / "records.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == [1, 2, 3]


def test_failed_cell_is_recorded_and_matrix_goes_on(tiny_run, monkeypatch):
    """A failing unit is retried once, then recorded as failed; the other units go on."""
    from tinyeval.train import recipes

    cfg, sizes = tiny_run
    cfg.cells = cfg.cells[:2]
    calls = []

    def broken(*a, **k):
        calls.append(1)
        raise RuntimeError("simulated OOM")

    monkeypatch.setattr(recipes, "run", broken)
    results = runner.run(cfg, sizes)
    assert [c.status for c in results.cells] == ["done", "failed"]
    assert "simulated OOM" in results.cells[1].error and len(calls) == 2
    assert "simulated OOM" in (_unit_dir(cfg, "tinylora-13-grpo") / "log.txt").read_text()
    attempts = [(u["attempt"], u["status"]) for u in json.loads((cfg.out / "run.json").read_text())["units"]
                if u["unit"].startswith("tinylora")]
    assert attempts == [(1, "failed"), (2, "failed")]


def test_an_interrupted_cell_is_not_done(tiny_run, monkeypatch, tmp_path):
    """A unit whose training was stopped by Ctrl-C (summary `interrupted`) resumes; a Ctrl-C stops the matrix."""
    from tinyeval.report import unit as units
    from tinyeval.train import recipes

    cfg, _ = tiny_run
    unit_dir = tmp_path / "unit"
    train_dir = unit_dir / "train"
    (train_dir / "adapter").mkdir(parents=True)
    (train_dir / "checkpoints" / "step-000001").mkdir(parents=True)
    (train_dir / "summary.json").write_text(json.dumps({"interrupted": True, "steps": 1}))
    calls = []

    def fake_run(algo, loop, objective, out, resume=False, progress=True):
        calls.append(resume)
        return {"interrupted": len(calls) > 1, "steps": 2, "seconds": 1.0}

    monkeypatch.setattr(recipes, "run", fake_run)
    job = units.Job(units.Unit(cfg.cells[1], 0, 5e-3), ("train",), cfg.settings())
    units._train(job, unit_dir)
    with pytest.raises(KeyboardInterrupt):
        units._train(job, unit_dir)
    assert calls == [True, True]
    assert units.run_job(job, "cpu0").status == "interrupted"  # a worker reports it; the unit is not done
    assert json.loads((job.unit.dir(cfg.out) / "status.json").read_text())["state"] == "interrupted"
    assert not units.finished(job.unit, cfg.out, ("train",))


def test_dry_run_without_data_says_the_size_is_unknown(monkeypatch):
    """No data root and no hub: steps and GPU-hours are unknown (null + a note), never 0."""
    from tinyeval.schema import check

    monkeypatch.delenv("TINYEVAL_DATA", raising=False)  # conftest: HF_HUB_OFFLINE=1
    result = CliRunner().invoke(app, ["train-and-eval", "--model", "qwen2.5-7b", "--preset", "paper", "--dry-run",
                                      "--json", "--methods", "tinylora-13-grpo,lora-r1-sft"])
    assert result.exit_code == 0, result.output
    rows = {r["cell"]: r for r in json.loads(result.stdout)["cells"]}
    check(json.loads(result.stdout), matrix.PlanJson)
    for name in ("tinylora-13-grpo", "lora-r1-sft"):
        assert rows[name]["steps"] is None and rows[name]["gpu_hours"] is None and rows[name]["train_tokens"] is None
        assert "dataset size unknown" in rows[name]["note"]
    assert rows["base"]["gpu_hours"] is None and rows["base"]["steps"] == 0  # base trains nothing; its eval is unknown
    table = CliRunner().invoke(app, ["train-and-eval", "--model", "qwen2.5-7b", "--dry-run",
                                     "--methods", "tinylora-13-grpo"])
    assert table.exit_code == 0 and "unknown" in table.stdout and "dataset size unknown" in table.stdout


def test_dry_run_json_matches_its_schema(data_root):
    from tinyeval.schema import check

    result = CliRunner().invoke(app, ["train-and-eval", "--model", "qwen2.5-7b", "--preset", "cpu-gsm8k", "--dry-run",
                                      "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    check(rows, matrix.PlanJson)
    assert all("note" not in r and r["gpu_hours"] is not None for r in rows["cells"])


def test_cli_run_writes_typed_json_and_keeps_the_terminal_quiet(tiny_llama_dir, tmp_path, data_root):
    """A real train-and-eval run: results.json, every cell.json and the --json rows match their schemas; stdout is
    the JSON alone and each cell's third-party output is in its log.txt."""
    import subprocess
    import sys

    from tinyeval.report.render import ReportRow
    from tinyeval.report.results import ResultsJson
    from tinyeval.report.runner import RunJson
    from tinyeval.report.unit import StatusJson, UnitJson
    from tinyeval.schema import check

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tinyeval.cli", "train-and-eval", "--model", str(tiny_llama_dir),
                           "--preset", "cpu-gsm8k", "--methods", "tinylora-13-grpo", "--tasks", "gsm8k", "--eval-limit", "2",
                           "--max-gen-toks", "8", "--steps", "1", "--backend", "hf", "--out", str(out), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check(json.loads(proc.stdout), list[ReportRow])
    assert proc.stderr.strip() == "", proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    check(results, ResultsJson)
    check(json.loads((out / "run.json").read_text()), RunJson)
    assert [c["status"] for c in results["cells"]] == ["done", "done"]
    for unit_dir in (out / "cells" / "base" / "seed-0" / "lr-none", out / "cells" / "tinylora-13-grpo" / "seed-0" /
                     "lr-0.02"):
        check(json.loads((unit_dir / "unit.json").read_text()), UnitJson)
        check(json.loads((unit_dir / "status.json").read_text()), StatusJson)
        assert "Running generate_until requests" in (unit_dir / "log.txt").read_text()


def test_board_reads_state_worker_step_reward_and_eta(tmp_path):
    """The live table: a running unit's state and worker from its status.json (this run's only), step, reward and
    ETA from its records; queued, cached and failed units; the counts."""
    from rich.console import Console

    from tinyeval.report.board import Board, UnitRow

    unit = tmp_path / "cells" / "tinylora-13-grpo" / "seed-0" / "lr-0.005"
    (unit / "train").mkdir(parents=True)
    records = [{"step": s, "reward_mean": 0.25 * s, "step_s": 10.0} for s in (1, 2)]
    (unit / "train" / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 3, "rew')
    status = {"state": "training", "run": "r2", "worker": "cpu1", "attempt": 1, "pid": 1, "since": 1.0, "error": None}
    (unit / "status.json").write_text(json.dumps(status))
    stale = tmp_path / "cells" / "lora-r1-sft" / "seed-0" / "lr-0.002"
    stale.mkdir(parents=True)
    (stale / "status.json").write_text(json.dumps({**status, "run": "r1"}))  # left by an earlier run
    board = Board("run", [UnitRow("base/seed-0/lr-none", tmp_path / "cells" / "base", None),
                          UnitRow("tinylora-13-grpo/seed-0/lr-0.005", unit, 8),
                          UnitRow("lora-r1-sft/seed-0/lr-0.002", stale, 16),
                          UnitRow("lora-r1-grpo/seed-0/lr-0.005", tmp_path / "none", 8)], run_id="r2")
    board.finished("base/seed-0/lr-none", "cached")
    board.finished("lora-r1-grpo/seed-0/lr-0.005", "failed", 3.0)
    console = Console(width=200, record=True)
    console.print(board.table())
    text = console.export_text()

    def line(name: str) -> str:
        return next(row for row in text.splitlines() if name in row)

    row = line("tinylora-13-grpo")
    assert "training" in row and "cpu1" in row and "2/8" in row and "reward 0.5" in row and "1:00 + eval" in row
    assert "cached" in line("base") and "queued" in line("lora-r1-sft") and "failed" in line("lora-r1-grpo")
    assert "1 queued · 1 running · 1 done · 1 failed" in text


def test_dry_run_lists_units_gpu_hours_and_wall_clock(data_root):
    """The paper's protocol on Qwen2.5-7B: 7 learning rates x 3 seeds per trained cell; wall-clock on --gpus N."""
    from tinyeval.schema import check

    def plan(*extra):
        result = CliRunner().invoke(app, ["train-and-eval", "--model", "qwen2.5-7b", "--preset", "paper", "--dry-run",
                                          *extra])
        assert result.exit_code == 0, result.output
        return result.stdout

    on_8 = json.loads(plan("--json", "--gpus", "8"))
    check(on_8, matrix.PlanJson)
    total = on_8["total"]
    assert total["units"] == 1 + 12 * 7 * 3 and total["seeds"] == 3 and len(total["learning_rates"]["grpo"]) == 7
    assert {r["units"] for r in on_8["cells"] if r["algo"] != "–"} == {21}
    assert total["gpu_hours"] / 8 <= total["wall_hours"] <= total["gpu_hours"] / 7  # 253 units pack 8 GPUs well
    on_1 = json.loads(plan("--json", "--gpus", "1"))["total"]
    assert on_1["wall_hours"] == pytest.approx(on_1["gpu_hours"], abs=0.2)
    single = json.loads(plan("--json", "--seeds", "1", "--lr-sweep", "off"))
    assert single["total"]["units"] == 13 and single["total"]["gpu_hours"] < total["gpu_hours"] / 15
    text = " ".join(plan("--gpus", "8").split())
    assert "253 units" in text and "hours wall-clock on 8 GPU(s)" in text


def test_lr_sweep_option():
    assert matrix.resolve_sweep("cpu-gsm8k", None) is None and matrix.resolve_sweep("paper", "off") is None
    assert matrix.resolve_sweep("cpu-gsm8k", "preset") == {"grpo": (1.25e-3, 5e-3), "sft": (5e-4, 2e-3)}
    assert matrix.resolve_sweep("paper", "1e-4,1e-5") == {"grpo": (1e-5, 1e-4), "sft": (1e-5, 1e-4)}
    assert matrix.resolve_sweep("paper", "1e-5") is None  # one value: nothing to choose
    for bad in ("fast", "1e-5,-1"):
        with pytest.raises(TinyevalError, match="--lr-sweep"):
            matrix.resolve_sweep("paper", bad)
