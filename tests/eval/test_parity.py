"""Parity: our `gsm8k` data path, configured like lm-eval's stock `gsm8k_cot_zeroshot`, scores exactly
what the stock task scores when the stock task reads the same local file. This is the proof that
tinyeval's numbers are lm-eval's (same prompts, same generations, same filters, same metric)."""

from __future__ import annotations

import pytest

from tinyeval.eval.tasks import quiet_lm_eval, stock_task_config, task_manager


def _run_both(lm, data_root, limit: int, max_gen_toks: int | None):
    import lm_eval

    stock = stock_task_config("gsm8k_cot_zeroshot", dataset_path="json", dataset_name=None,
                              dataset_kwargs={"data_files": {"train": str(data_root / "gsm8k" / "train.jsonl"),
                                                             "test": str(data_root / "gsm8k" / "test.jsonl")}})
    quiet_lm_eval()
    out = lm_eval.simple_evaluate(model=lm, tasks=["gsm8k_parity", stock], task_manager=task_manager(), limit=limit,
                                  gen_kwargs={"max_gen_toks": max_gen_toks} if max_gen_toks else None,
                                  bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                                  fewshot_random_seed=0)
    return out


def _assert_parity(out, limit: int):
    ours, theirs = out["results"]["gsm8k_parity"], out["results"]["gsm8k_cot_zeroshot"]
    for key in ("exact_match,strict-match", "exact_match,flexible-extract"):
        assert ours[key] == theirs[key], key
    by_doc = {name: sorted(out["samples"][name], key=lambda s: (s["doc_id"], s["filter"]))
              for name in ("gsm8k_parity", "gsm8k_cot_zeroshot")}
    assert len(by_doc["gsm8k_parity"]) == 2 * limit  # two filters per item
    for a, b in zip(by_doc["gsm8k_parity"], by_doc["gsm8k_cot_zeroshot"]):
        for field in ("doc", "target", "arguments", "resps", "filtered_resps", "exact_match"):
            assert a[field] == b[field], (a["doc_id"], field)


def test_parity_with_stock_gsm8k_cot_zeroshot_tiny(tiny_llama_dir, data_root):
    from lm_eval.models.huggingface import HFLM

    limit = 4
    lm = HFLM(pretrained=str(tiny_llama_dir), dtype="float32", device="cpu", batch_size=4)
    _assert_parity(_run_both(lm, data_root, limit, max_gen_toks=24), limit)


@pytest.mark.slow
def test_parity_with_stock_gsm8k_cot_zeroshot_smollm2(smollm2_dir, data_root):
    """The real model, whose completions hold numbers for the filters to find (96 new tokens keep it short)."""
    from lm_eval.models.huggingface import HFLM

    limit = 5
    lm = HFLM(pretrained=str(smollm2_dir), dtype="float32", device="cpu", batch_size=limit)
    out = _run_both(lm, data_root, limit, max_gen_toks=96)
    _assert_parity(out, limit)
    assert any(s["filtered_resps"] != ["[invalid]"] for s in out["samples"]["gsm8k_parity"])
