"""`tinyeval eval` end to end on the tiny random model: every task runs, outputs are complete and atomic,
an adapter changes the outputs, user mistakes are one clear error."""

from __future__ import annotations

import json

import pytest

from tinyeval.errors import TinyevalError
from tinyeval.eval.results import MATH_TASKS
from tinyeval.eval.run import EvalConfig, evaluate
from tinyeval.eval.tasks import leaf_tasks

TINY = {"limit": 2, "max_gen_toks": 8, "dtype": "float32", "batch_size": 8, "backend": "hf"}  # auto is vLLM when installed


def _samples(out, task):
    return [json.loads(line) for line in (out / "samples" / f"{task}.jsonl").read_text().splitlines()]


def test_every_task_runs_and_is_recorded(tiny_all_run):
    out, record = tiny_all_run
    expected = set(leaf_tasks(["tinyeval_all", "gsm8k_cot_8shot"]))
    assert set(record["tasks"]) == expected
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["tasks"].keys() == record["tasks"].keys()
    for name, task in record["tasks"].items():
        assert task["n"] == 2 and len(task["correct"]) == 2, name
        assert 0.0 <= task["value"] <= 1.0 and len(task["config_hash"]) == 16, name
        assert task["value"] == pytest.approx(sum(task["correct"]) / 2), name
        assert {s["doc_id"] for s in _samples(out, name)} == {0, 1}, name
    for name in expected & set(MATH_TASKS):
        t = record["tasks"][name]
        assert {"strict", "lenient", "format_rate", "right_answer_wrong_format"} <= t.keys(), name
        assert t["strict"] <= t["format_rate"], name
    assert record["settings"]["chat_template"] is True  # SmolLM2's tokenizer carries a chat template
    for group in ("tinyeval_nonmath", "tinyeval_legal"):  # unweighted means of their tasks
        agg = record["group_scores"][group]
        values = [record["tasks"][t]["value"] for t in agg["tasks"]]
        assert agg["value"] == pytest.approx(sum(values) / len(values)) and agg["n"] == 2 * len(values)


def test_chat_template_is_applied_and_can_be_turned_off(tiny_all_run, tiny_llama_dir, tmp_path):
    out, record = tiny_all_run
    prompt = _samples(out, "gsm8k")[0]["arguments"][0][0]
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    plain = evaluate(EvalConfig(model=str(tiny_llama_dir), tasks=["gsm8k"], out=tmp_path, chat=False, **TINY))
    assert not _samples(tmp_path, "gsm8k")[0]["arguments"][0][0].startswith("<|im_start|>")
    assert plain["tasks"]["gsm8k"]["config_hash"] != record["tasks"]["gsm8k"]["config_hash"]


def test_same_settings_give_the_same_config_hash(tiny_all_run, tiny_llama_dir, tiny_lora_dir, tmp_path):
    """Base and adapter runs must see identical prompts and scoring: equal config hashes, equal prompts."""
    out, record = tiny_all_run
    lora = evaluate(EvalConfig(model=str(tiny_llama_dir), adapter=tiny_lora_dir, tasks=["gsm8k", "arc_easy"],
                               out=tmp_path, **TINY))
    for task in ("gsm8k", "arc_easy"):
        assert lora["tasks"][task]["config_hash"] == record["tasks"][task]["config_hash"]
        assert [s["arguments"] for s in _samples(tmp_path, task)] == [s["arguments"] for s in _samples(out, task)]
        # a non-zero adapter changes what the model says (generations) or how likely each choice is
        assert [s["resps"] for s in _samples(tmp_path, task)] != [s["resps"] for s in _samples(out, task)], task
    assert lora["adapter"] == str(tiny_lora_dir)


def test_results_json_is_written_atomically(tiny_llama_dir, tmp_path, monkeypatch, data_root):
    (tmp_path / "results.json").write_text('{"old": true}')

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr("tinyeval.io.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        evaluate(EvalConfig(model=str(tiny_llama_dir), tasks=["boolq"], out=tmp_path, **TINY))
    assert json.loads((tmp_path / "results.json").read_text()) == {"old": True}
    assert not list(tmp_path.glob(".results.json*")), "a temporary file was left behind"


def test_failed_run_writes_nothing(tiny_llama_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TinyevalError, match="adapter directory .* does not exist"):
        evaluate(EvalConfig(model=str(tiny_llama_dir), adapter=tmp_path / "nope", tasks=["boolq"], out=out, **TINY))
    assert not out.exists()


def test_directory_that_is_no_adapter_is_a_clear_error(tiny_llama_dir, tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(TinyevalError, match="is not a tinyeval adapter"):
        evaluate(EvalConfig(model=str(tiny_llama_dir), adapter=tmp_path / "weights", tasks=["boolq"],
                            out=tmp_path / "run", **TINY))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad, match", [
    ({"tasks": ["gsm9k"]}, "unknown task"),
    ({"backend": "tpu"}, "unknown backend"),
    ({"limit": 0}, "--limit must be >= 1"),
    ({"dtype": "int4"}, "unknown dtype"),
])
def test_user_mistakes_are_clear_errors(tiny_llama_dir, tmp_path, bad, match):
    args = dict(model=str(tiny_llama_dir), tasks=["gsm8k"], out=tmp_path, **TINY) | bad
    with pytest.raises(TinyevalError, match=match):
        evaluate(EvalConfig(**args))


def test_adapter_dir_that_is_no_adapter_is_a_clear_error(tiny_llama_dir, tmp_path):
    (tmp_path / "not-an-adapter").mkdir()
    with pytest.raises(TinyevalError):
        evaluate(EvalConfig(model=str(tiny_llama_dir), adapter=tmp_path / "not-an-adapter", tasks=["boolq"],
                            out=tmp_path / "run", **TINY))
    assert not (tmp_path / "run").exists()


def test_results_and_samples_match_their_schemas(tiny_all_run):
    from tinyeval.eval.run import EvalRecord, Sample
    from tinyeval.schema import check, check_lines

    out, record = tiny_all_run
    on_disk = json.loads((out / "results.json").read_text())
    check(on_disk, EvalRecord)
    assert on_disk["settings"]["backend"] == "hf" and on_disk["settings"]["dtype"] == "float32"
    for name in on_disk["tasks"]:
        assert check_lines(_samples(out, name), Sample, name) >= 2  # one line per item and filter


def test_data_root_is_passed_not_put_in_the_environment(tiny_llama_dir, tmp_path, data_root):
    """The run's data root reaches lm-eval's dataset hook as task metadata; os.environ is left alone."""
    import os
    import shutil

    root = tmp_path / "root"
    (root / "gsm8k").mkdir(parents=True)
    shutil.copy(data_root / "gsm8k" / "train.jsonl", root / "gsm8k" / "train.jsonl")
    (root / "gsm8k" / "test.jsonl").write_text(
        "".join(json.dumps({"question": f"Only here: {i} + 1?", "answer": f"#### {i + 1}"}) + "\n" for i in range(2)))
    before = os.environ.get("TINYEVAL_DATA")  # the shared data root: the questions below are not in it
    record = evaluate(EvalConfig(model=str(tiny_llama_dir), tasks=["gsm8k"], out=tmp_path / "run",
                                 data_root=str(root), **TINY))
    assert os.environ.get("TINYEVAL_DATA") == before
    assert {s["doc"]["question"] for s in _samples(tmp_path / "run", "gsm8k")} == {"Only here: 0 + 1?",
                                                                                   "Only here: 1 + 1?"}
    assert record["settings"]["data_root"] == str(root.resolve())


def _cli(*argv):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "tinyeval.cli", *argv], capture_output=True, text=True)


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.mark.parametrize("junk", ["weights", "tokenizer"])
def test_model_dir_with_junk_files_is_one_line(tiny_llama_dir, tmp_path, junk):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, model)
    target = "model.safetensors" if junk == "weights" else "tokenizer_config.json"
    (model / target).write_bytes(b"\x00garbage" * 100)
    proc = _cli("eval", "--model", str(model), "--tasks", "boolq", "--out", str(tmp_path / "run"), "--limit", "1")
    _one_line_error(proc, "tokenizer" if junk == "tokenizer" else "model.safetensors")
    assert not (tmp_path / "run" / "results.json").exists()


def test_corrupt_data_line_is_one_line_naming_file_and_line(tiny_llama_dir, tmp_path, data_root):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(data_root / "gsm8k", root / "gsm8k")
    lines = (root / "gsm8k" / "test.jsonl").read_text().splitlines(keepends=True)
    lines[4] = '{"question": "cut off\n'
    (root / "gsm8k" / "test.jsonl").write_text("".join(lines))
    proc = _cli("eval", "--model", str(tiny_llama_dir), "--tasks", "gsm8k", "--out", str(tmp_path / "run"),
                "--limit", "1", "--backend", "hf", "--data-root", str(root))
    _one_line_error(proc, "test.jsonl:5", "invalid JSON")


def test_cli_json_is_clean_and_third_party_output_goes_to_the_log(tiny_llama_dir, tmp_path, data_root):
    """stdout holds the JSON rows and nothing else, stderr nothing; lm-eval's progress bars are in OUT/log.txt."""
    from tinyeval.eval.results import TableRow
    from tinyeval.schema import check

    out = tmp_path / "run"
    proc = _cli("eval", "--model", str(tiny_llama_dir), "--tasks", "gsm8k,boolq", "--out", str(out), "--limit", "2",
                "--max-gen-toks", "8", "--dtype", "float32", "--backend", "hf", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    check(rows, list[TableRow])
    assert {r["task"] for r in rows} == {"boolq", "gsm8k"}
    assert proc.stderr.strip() == "", proc.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "Running loglikelihood requests" in log and "Running generate_until requests" in log, log[:2000]


def test_vllm_engines_are_shut_down_explicitly():
    """An engine left to vLLM's exit-time finalizer (5 s to tear down, then a racy force-kill) ended pytest runs
    with a psutil.NoSuchProcess traceback: each is shut down gracefully right after its evaluation."""
    from types import SimpleNamespace

    from tinyeval.eval.run import _release
    from tinyeval.vllm import ENGINE_SHUTDOWN_S

    calls = []

    def engine():
        core = SimpleNamespace(shutdown=lambda timeout: calls.append(timeout))
        return SimpleNamespace(model=SimpleNamespace(llm_engine=SimpleNamespace(engine_core=core)))

    _release(engine())  # lm-eval's VLLM wrapper
    _release(SimpleNamespace(generator=engine(), scorer=SimpleNamespace(model=object())))  # SplitLM on CPU
    _release(SimpleNamespace(model=object()))  # HFLM: nothing to do
    assert calls == [ENGINE_SHUTDOWN_S, ENGINE_SHUTDOWN_S]


def test_tinyeval_lora_adapter_gets_the_integrity_checks(tiny_llama_dir, tiny_lora_dir, tmp_path):
    """A tinyeval LoRA folder holds PEFT's files too; its adapter.json makes it a tinyeval adapter, so an edited
    weight is refused instead of being loaded as a plain PEFT LoRA."""
    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.eval.backends import is_peft_lora
    from tinyeval.models import load_model

    model, _ = load_model(str(tiny_llama_dir), dtype="float32")
    saved = attach(model, AdapterConfig(method="lora", rank=1)).save(tmp_path / "lora")
    assert (saved / "adapter_config.json").is_file() and not is_peft_lora(saved) and is_peft_lora(tiny_lora_dir)
    weights = saved / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x40  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(TinyevalError, match="adapter_model.safetensors does not match the hash"):
        evaluate(EvalConfig(model=str(tiny_llama_dir), adapter=saved, tasks=["gsm8k"], out=tmp_path / "run",
                            **TINY))
    assert not (tmp_path / "run").exists()
