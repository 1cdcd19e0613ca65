"""The vLLM backend serving a PEFT LoRA through `lora_local_path`: it must score what the HF backend scores
with the same adapter merged, and not what the base model scores."""

from __future__ import annotations

import importlib.util
import json

import pytest

# Engine starts (~11 s each when the CPU is free) make this an integration test: slow, and skipped without vLLM.
pytestmark = [pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed"),
              pytest.mark.slow]

TINY = {"limit": 2, "max_gen_toks": 8, "dtype": "float32", "batch_size": 8}


@pytest.fixture(scope="module")
def vllm_model_dir(tiny_llama_vllm_dir):
    return tiny_llama_vllm_dir


@pytest.fixture(scope="module")
def vllm_lora_dir(tmp_path_factory, vllm_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    cfg = LoraConfig(r=2, lora_alpha=16, init_lora_weights=False,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    out = tmp_path_factory.mktemp("tiny-lora-vllm")
    get_peft_model(AutoModelForCausalLM.from_pretrained(vllm_model_dir), cfg).save_pretrained(out)
    return out


def _samples(out, task):
    rows = [json.loads(line) for line in (out / "samples" / f"{task}.jsonl").read_text().splitlines()]
    return sorted(rows, key=lambda s: (s["doc_id"], s["filter"]))


def _loglikelihoods(out, task):
    return [float(r[0]) for s in _samples(out, task) for r in s["filtered_resps"]]


def _completions(out, task):
    return [s["resps"][0][0] for s in _samples(out, task)]


def test_vllm_serves_the_lora_like_hf_merges_it(vllm_model_dir, vllm_lora_dir, tmp_path, data_root):
    """Generation through `lora_local_path` (`--no-merge`) and through the merged checkpoint (CPU default); on
    CPU log-likelihoods come from HF (vLLM-CPU prompt logprobs are slow and crash with a LoRA). All must agree
    with HF's in-memory merge, and differ from the base."""
    from tinyeval.eval.run import EvalConfig, evaluate

    def run(name, backend, adapter, tasks, merge=None):
        return evaluate(EvalConfig(model=str(vllm_model_dir), adapter=adapter, backend=backend, tasks=tasks,
                                   out=tmp_path / name, merge=merge, **TINY))

    hf = run("hf", "hf", vllm_lora_dir, ["gsm8k", "boolq"])
    run("base", "hf", None, ["gsm8k", "boolq"])
    lora = run("vllm-lora", "vllm", vllm_lora_dir, ["gsm8k"], merge=False)  # CPU default is merged
    merged = run("vllm-merged", "vllm", vllm_lora_dir, ["gsm8k", "boolq"])
    assert lora["backend"] == merged["backend"] == "vllm" and lora["tasks"]["gsm8k"]["n"] == 2
    assert merged["settings"]["loglikelihood_backend"] == "hf" and lora["settings"]["loglikelihood_backend"] == "vllm"
    assert lora["tasks"]["gsm8k"]["config_hash"] == hf["tasks"]["gsm8k"]["config_hash"]
    assert _completions(tmp_path / "vllm-lora", "gsm8k") == _completions(tmp_path / "hf", "gsm8k")
    assert _completions(tmp_path / "vllm-merged", "gsm8k") == _completions(tmp_path / "hf", "gsm8k")
    assert _completions(tmp_path / "hf", "gsm8k") != _completions(tmp_path / "base", "gsm8k")
    lls = {n: _loglikelihoods(tmp_path / n, "boolq") for n in ("vllm-merged", "hf", "base")}
    assert lls["vllm-merged"] == pytest.approx(lls["hf"], abs=0.05)
    assert max(abs(a - b) for a, b in zip(lls["hf"], lls["base"])) > 0.2  # the adapter matters: the check has teeth


def _lora(out, model_dir, seed):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = LoraConfig(r=2, lora_alpha=16, init_lora_weights=False,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), cfg).save_pretrained(out)
    return out


def test_a_kept_engine_switches_adapters_and_scores_like_fresh_runs(vllm_model_dir, vllm_lora_dir, tmp_path,
                                                                    data_root):
    """Three evaluations in one process on one kept engine (one engine start): adapter A, adapter B, the base model
    (its weights restored). Per item, each generates what HF generates with that model in a fresh run (the test
    above: a fresh vLLM engine on the merged checkpoint generates what HF does), and the three differ."""
    from tinyeval.eval import engine_pool
    from tinyeval.eval.run import EvalConfig, evaluate

    other = _lora(tmp_path / "lora-b", vllm_model_dir, seed=2)
    runs = {"a": vllm_lora_dir, "b": other, "base": None}
    try:
        for name, adapter in runs.items():
            evaluate(EvalConfig(model=str(vllm_model_dir), adapter=adapter, backend="vllm", tasks=["gsm8k"],
                                out=tmp_path / f"kept-{name}", keep_engine=True, seed=len(name), **TINY))
            if name == "a":
                engine = engine_pool.serving().lm
        kept = engine_pool.serving()
        assert kept.lm is engine and kept.uses == 3 and kept.serving is None and kept.mode == "merge"
    finally:
        engine_pool.close()
    for name, adapter in runs.items():
        evaluate(EvalConfig(model=str(vllm_model_dir), adapter=adapter, backend="hf", tasks=["gsm8k"],
                            out=tmp_path / f"fresh-{name}", **TINY))
        assert _completions(tmp_path / f"kept-{name}", "gsm8k") == _completions(tmp_path / f"fresh-{name}", "gsm8k")
    assert len({tuple(_completions(tmp_path / f"kept-{n}", "gsm8k")) for n in runs}) == 3  # the switch has teeth
