"""The scheduler on a tiny matrix (base + LoRA-r1 SFT, 2 seeds x 2 learning rates, the tiny random Llama): every
engine and worker count gives the same results.json bytes; a SIGKILLed worker's unit resumes from its checkpoint;
the learning rate is chosen on the dev split only; seeds differ, a seed repeats."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from tinyeval.models import load_config
from tinyeval.report import matrix, runner
from tinyeval.schema import check

SWEEP = {"grpo": (1.25e-3, 5e-3), "sft": (5e-4, 2e-3)}


def config(model, out, **overrides) -> runner.RunConfig:
    settings = dict(model=str(model), preset="cpu-gsm8k", out=out, cells=matrix.select("cpu-gsm8k", methods=["lora-r1-sft"]),
                    tasks=["gsm8k"], eval_limit=2, max_gen_toks=8, backend="hf", seeds=[0, 1], lr_sweep=SWEEP,
                    dev_items=2, train_overrides={"steps": 2, "limit": 8}, workers=1)
    return runner.RunConfig(**{**settings, **overrides})


def run(cfg: runner.RunConfig):
    return runner.run(cfg, matrix.plan_rows(load_config(cfg.model), cfg.cells))


def unit_dir(cfg: runner.RunConfig, seed: int, lr: float):
    return next(u for u in runner.plan_units(cfg)["lora-r1-sft"] if u.seed == seed and u.lr == lr).dir(cfg.out)


@pytest.fixture(scope="module")
def reference(tiny_llama_dir, tmp_path_factory, data_root):
    """The matrix on one worker (this process); every prompt generated for the dev scoring is recorded."""
    from tinyeval import generation

    scored: list[str] = []
    real = generation.generate

    def spy(model, tokenizer, prompts, *args, **kwargs):
        scored.extend(prompts)
        return real(model, tokenizer, prompts, *args, **kwargs)

    cfg = config(tiny_llama_dir, tmp_path_factory.mktemp("workers-1") / "run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generation, "generate", spy)
        results = run(cfg)
    assert [c.status for c in results.cells] == ["done", "done"], [c.error for c in results.cells]
    return cfg, results, scored


def test_lr_is_chosen_on_the_dev_split_only(reference, data_root):
    """Every prompt the selection scored is a carved training row: none from the test set, none trained on."""
    from tinyeval.report.results import ResultsJson
    from tinyeval.report.unit import DevJson
    from tinyeval.train.tasks import get_task

    cfg, results, scored = reference
    check(json.loads((cfg.out / "results.json").read_text()), ResultsJson)
    train = [user for user, _ in get_task("gsm8k").rows("train", None)]
    test = [user for user, _ in get_task("gsm8k").rows("test", None)]
    choice = results.cell("lora-r1-sft").lr_choice
    dev = [train[i] for i in choice["dev_rows"]]
    assert len(scored) == 2 * 2 * 2  # 2 learning rates x 2 seeds x 2 dev items
    for prompt in scored:
        assert not any(user in prompt for user in test), "a test-set item reached the learning-rate selection"
        assert any(user in prompt for user in dev)
    assert min(choice["dev_rows"]) >= choice["train_rows"] and not set(dev) & set(train[:choice["train_rows"]])
    assert [c["lr"] for c in choice["candidates"]] == [5e-4, 2e-3]
    assert all(set(c["per_seed"]) == {"0", "1"} for c in choice["candidates"])
    assert results.cell("lora-r1-sft").lr == choice["chosen"] in (5e-4, 2e-3)
    for unit in runner.plan_units(cfg)["lora-r1-sft"]:
        trained = json.loads((unit.dir(cfg.out) / "train" / "config.json").read_text())
        assert trained["loop"]["limit"] <= choice["train_rows"] and trained["loop"]["lr"] == unit.lr
        assert (unit.dir(cfg.out) / "unit.json").is_file() == (unit.lr == choice["chosen"])  # only the chosen tested
        dev = json.loads((unit.dir(cfg.out) / "dev.json").read_text())
        check(dev, DevJson)
        assert dev["liveness"]["served"] == "hf-merged"  # the model that answered was proven to be the adapter


def test_two_workers_give_the_same_bytes_and_seeds_behave(reference, tiny_llama_dir, tmp_path):
    """--workers 2 (spawned, one thread each) writes the same results.json as one worker in this process; two
    seeds train different adapters, the same seed the same one."""
    from tinyeval.report.runner import RunJson

    one, results, _ = reference
    two = config(tiny_llama_dir, tmp_path / "run", workers=2)
    run(two)
    assert (two.out / "results.json").read_bytes() == (one.out / "results.json").read_bytes()
    report = json.loads((two.out / "run.json").read_text())
    check(report, RunJson)
    assert {u["worker"] for u in report["units"]} == {"cpu0", "cpu1"}

    lr = results.cell("lora-r1-sft").lr
    adapter = "train/adapter/adapter_model.safetensors"
    assert (unit_dir(one, 0, lr) / adapter).read_bytes() == (unit_dir(two, 0, lr) / adapter).read_bytes()
    assert (unit_dir(one, 0, lr) / adapter).read_bytes() != (unit_dir(one, 1, lr) / adapter).read_bytes()
    seeds = results.cell("lora-r1-sft").seeds
    assert [s.seed for s in seeds] == [0, 1] and seeds[0].curve != seeds[1].curve


def test_a_killed_worker_resumes_its_unit_from_the_checkpoint(tiny_llama_dir, tmp_path, data_root):
    """SIGKILL a worker mid-training: its unit is retried from the last checkpoint (never again from scratch), every
    file left has its whole content, and a re-run has nothing left to do."""
    cfg = config(tiny_llama_dir, tmp_path / "run", workers=2, seeds=[0], lr_sweep=None,
                 train_overrides={"steps": 30, "limit": 64, "checkpoint_every": 1})
    target = runner.plan_units(cfg)["lora-r1-sft"][0].dir(cfg.out)
    killed: dict[str, int] = {}

    def kill_mid_training() -> None:
        deadline = time.time() + 600
        while time.time() < deadline and not (target / "unit.json").exists():
            try:
                status = json.loads((target / "status.json").read_text())
            except (OSError, ValueError):
                status = None
            if status and status["state"] == "training" and list((target / "train" / "checkpoints").glob("step-*")):
                os.kill(status["pid"], signal.SIGKILL)
                killed["pid"] = status["pid"]
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_mid_training, daemon=True)
    killer.start()
    results = run(cfg)
    killer.join()
    assert killed, "the unit finished before it could be killed"
    assert [c.status for c in results.cells] == ["done", "done"], [c.error for c in results.cells]
    log = (target / "log.txt").read_text()
    assert log.count("train: from scratch") == 1 and "train: resume from step-" in log
    attempts = [(u["attempt"], u["status"]) for u in json.loads((cfg.out / "run.json").read_text())["units"]
                if u["unit"].startswith("lora")]
    assert attempts == [(1, "failed"), (2, "done")]
    steps = [json.loads(line)["step"] for line in (target / "train" / "records.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 31))
    for path in cfg.out.rglob("*.json"):
        if not path.name.startswith("."):  # an atomic writer's temporary file, cut short by the kill, is hidden
            json.loads(path.read_text())
    before = (cfg.out / "results.json").read_bytes()
    run(cfg)
    assert (cfg.out / "results.json").read_bytes() == before
    assert {u["status"] for u in json.loads((cfg.out / "run.json").read_text())["units"]} == {"cached"}


def test_ray_engine_gives_the_same_bytes(reference, tiny_llama_dir, tmp_path, monkeypatch):
    """--engine ray on a local Ray with two fake GPUs: units are tasks with num_gpus=1, results.json is the same."""
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    one, _, _ = reference
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        cfg = config(tiny_llama_dir, tmp_path / "run", engine="ray", workers=None)
        run(cfg)
    finally:
        ray.shutdown()
    assert (cfg.out / "results.json").read_bytes() == (one.out / "results.json").read_bytes()
    workers = {u["worker"].split()[-1] for u in json.loads((cfg.out / "run.json").read_text())["units"]}
    assert workers == {"gpu0", "gpu1"}


def test_ctrl_c_with_workers_stops_at_a_checkpoint_and_the_rerun_resumes(tiny_llama_dir, tmp_path, data_root):
    """Ctrl-C reaches every process of the terminal's group: the training units stop at a checkpoint (interrupted,
    not done), idle workers stay quiet, the command exits 130; the next run resumes the units."""
    import subprocess
    import sys

    out = tmp_path / "run"
    argv = [sys.executable, "-m", "tinyeval.cli", "train-and-eval", "--model", str(tiny_llama_dir), "--preset", "cpu-gsm8k",
            "--methods", "lora-r1-sft", "--tasks", "gsm8k", "--eval-limit", "2", "--max-gen-toks", "8",
            "--backend", "hf", "--workers", "2", "--out", str(out), "--json"]
    proc = subprocess.Popen([*argv, "--steps", "500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    target = out / "cells" / "lora-r1-sft" / "seed-0" / "lr-0.002"
    deadline = time.time() + 600
    while not list((target / "train" / "checkpoints").glob("step-*")) and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert json.loads((target / "status.json").read_text())["state"] == "interrupted"
    assert json.loads((target / "train" / "summary.json").read_text())["interrupted"]
    steps = json.loads((target / "train" / "summary.json").read_text())["steps"]
    again = subprocess.run([*argv, "--steps", str(steps + 2)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "train: resume from step-" in (target / "log.txt").read_text()
    assert [c["status"] for c in json.loads((out / "results.json").read_text())["cells"]] == ["done", "done"]
