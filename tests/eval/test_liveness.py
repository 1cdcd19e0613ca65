"""The adapter liveness proof: the scored model must be the trained adapter, not the base model."""

from __future__ import annotations

import pytest
import torch

from tinyeval.errors import TinyevalError
from tinyeval.eval.liveness import PROBES, check, next_token_logprobs, tolerance


def _adapter(tiny_llama_dir, tmp_path, method: str, trained: bool):
    """A saved adapter: `trained` moves its parameters off the no-op start (TinyLoRA v = 0, LoRA B = 0)."""
    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.models import load_model

    model, _ = load_model(str(tiny_llama_dir), dtype="float32")
    handle = attach(model, AdapterConfig(method=method, params=8, rank=2 if method == "tinylora" else 1))
    if trained:
        with torch.no_grad():
            for p in handle.parameters() if hasattr(handle, "parameters") else model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.5)
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


def test_a_served_base_model_is_refused_and_the_right_one_accepted(tiny_llama_dir, tmp_path):
    """Simulate an engine that never received the adapter: it serves the base model's log-probs."""
    from tinyeval.adapters import load_adapter
    from tinyeval.models import load_model

    adapter = _adapter(tiny_llama_dir, tmp_path, "tinylora", trained=True)
    model, tok = load_model(str(tiny_llama_dir), dtype="float32")
    handle = load_adapter(model, adapter)
    adapted = next_token_logprobs(handle.model, tok, list(PROBES))
    with handle.disabled():
        base = next_token_logprobs(handle.model, tok, list(PROBES))
    with pytest.raises(TinyevalError, match="serves the base model"):
        check(base.clone(), adapted, base, tolerance("float32"), "vllm-merged")
    with pytest.raises(TinyevalError, match="liveness check failed"):
        check(adapted + 0.5, adapted, base, tolerance("float32"), "vllm-merged")  # some other model
    assert check(adapted + 1e-4, adapted, base, tolerance("float32"), "vllm-merged")["verdict"] == "live"
    assert tolerance("bfloat16") > tolerance("float32")


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
