"""Recipes end to end on the tiny Llama: every run artifact against its schema, a `--resume` that loads no pickle,
torn records, Ctrl-C from the CLI, refusal before the run directory exists, and adapter options reaching the layer."""

from __future__ import annotations

import json
import os
import pickle
import shlex
import signal
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tinyeval import schema
from tinyeval.cli import app
from tinyeval.errors import TinyevalError
from tinyeval.train.recipes import RECIPES, build, config_schema, run

GRPO = dict(task="parity", method="lora", rank=2, steps=2, prompts_per_step=2, group_size=4, max_new_tokens=8,
            lr=5e-2, checkpoint_every=1, engine="hf", micro_batch=3, dtype="float32", threads=1)
SFT = dict(task="gsm8k", method="lora", rank=1, steps=2, limit=12, prompts_per_step=3, micro_batch=2, lr=1e-2,
           max_seq_tokens=256, eval_examples=2, eval_every=1, checkpoint_every=1, dtype="float32", threads=1)


def _grpo(model_dir, **kw):
    return build("grpo", None, model=str(model_dir), **{**GRPO, **kw})


@pytest.mark.parametrize(("algo", "options"), [("grpo", dict(GRPO, kl_coef=0.01)), ("sft", SFT)])
def test_run_artifacts_match_their_schemas(tiny_llama_dir, parity_task, data_root, tmp_path, algo, options):
    out = tmp_path / algo
    summary = run(algo, *build(algo, None, model=str(tiny_llama_dir), **options), out, progress=False)
    recipe = RECIPES[algo]
    schema.check(json.loads((out / "config.json").read_text()), config_schema(algo))
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert schema.check_lines(rows, recipe.record, "records") == 2
    saved = json.loads((out / "summary.json").read_text())
    schema.check(saved, recipe.summary)
    schema.check(saved["final"], recipe.record)
    assert saved["steps"] == saved["total_steps"] == summary["steps"] == 2 and saved["interrupted"] is False
    assert ("kl" in rows[0]) if algo == "grpo" else ("heldout_loss" in rows[0])  # optional keys were produced
    kind = "cuda_max_allocated" if torch.cuda.is_available() else "rss"  # the run trains where the GPU is
    assert rows[0]["peak_mem_kind"] == saved["peak_mem_kind"] == kind
    assert 0 < rows[0]["peak_mem_bytes"] <= rows[1]["peak_mem_bytes"] <= saved["peak_mem_bytes"]  # high-water marks
    assert saved["startup"]["first_step_s"] == rows[0]["step_s"] and saved["startup"]["load_s"] > 0
    with pytest.raises(schema.SchemaError):  # the schemas have teeth: a stringified count is refused
        schema.check({**saved, "steps": "2"}, recipe.summary)


def _evil_pickle(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {shlex.quote(str(marker))}",)

    return pickle.dumps(Evil())


@pytest.mark.parametrize("planted", ["tensors.safetensors", "state.json", "step-000001.pt"])
def test_resume_refuses_a_malicious_pickle_without_running_it(tiny_llama_dir, parity_task, tmp_path, planted):
    probe = tmp_path / "probe-ran"
    pickle.loads(_evil_pickle(probe))  # the payload really runs a command when unpickled...
    assert probe.is_file()
    out, marker = tmp_path / "run", tmp_path / "pwned"
    run("grpo", *_grpo(tiny_llama_dir, steps=1), out, progress=False)
    checkpoint = out / "checkpoints" / "step-000001"
    if planted.endswith(".pt"):  # a pickled checkpoint as older versions wrote them
        for f in checkpoint.iterdir():
            f.unlink()
        checkpoint.rmdir()
        (out / "checkpoints" / planted).write_bytes(_evil_pickle(marker))
    else:
        (checkpoint / planted).write_bytes(_evil_pickle(marker))
    with pytest.raises(TinyevalError, match="unreadable|pickled checkpoint"):
        run("grpo", *_grpo(tiny_llama_dir, steps=2), out, resume=True, progress=False)
    assert not marker.exists()  # ...but resuming from it did not


def test_no_pickle_loading_in_the_trainers():
    for path in Path(__file__).parents[2].joinpath("tinyeval", "train").rglob("*.py"):
        text = path.read_text()
        assert "torch.load" not in text and "import pickle" not in text, path


def test_a_torn_last_record_is_dropped_on_resume(tiny_llama_dir, parity_task, tmp_path):
    out = tmp_path / "run"
    run("grpo", *_grpo(tiny_llama_dir), out, progress=False)
    with open(out / "records.jsonl", "a") as f:
        f.write('{"step": 3, "lr": 0.0')  # a crash in the middle of writing step 3's line
    with pytest.warns(RuntimeWarning, match="incomplete last line"):
        run("grpo", *_grpo(tiny_llama_dir, steps=3), out, resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in (out / "records.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_ctrl_c_exits_130_as_an_unfinished_run_and_resume_finishes_it(tiny_llama_dir, parity_task, tmp_path,
                                                                      monkeypatch):
    from tinyeval.train import grpo as grpo_mod

    prepare, calls = grpo_mod.GRPO.prepare, []

    def interrupted_once(self, examples):  # Ctrl-C arrives during the first step's rollouts
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return prepare(self, examples)

    monkeypatch.setattr(grpo_mod.GRPO, "prepare", interrupted_once)
    out = tmp_path / "run"
    args = ["train", "--model", str(tiny_llama_dir), "--method", "lora", "--task", "parity", "--steps", "3",
            "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "4", "--dtype", "float32",
            "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130, result.output
    assert "interrupted at step 1 of 3" in result.stderr and "--resume" in result.stderr
    assert json.loads((out / "summary.json").read_text())["interrupted"] is True
    result = CliRunner().invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is False and summary["steps"] == 3


def test_a_refused_run_leaves_no_run_directory(tiny_llama_dir, parity_task, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TinyevalError, match="does not exist"):
        run("grpo", *_grpo(tmp_path / "no-such-model"), out, progress=False)
    with pytest.raises(TinyevalError, match="data root"):
        run("grpo", *_grpo(tiny_llama_dir, task="gsm8k", data_root=str(tmp_path / "no-data")), out, progress=False)
    assert not out.exists()
    with pytest.raises(TinyevalError, match="not found; start a run"):  # not a crash on a half-made run
        run("grpo", *_grpo(tiny_llama_dir), out, resume=True, progress=False)


def test_adapter_options_reach_the_adapter_unchanged(tiny_llama_dir, parity_task, tmp_path):
    from tinyeval.adapters.artifact import read_meta

    out = tmp_path / "run"
    args = ["train", "--model", str(tiny_llama_dir), "--method", "tinylora", "--params", "7", "--rank", "2",
            "--tying", "structured", "--task", "parity", "--steps", "1", "--prompts-per-step", "2",
            "--group-size", "2", "--max-new-tokens", "4", "--dtype", "float32", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())["loop"]["adapter"]
    saved = read_meta(out / "adapter")["config"]
    assert config["tying"] == saved["tying"] == "structured" and config["params"] == saved["params"] == 7
    bad = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "bad"), "--tying", "diagonal"])
    assert isinstance(bad.exception, TinyevalError) and "tying" in str(bad.exception)
    assert not (tmp_path / "bad").exists()


def test_resume_keeps_the_saved_settings_and_refuses_another_algorithm(tiny_llama_dir, parity_task, tmp_path):
    out = tmp_path / "run"
    run("grpo", *_grpo(tiny_llama_dir, steps=1), out, progress=False)
    summary = run("grpo", *_grpo(tiny_llama_dir, steps=2, lr=9.0), out, resume=True, progress=False)
    saved = json.loads((out / "config.json").read_text())["loop"]
    assert summary["steps"] == saved["steps"] == 2 and saved["lr"] == GRPO["lr"]  # only the budget grows
    with pytest.raises(TinyevalError, match="--algo grpo"):
        run("sft", *build("sft", None, model=str(tiny_llama_dir)), out, resume=True, progress=False)


def test_cli_resume_continues_an_sft_run_without_repeating_algo(tiny_llama_dir, data_root, tmp_path):
    out = tmp_path / "sft"
    args = ["train", "--model", str(tiny_llama_dir), "--task", "gsm8k", "--method", "lora", "--rank", "1",
            "--steps", "1", "--limit", "4", "--prompts-per-step", "2", "--max-seq-tokens", "256",
            "--eval-examples", "0", "--dtype", "float32", "--out", str(out)]
    assert CliRunner().invoke(app, [*args, "--algo", "sft"]).exit_code == 0
    result = CliRunner().invoke(app, ["train", "--out", str(out), "--resume", "--steps", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == "sft" and summary["steps"] == 2


def test_startup_line_names_every_phase():
    from tinyeval.train.recipes import startup_line

    line = startup_line({"load_s": 3.14, "attach_s": 1.2, "attach_phases": {"fingerprint_s": 0.3, "svd_s": 0.8},
                         "setup_s": 0.4, "first_step_s": 6.4})
    assert line == "start-up: load 3.1 s · attach 1.2 s (fingerprint 0.3 s, svd 0.8 s) · setup 0.4 s · first step 6.4 s"
    assert startup_line({"load_s": 1, "attach_s": 2, "attach_phases": {}, "setup_s": 0, "first_step_s": None}) \
        == "start-up: load 1.0 s · attach 2.0 s · setup 0.0 s"


def test_a_calibrated_random_p_is_kept_for_resume(tiny_llama_dir, parity_task, tmp_path, monkeypatch):
    """The random-reward control measures p once, before step 1; config.json keeps it, so `--resume` reuses it
    rather than measuring again."""
    from tinyeval.train import recipes

    out, measured = tmp_path / "run", []
    real = recipes._calibrate
    monkeypatch.setattr(recipes, "_calibrate", lambda *a: measured.append(1) or real(*a))
    first = run("grpo", *_grpo(tiny_llama_dir, reward="random", steps=1), out, progress=False)
    p = json.loads((out / "config.json").read_text())["grpo"]["random_p"]
    assert measured == [1] and isinstance(p, float) and 0 <= p <= 1 and first["random_p"] == p
    again = run("grpo", *_grpo(tiny_llama_dir, reward="random", steps=2), out, resume=True, progress=False)
    assert measured == [1] and again["random_p"] == p
