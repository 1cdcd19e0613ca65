"""The YAML task suite: registration, offline loading, hooks that agree with tinyeval.grading, clear errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tinyeval import data, grading
from tinyeval.errors import TinyevalError
from tinyeval.eval import hooks
from tinyeval.eval.tasks import GROUPS, check_task_names, known_tasks, leaf_tasks, task_manager

NONMATH = ["arc_easy", "arc_challenge", "boolq", "piqa", "winogrande", "commonsense_qa", "lsat_lr", "lsat_rc",
           "lsat_ar"]


def test_suite_is_registered():
    names = set(known_tasks())
    assert set(GROUPS) <= names
    assert {"gsm8k", "gsm8k_cot_8shot", "gsm8k_parity", "math500", *NONMATH} <= names
    assert {f"legal_{t}" for t in data.LEGAL_TASKS} <= names
    assert "hellaswag" not in names  # lm-eval's stock tasks are not indexed: our names shadow theirs
    assert set(leaf_tasks(["tinyeval_all"])) == {"gsm8k", "math500", *NONMATH, *(f"legal_{t}" for t in data.LEGAL_TASKS)}


def test_every_task_loads_offline_with_the_data_root_rows(data_root):
    loaded = task_manager().load(["tinyeval_all", "gsm8k_cot_8shot"])["tasks"]
    for name, task in loaded.items():
        dataset = task.config.dataset_kwargs["dataset"]
        docs = task.test_docs()
        assert len(docs) == len(data.load(dataset, "test").rows), name
        assert task.doc_to_text(docs[0]) not in ("", None), name
        if task.OUTPUT_TYPE == "multiple_choice":
            assert len(task.doc_to_choice(docs[0])) >= 2, name


def test_legal_prompt_reproduces_legalbench_base_prompt(data_root):
    """Description + train.tsv few-shot + the item = LegalBench's own base_prompt.txt with the item filled in."""
    task = task_manager().load(["legal_hearsay"])["tasks"]["legal_hearsay"]
    doc = task.test_docs()[0]
    ctx = task.fewshot_context(doc, num_fewshot=task.config.num_fewshot)
    expected = data.legal_prompt("hearsay").replace("{{text}}", doc["text"].strip())
    assert ctx.strip() == expected.strip()


def test_unknown_task_is_a_clear_error():
    with pytest.raises(TinyevalError, match="unknown task.*gsm9k.*known:.*gsm8k"):
        check_task_names(["gsm8k", "gsm9k"])


def test_missing_dataset_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    monkeypatch.setenv("TINYEVAL_DATA", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TinyevalError, match=r"dataset 'gsm8k'.*gsm8k/train\.jsonl.*unreachable"):
        task_manager().load(["gsm8k"])  # raised while lm-eval builds the task, not swallowed by it


@pytest.mark.parametrize("text, expected", [
    ("so 9 * 2 = 18\n#### 18", ("18", "18")),
    ("#### $1,000.00 dollars", ("1000", "1000")),
    ("The answer is 2.50", ("[invalid]", "2.5")),
    ("no number here", ("[invalid]", "[invalid]")),
])
def test_gsm8k_filters_match_grading(text, expected):
    strict = hooks.gsm8k_strict([[text]], [{}])[0][0]
    lenient = hooks.gsm8k_lenient([[text]], [{}])[0][0]
    assert (strict, lenient) == expected
    gold = expected[1] if expected[1] != "[invalid]" else "7"
    grade = grading.grade_gsm8k(text, Decimal(gold))
    assert grade.strict == (strict == gold) and grade.lenient == (lenient == gold)


def test_gsm8k_target_is_canonical():
    assert hooks.gsm8k_target({"answer": "blah <<3*4=12>>\n#### 1,200"}) == "1200"
    assert hooks.gsm8k_fewshot_target({"answer": "3*4 = <<3*4=12>>12\n#### 12"}) == "3*4 = 12\n#### 12"


def test_math_filters_and_scores():
    doc = {"answer": "\\frac{1}{2}"}
    boxed, unboxed = "so \\boxed{\\dfrac{1}{2}}", "the answer is $0.5$"
    assert hooks.math_boxed([[boxed], [unboxed]], [doc, doc]) == [["\\dfrac{1}{2}"], ["[invalid]"]]
    assert hooks.math_lenient([[unboxed]], [doc]) == [["0.5"]]
    assert hooks.math_process_results(doc, ["\\dfrac{1}{2}"]) == {"math_verify": 1, "exact_match": 0}
    assert hooks.math_process_results(doc, ["\\frac{1}{2}"]) == {"math_verify": 1, "exact_match": 1}
    assert hooks.math_process_results(doc, ["[invalid]"]) == {"math_verify": 0, "exact_match": 0}


def test_eval_prompts_are_the_training_prompts(data_root):
    """Train and evaluate on the same wording: the YAML text equals what tinyeval.train.tasks builds."""
    train_tasks = pytest.importorskip("tinyeval.train.tasks")
    loaded = task_manager().load(["gsm8k", "math500"])["tasks"]
    gsm8k_doc, math_doc = loaded["gsm8k"].test_docs()[0], loaded["math500"].test_docs()[0]
    assert loaded["gsm8k"].doc_to_text(gsm8k_doc) == f"{gsm8k_doc['question']}\n{train_tasks.GSM8K_SUFFIX}"
    assert loaded["math500"].doc_to_text(math_doc) == f"{math_doc['problem']}\n{train_tasks.MATH_SUFFIX}"
