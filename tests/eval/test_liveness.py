"""The adapter liveness proof: the scored model must be the trained adapter, not the base model."""

from __future__ import annotations

import pytest
import torch

from tinyeval.errors import TinyevalError
from tinyeval.eval.liveness import PROBES, Reference, check, hf_logprobs, next_token_logprobs, probe_ids, tolerance


def _adapter(tiny_llama_dir, tmp_path, method: str, trained: bool):
    """A saved adapter: `trained` moves its parameters off the no-op start (TinyLoRA v = 0, LoRA B = 0)."""
    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.models import load_model

    model, _ = load_model(str(tiny_llama_dir), dtype="float32")
    handle = attach(model, AdapterConfig(method=method, params=8, rank=2 if method == "tinylora" else 1))
    if trained:
        gen = torch.Generator().manual_seed(0)  # a fixed draw: the tests must not depend on the global RNG's state
        with torch.no_grad():
            for p in handle.parameters() if hasattr(handle, "parameters") else model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
    return handle.save(tmp_path / method)


@pytest.mark.parametrize("method", ["tinylora", "lora"])
def test_merged_model_is_proven_live(tiny_llama_dir, tmp_path, method):
    from tinyeval.eval.backends import merge_with_proof
    from tinyeval.models import load_model

    adapter = _adapter(tiny_llama_dir, tmp_path, method, trained=True)
    model, tok = load_model(str(tiny_llama_dir), dtype="float32")
    merged, proof = merge_with_proof(model, tok, adapter, "float32")
    assert proof["verdict"] == "live" and proof["served"] == "hf-merged" and proof["probes"] == len(PROBES)
    assert proof["served_vs_adapted"] <= proof["tolerance"] < proof["adapted_vs_base"]
    assert not any(hasattr(m, "lora_A") for m in merged.modules())  # really merged, no adapter left


def test_untrained_adapter_is_recorded_as_a_no_op(tiny_llama_dir, tmp_path):
    from tinyeval.eval.backends import merge_with_proof
    from tinyeval.models import load_model

    adapter = _adapter(tiny_llama_dir, tmp_path, "tinylora", trained=False)
    model, tok = load_model(str(tiny_llama_dir), dtype="float32")
    assert merge_with_proof(model, tok, adapter, "float32")[1]["verdict"] == "no-op"


def _reference(tiny_llama_dir, tmp_path):
    from tinyeval.adapters import load_adapter
    from tinyeval.models import load_model

    adapter = _adapter(tiny_llama_dir, tmp_path, "tinylora", trained=True)
    model, tok = load_model(str(tiny_llama_dir), dtype="float32")
    ids = probe_ids(tok)
    base = next_token_logprobs(model, ids)
    handle = load_adapter(model, adapter)
    return handle, Reference(ids, next_token_logprobs(handle.model, ids), base)


def _shifted(served, by: float):
    """A served model whose log-probs are all moved by `by` nats."""
    return lambda ids: [{t: v + by for t, v in d.items()} for d in served(ids)]


def test_a_served_base_model_is_refused_and_the_right_one_accepted(tiny_llama_dir, tmp_path):
    """Simulate an engine that never received the adapter: it serves the base model's log-probs."""
    handle, ref = _reference(tiny_llama_dir, tmp_path)
    tol = tolerance("float32")
    with handle.disabled() as model:
        base_served = hf_logprobs(model)(ref.ids)
    with pytest.raises(TinyevalError, match="ignores the adapter: it serves the base model"):
        check(ref, lambda ids: base_served, "vllm-merged", tol)
    with pytest.raises(TinyevalError, match="is not the adapted model"):
        check(ref, _shifted(hf_logprobs(handle.model), 0.5), "vllm-merged", tol)  # some other model
    record = check(ref, _shifted(hf_logprobs(handle.model), 1e-4), "vllm-merged", tol)
    assert record["verdict"] == "live" and record["replicas"] == 1 and record["top_k"] == 20
    assert record["served_vs_adapted"] == pytest.approx(1e-4, abs=1e-5) and tol < record["adapted_vs_base"]
    assert tolerance("bfloat16") > tolerance("float16") > tolerance("float32") == tolerance("torch.float32")
    assert tolerance("float32", "bfloat16") == tolerance("bfloat16")
    with pytest.raises(TinyevalError, match="no liveness tolerance for dtype 'int8'"):
        tolerance("int8")


def test_every_replica_must_serve_the_adapter(tiny_llama_dir, tmp_path):
    """lm-eval's data parallelism: every replica answers every probe; one that serves the base is refused by number."""
    handle, ref = _reference(tiny_llama_dir, tmp_path)
    live = hf_logprobs(handle.model)(ref.ids)
    with handle.disabled() as model:
        base = hf_logprobs(model)(ref.ids)
    assert check(ref, lambda ids: live + live, "vllm-lora", tolerance("float32"))["replicas"] == 2
    with pytest.raises(TinyevalError, match="replica 2 of 2"):
        check(ref, lambda ids: live + base, "vllm-lora", tolerance("float32"))
    with pytest.raises(TinyevalError, match="answered 3 probes"):
        check(ref, lambda ids: live[:3], "vllm-lora", tolerance("float32"))


def test_a_served_model_whose_top_tokens_miss_the_adapted_top_one_is_refused(tiny_llama_dir, tmp_path):
    handle, ref = _reference(tiny_llama_dir, tmp_path)
    live = hf_logprobs(handle.model)(ref.ids)
    top = int(ref.adapted[0].argmax())
    cut = [{t: v for t, v in d.items() if (j, t) != (0, top)} for j, d in enumerate(live)]
    with pytest.raises(TinyevalError, match="most likely token is not in its top 19"):
        check(ref, lambda ids: cut, "vllm-lora", tolerance("float32"))


def test_full_fine_tuning_is_proven_live_without_a_disabled_base(tiny_llama_dir, tmp_path):
    """Full fine-tuning loads its weights into the model in place and cannot disable them: the base log-probs are
    taken before it loads."""
    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.eval.backends import merge_with_proof
    from tinyeval.models import load_model

    model, _ = load_model(str(tiny_llama_dir), dtype="float32")
    handle = attach(model, AdapterConfig(method="full"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    adapter = handle.save(tmp_path / "full")
    model, tok = load_model(str(tiny_llama_dir), dtype="float32")
    assert merge_with_proof(model, tok, adapter, "float32")[1]["verdict"] == "live"
