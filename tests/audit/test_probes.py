"""Probes: prefix split, Min-K%/Min-K%++ against a one-text-at-a-time reference, the run on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyeval.audit.probes.config import Model, ProbeConfig
from tinyeval.audit.probes.generation import split_prefix
from tinyeval.audit.probes.membership import TokenStats, scores, token_stats
from tinyeval.audit.probes.run import ProbesReport, run_probes
from tinyeval.audit.scan.report import probes_markdown as markdown
from tinyeval.errors import TinyevalError
from tinyeval.io import dumps_json
from tinyeval.schema import check


def test_split_prefix_gives_sixty_percent_of_the_words():
    prefix, rest = split_prefix("one two three four five six seven eight nine ten", 0.6)
    assert prefix == "one two three four five six" and rest == "seven eight nine ten"
    assert split_prefix("a b", 0.6) == ("a", "b")  # always something left to complete


def test_scores_on_known_token_statistics():
    stats = TokenStats(logp=np.array([-1.0, -5.0, -2.0, -0.5, -3.0]), mu=np.full(5, -2.0), sigma=np.full(5, 2.0))
    s = scores(stats, k=0.4)
    assert s["logprob"] == pytest.approx(-2.3)
    assert s["min_k"] == pytest.approx(-4.0)  # mean of the 2 lowest: -5, -3
    assert s["min_k_pp"] == pytest.approx(((-5 + 2) / 2 + (-3 + 2) / 2) / 2)


def test_batched_token_stats_equal_one_text_at_a_time(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.padding_side = "left"
    texts = ["Janet's ducks lay 16 eggs per day.", "A robe takes 2 bolts of blue fiber and half that much white.",
             "Hi"]
    batched = token_stats(model, tok, texts, batch_size=3)
    assert tok.padding_side == "left"  # restored
    for text, got in zip(texts, batched):
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)  # (T-1, V)
        want = logp.gather(-1, ids[0, 1:, None])[:, 0]
        mu = (logp.exp() * logp).sum(-1)
        sigma = ((logp.exp() * logp**2).sum(-1) - mu**2).sqrt()
        assert len(got.logp) == ids.shape[1] - 1
        np.testing.assert_allclose(got.logp, want.numpy(), atol=1e-4)
        np.testing.assert_allclose(got.mu, mu.numpy(), atol=1e-4)
        np.testing.assert_allclose(got.sigma, sigma.numpy(), atol=1e-3)


def test_config_rejects_mistakes(data_root):  # the twins check reads GSM8K
    with pytest.raises(TinyevalError):
        ProbeConfig(benchmark="hellaswag")
    with pytest.raises(TinyevalError):
        ProbeConfig(probes=("vibes",))
    with pytest.raises(TinyevalError, match="accuracy probe needs verified twins"):
        run_probes(ProbeConfig(benchmark="math500", probes=("accuracy",)), model=object())


def test_run_probes_on_a_tiny_model(tiny_llama_dir, data_root):
    from tinyeval.generation import generate
    from tinyeval.models import load_model

    hf, tok = load_model(str(tiny_llama_dir), dtype="float32")
    model = Model(hf, tok, lambda prompts, n: generate(hf, tok, prompts, max_new_tokens=n, batch_size=8), "hf")
    report = run_probes(ProbeConfig(n_generate=4, n_membership=6, max_new_tokens=8, prefix_new_tokens=8,
                                    n_boot=50), model=model)
    check(json.loads(dumps_json(report)), ProbesReport)  # report.json's "probes" section, as written
    signals = {r["signal"]: r for r in report["rows"]}
    assert {"accuracy original - twin (strict)", "prefix ROUGE-L benchmark - control",
            "Min-K%++ AUROC vs perturbed twins", "Min-K% AUROC vs gsm1k_public"} <= set(signals)
    twin_n, control_n = signals["Min-K%++ AUROC vs perturbed twins"]["n"], signals["Min-K% AUROC vs gsm1k_public"]["n"]
    assert control_n == 6 + 6 and twin_n % 2 == 0 and 0 < twin_n <= 12  # the sampled items that have a twin
    assert signals["accuracy original - twin (strict)"]["n"] == 4
    for row in report["rows"]:
        lo, hi = map(float, row["ci95"].strip("[]").split(","))
        assert lo <= row["value"] <= hi
    assert report["coverage"]["coverage"] > 0.7
    assert "| membership | Min-K%++ AUROC vs perturbed twins |" in markdown(report)
