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
