"""gsm8k_twins and gsm1k_public under lm-eval: the data their hooks build, and a tiny end-to-end run."""

from __future__ import annotations

from tinyeval.data import load
from tinyeval.eval.hooks import gsm8k_target, gsm8k_twins_dataset, load_dataset, plain_number_target
from tinyeval.eval.tasks import TWINS, known_tasks


def test_gsm8k_twins_carry_their_originals_ids_and_new_answers(data_root):
    twins = gsm8k_twins_dataset(seed=0, data_root=str(data_root))["test"]
    originals = load("gsm8k", "test", str(data_root)).rows
    assert 0.8 * len(originals) < len(twins) < len(originals)  # the engine's coverage (85% at seed 0)
    for t in list(twins)[:50]:
        o = originals[int(t["item_id"].rsplit("/", 1)[1])]
        assert t["question"] != o["question"] and gsm8k_target(t) != gsm8k_target(o)  # a new answer, verified
    again = gsm8k_twins_dataset(seed=0, data_root=str(data_root))["test"]
    assert [r["question"] for r in again] == [r["question"] for r in twins]  # built at a fixed seed
    assert TWINS["gsm8k_twins"] == "gsm8k"


def test_gsm1k_public_is_the_fifty_public_items(data_root):
    rows = load_dataset("gsm1k_public", str(data_root))["test"]
    assert len(rows) == 50 and plain_number_target(rows[0]) == str(rows[0]["answer"]).replace(",", "")
    assert {"gsm8k_twins", "gsm1k_public", "arith", "arith_twins"} <= set(known_tasks())


def test_twin_tasks_run_and_pair_ids(tiny_llama_dir, tmp_path, data_root):
    from tinyeval.eval.run import EvalConfig, evaluate

    record = evaluate(EvalConfig(model=str(tiny_llama_dir), tasks=["gsm8k", "gsm8k_twins", "gsm1k_public"],
                                 out=tmp_path / "run", limit=2, max_gen_toks=8, dtype="float32", batch_size=8,
                                 backend="hf", data_root=str(data_root)))
    tasks = record["tasks"]
    assert tasks["gsm8k"]["ids"] == ["gsm8k/test/0", "gsm8k/test/1"]
    assert all(i.startswith("gsm8k/test/") for i in tasks["gsm8k_twins"]["ids"])
    assert tasks["gsm1k_public"]["ids"] == ["gsm1k_public/test/0", "gsm1k_public/test/1"]
    assert len(tasks["gsm8k_twins"]["lenient_correct"]) == tasks["gsm8k_twins"]["n"] == 2
