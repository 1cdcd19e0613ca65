"""arith as an lm-eval task: held out from its training split, twins paired with their originals by item id."""

from __future__ import annotations

import random

from tinyeval.eval.hooks import arith_dataset
from tinyeval.eval.results import MATH_TASKS, decompose, item_id
from tinyeval.eval.tasks import TWINS
from tinyeval.grading import gsm8k_gold
from tinyeval.train.sft import SFT_TASKS
from tinyeval.train.tasks import arith_questions, arith_twin, get_task


def test_arith_test_split_shares_no_question_with_train() -> None:
    train = {q for q, _ in arith_questions("train")}
    test = [q for q, _ in arith_questions("test")]
    assert test and not set(test) & train
    assert len(test) == len(set(test))  # each held-out question once
    users = [u for u, _ in get_task("arith").rows("test", None)]
    assert not set(users) & {u for u, _ in get_task("arith").rows("train", None)}


def test_twins_keep_template_and_redraw_operands_with_a_recomputed_answer() -> None:
    rng = random.Random(0)
    q = "Ava has 7 books and gets 5 more. How many books does Ava have now?"
    twin, ans = arith_twin(q, rng, {q})
    assert twin != q and twin.startswith("Ava has ") and "books and gets" in twin
    a, b = (int(w) for w in twin.replace(".", " ").split() if w.isdigit())
    assert ans == a + b
    q = "Ben has 12 coins and gives away 4. How many coins are left?"
    twin, ans = arith_twin(q, rng, {q})
    total, b = (int(w) for w in twin.replace(".", " ").split() if w.isdigit())
    assert ans == total - b and "gives away" in twin


def test_twin_dataset_pairs_with_originals_and_avoids_training_questions() -> None:
    orig, twins = arith_dataset()["test"], arith_dataset(twins=True)["test"]
    by_id = {r["item_id"]: r for r in orig}
    train = {q for q, _ in arith_questions("train")}
    assert len(twins) >= 0.95 * len(orig)
    for t in twins:
        o = by_id[t["item_id"]]  # every twin names an original
        assert t["question"] != o["question"] and t["question"] not in train
    assert [r["question"] for r in arith_dataset(twins=True)["test"]] == [r["question"] for r in twins]  # seeded
    assert [r["question"] for r in arith_dataset(twins=True, seed=8)["test"]] != [r["question"] for r in twins]
    assert TWINS["arith_twins"] == "arith" and "arith" in MATH_TASKS


def test_sft_targets_are_the_answer_in_the_requested_format() -> None:
    pairs = SFT_TASKS["arith"]("train", None, False)
    user, target = pairs[0]
    assert target.startswith("#### ") and str(gsm8k_gold(target)) == get_task("arith").rows("train", None)[0][1]


def test_per_item_ids_and_decomposition_follow_the_docs() -> None:
    def sample(doc_id: int, filt: str, ok: int, resp: str, doc: dict) -> dict:
        return {"doc_id": doc_id, "filter": filt, "exact_match": ok, "filtered_resps": [resp], "doc": doc}

    docs = [{"item_id": "arith/test/5"}, {"item_id": "arith/test/9"}]
    samples = [sample(0, "strict-match", 0, "[invalid]", docs[0]), sample(0, "flexible-extract", 1, "7", docs[0]),
               sample(1, "strict-match", 1, "3", docs[1]), sample(1, "flexible-extract", 1, "3", docs[1])]
    d = decompose(samples, MATH_TASKS["arith"])
    assert d["strict_correct"] == [0, 1] and d["lenient_correct"] == [1, 1]
    assert [item_id("arith_twins", i, s["doc"]) for i, s in enumerate(samples[::2])] == ["arith/test/5", "arith/test/9"]
    assert item_id("gsm8k", 17, {"question": "q"}) == "gsm8k/test/17"
    assert item_id("math500", 3, {"unique_id": "test/geometry/802.json"}) == "test/geometry/802.json"
