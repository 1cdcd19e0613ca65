import json

import pytest

from tinyeval import data
from tinyeval.errors import TinyevalError


@pytest.mark.parametrize("name,split,rows", [
    ("gsm8k", "test", 1319), ("gsm8k", "train", 7473), ("math500", "test", 500), ("math", "train", 7500),
    ("math", "test", 5000), ("arc_easy", "test", 2376), ("lsat_lr", "test", 510),
    ("legal_hearsay", "test", 95), ("gsm1k_public", "test", 50),
])
def test_row_counts_from_data_root(data_root, name, split, rows):
    loaded = data.load(name, split)
    assert len(loaded.rows) == rows
    assert loaded.source.startswith(str(data_root))


def test_every_registered_split_loads(data_root):
    for name, split in data.all_splits():
        assert data.load(name, split).rows, (name, split)


def test_math_train_simplerl_options(data_root):
    plain = data.math_train()
    assert len(plain.rows) == 7500
    mixed = data.math_train(add_test_minus_math500=True)
    assert len(mixed.rows) == 7500 + 5000 - 500  # every MATH500 item is held out by problem text
    hard = data.math_train(levels=(3, 4, 5), add_test_minus_math500=True)
    assert hard.rows and all(r["level"] in {"Level 3", "Level 4", "Level 5"} for r in hard.rows)
    assert len(hard.rows) < len(mixed.rows)


def test_legal_prompt_has_text_slot(data_root):
    assert "{{text}}" in data.legal_prompt("hearsay")


def test_corrupt_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    bad = tmp_path / "gsm8k" / "test.jsonl"
    bad.write_text('{"question": "a", "answer": "#### 1"}\n{"question": oops\n')
    with pytest.raises(TinyevalError, match=r"test\.jsonl:2: invalid JSON"):
        data.load("gsm8k", "test", tmp_path)


def test_jsonl_line_that_is_no_object_names_file_and_line(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "a", "answer": "#### 1"}\n[1, 2]\n')
    with pytest.raises(TinyevalError, match=r"test\.jsonl:2: expected a JSON object, got list"):
        data.load("gsm8k", "test", tmp_path)


def test_check_reads_every_split_and_names_the_bad_line(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "a", "answer": "#### 1"}\n')
    (tmp_path / "gsm8k" / "train.jsonl").write_text('{"question": "a", "answer": "#### 1"}\n' * 3 + "{oops\n")
    with pytest.raises(TinyevalError, match=r"train\.jsonl:4: invalid JSON"):
        data.check("gsm8k", tmp_path)
    (tmp_path / "gsm8k" / "train.jsonl").unlink()
    with pytest.raises(TinyevalError, match=r"gsm8k/train\.jsonl.*unreachable"):  # conftest: HF_HUB_OFFLINE=1
        data.check("gsm8k", tmp_path)


def test_missing_data_root_is_clear(tmp_path):
    with pytest.raises(TinyevalError, match="does not exist"):
        data.load("gsm8k", "test", tmp_path / "nope")


def test_data_root_lacking_dataset_is_clear(tmp_path):
    with pytest.raises(TinyevalError, match=r"gsm8k.*data root .*gsm8k/test\.jsonl.*unreachable"):
        data.load("gsm8k", "test", tmp_path)


def test_unknown_dataset_and_split(data_root):
    with pytest.raises(TinyevalError, match="unknown dataset"):
        data.load("gsm9k")
    with pytest.raises(TinyevalError, match="no split 'train'"):
        data.load("math500", "train")


def test_content_hash_is_row_based_and_order_sensitive():
    rows = [{"a": 1, "b": 2}, {"a": 3}]
    assert data.content_hash(rows) == data.content_hash([{"b": 2, "a": 1}, {"a": 3}])
    assert data.content_hash(rows) != data.content_hash(rows[::-1])


def test_hub_converters_match_data_root_schema(data_root):
    """Hub rows converted by the registry have the same fields as the data-root rows."""
    arc = data.DATASETS["arc_easy"].hub["test"].convert(
        {"question": "Why?", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answerKey": "B"})
    assert arc == {"query": "Question: Why?", "choices": ["x", "y"], "gold": 1}
    assert set(arc) == set(data.load("arc_easy").rows[0])
    wino = data.DATASETS["winogrande"].hub["test"].convert(
        {"sentence": "Sarah was better than Maria so _ got the easier cases.", "option1": "Sarah",
         "option2": "Maria", "answer": "2"})
    assert wino == {"context_options": ["Sarah was better than Maria so Sarah",
                                        "Sarah was better than Maria so Maria"],
                    "continuation": "got the easier cases.", "gold": 1}
    boolq = data.DATASETS["boolq"].hub["test"].convert({"passage": "P", "question": "is it", "answer": True})
    assert boolq["gold"] == 1 and boolq["choices"] == ["no", "yes"]
    csqa = data.DATASETS["commonsense_qa"].hub["test"].convert(
        {"question": "Q", "choices": {"label": ["A", "B"], "text": ["u", "v"]}, "answerKey": "A"})
    assert csqa["query"].endswith("A. u\nB. v\nAnswer:") and csqa["gold"] == 0
    assert json.dumps(csqa)  # plain JSON-serialisable rows
