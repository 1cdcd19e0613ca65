"""The GRPO loop on a 2-layer random Llama: records, checkpoints, bit-for-bit resume, Ctrl-C, edge cases."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from tinyeval.errors import TinyevalError
from tinyeval.grading import Grade
from tinyeval.train import tasks as tasks_mod
from tinyeval.train.loop import batch_indices
from tinyeval.train.recipes import build, run
from tinyeval.train.tasks import Task


def _cfg(model_dir, **kw):
    base = dict(model=str(model_dir), method="lora", rank=2, task="parity", steps=4, prompts_per_step=2,
                group_size=4, max_new_tokens=8, lr=5e-2, checkpoint_every=2, engine="hf", micro_batch=3,
                dtype="float32", threads=1)
    return build("grpo", None, **{**base, **kw})


def _trained(out) -> list[torch.Tensor]:
    """The trainable tensors of the run's last checkpoint (whatever the adapter implementation), on the CPU."""
    from tinyeval.train.loop import latest_checkpoint, read_checkpoint

    return read_checkpoint(latest_checkpoint(out))["params"]


def test_data_order_is_a_function_of_seed_and_step():
    a = [batch_indices(10, s, 4, seed=1) for s in range(5)]  # 20 positions: 2 full epochs
    assert sorted(sum(a[:2], []) + a[2][:2]) == list(range(10))  # first epoch is a permutation
    assert a == [batch_indices(10, s, 4, seed=1) for s in range(5)]
    assert a != [batch_indices(10, s, 4, seed=2) for s in range(5)]


def test_resume_reproduces_the_same_weights(tiny_llama_dir, parity_task, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run("grpo", *_cfg(tiny_llama_dir), straight, progress=False)
    run("grpo", *_cfg(tiny_llama_dir, steps=2), split, progress=False)
    run("grpo", *_cfg(tiny_llama_dir, steps=4), split, resume=True, progress=False)
    a, b = _trained(straight), _trained(split)  # both on the CPU: torch.equal across devices is never true
    assert len(a) == len(b) > 0
    assert any(not torch.equal(x, y) for x, y in zip(a, _trained_at_start(tiny_llama_dir)))  # it did train
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    records = [json.loads(x) for x in (split / "records.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    straight_records = [json.loads(x) for x in (straight / "records.jsonl").read_text().splitlines()]
    assert [r["reward_mean"] for r in records] == [r["reward_mean"] for r in straight_records]
    for key in ("reward_std", "strict", "lenient", "clip_frac", "is_ratio_mean", "response_len", "gen_tok_per_s",
                "step_s", "sync_bytes"):
        assert key in records[0], key


def _trained_at_start(model_dir) -> list[torch.Tensor]:
    from transformers import AutoModelForCausalLM

    from tinyeval.adapters import AdapterConfig, attach

    torch.manual_seed(0)
    handle = attach(AutoModelForCausalLM.from_pretrained(model_dir), AdapterConfig(method="lora", params=13, rank=2))
    return [p.detach().cpu().clone() for p in handle.trainable_parameters()]


def test_existing_run_needs_resume(tiny_llama_dir, parity_task, tmp_path):
    run("grpo", *_cfg(tiny_llama_dir, steps=1, checkpoint_every=1), tmp_path / "r", progress=False)
    with pytest.raises(TinyevalError, match="--resume"):
        run("grpo", *_cfg(tiny_llama_dir, steps=1), tmp_path / "r", progress=False)
    with pytest.raises(TinyevalError, match="no checkpoint|not found"):
        run("grpo", *_cfg(tiny_llama_dir), tmp_path / "fresh", resume=True, progress=False)


def test_ctrl_c_leaves_a_checkpoint(tiny_llama_dir, parity_task, tmp_path, monkeypatch):
    from tinyeval.train import grpo as grpo_mod

    prepare = grpo_mod.GRPO.prepare

    def interrupted(self, examples):  # Ctrl-C arrives during the first step's rollouts
        os.kill(os.getpid(), signal.SIGINT)
        return prepare(self, examples)

    monkeypatch.setattr(grpo_mod.GRPO, "prepare", interrupted)
    out = tmp_path / "run"
    summary = run("grpo", *_cfg(tiny_llama_dir, steps=4, checkpoint_every=100), out, progress=False)
    assert summary["steps"] == 1  # finished the step in flight, then stopped
    assert summary["interrupted"] and summary["total_steps"] == 4
    assert (out / "checkpoints" / "step-000001").is_dir() and (out / "adapter").is_dir()


def test_nan_reward_empty_completion_and_long_prompt_warn(tiny_llama_dir, tmp_path, monkeypatch):
    def rows(split, root):
        return [("short prompt", "1"), ("long " * 400, "2"), ("another short one", "3")]

    def grade(completion, gold):
        if gold == "3":
            return Grade(float("nan"), False, None)  # a broken grader: NaN reward
        return Grade(len(completion) % 2 == 0, False, None)

    monkeypatch.setitem(tasks_mod.TASKS, "edgy", Task("edgy", rows, grade))
    with pytest.warns(RuntimeWarning) as caught:
        summary = run("grpo", *_cfg(tiny_llama_dir, task="edgy", steps=2, max_prompt_tokens=64), tmp_path / "e",
                      progress=False)
    messages = " ".join(str(w.message) for w in caught)
    assert "longer than max_prompt_tokens" in messages and "NaN" in messages
    assert summary["steps"] == 2 and summary["final"]["invalid_rewards"] > 0


def test_empty_completion_collates_with_a_warning(smollm2_dir):
    from transformers import AutoTokenizer

    from tinyeval.train.rollout.tokens import collate

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    with pytest.warns(RuntimeWarning, match="empty completion"):
        ro = collate(tok, [[5, 6], [7]], [[], [8, 9]], ["", "xy"], None, 0.0)
    assert ro.completion_mask.tolist() == [[False, False], [True, True]]
    assert ro.prompt_mask.tolist() == [[True, True], [False, True]]


def test_cli_train_runs_and_rejects_bad_options(tiny_llama_dir, parity_task, tmp_path, data_root):
    from typer.testing import CliRunner

    from tinyeval.cli import app

    runner = CliRunner()
    args = ["train", "--model", str(tiny_llama_dir), "--method", "lora", "--task", "parity", "--steps", "1",
            "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "4", "--dtype", "float32",
            "--out", str(tmp_path / "cli"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout[result.stdout.index("["):])[0]["steps"] == 1
    bad = runner.invoke(app, args[:-3] + ["--aggregation", "sum", "--out", str(tmp_path / "bad")])
    assert isinstance(bad.exception, TinyevalError)


def test_presets_validate_and_flags_override():
    loop, grpo = build("grpo", "paper-gsm8k")
    assert (loop.prompts_per_step, grpo.group_size, grpo.max_new_tokens, grpo.kl_coef) == (64, 4, 4096, 0.0)
    assert 2e-4 in loop.lr_sweep and grpo.eps_high == 0.4
    loop, grpo = build("grpo", "paper-math", group_size=16)
    assert (grpo.group_size, grpo.kl_coef, grpo.max_prompt_tokens, grpo.max_new_tokens) == (16, 0.001, 1024, 3072)
    with pytest.raises(TinyevalError):
        build("grpo", "nope")
    with pytest.raises(TinyevalError):
        build("grpo", "cpu", group_size=1)
