import json

import pytest
import torch

from tinyeval.adapters import AdapterConfig, attach, load_adapter
from tinyeval.errors import TinyevalError


def logits(model, tokens):
    with torch.no_grad():
        return model(tokens).logits


def tensor_bytes(path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())


@pytest.mark.parametrize("method", ["tinylora", "lora-xs"])
def test_save_load_round_trip(make_llama, tokens, tmp_path, method):
    h = attach(make_llama(), AdapterConfig(method=method, params=7))
    with torch.no_grad():
        h.state.v.normal_()
    expected = logits(h.model, tokens)
    h.save(tmp_path / "a")
    loaded = load_adapter(make_llama(), tmp_path / "a")
    assert torch.equal(loaded.state.v, h.state.v) and loaded.num_trainable == h.num_trainable
    assert torch.equal(logits(loaded.model, tokens), expected)
    assert loaded.trainable_parameters()[0].requires_grad


def test_v_payload_is_tiny(make_llama, tmp_path):
    model = make_llama(layers=13)
    h = attach(model, AdapterConfig(params=13, target_modules=("q_proj",)))  # 13 modules, u = 1: 13 params
    assert h.num_trainable == 13
    h.save(tmp_path / "bf16", v_dtype="bfloat16")
    h.save(tmp_path / "fp32")
    assert tensor_bytes(tmp_path / "bf16" / "v.safetensors") == 26
    assert tensor_bytes(tmp_path / "fp32" / "v.safetensors") == 52
    meta = json.loads((tmp_path / "bf16" / "adapter.json").read_text())
    assert meta["plan"]["trainable"] == 13 and meta["v_dtype"] == "bfloat16"


def test_wrong_base_is_a_clear_error(make_llama, tmp_path):
    h = attach(make_llama(), AdapterConfig(params=7))
    h.save(tmp_path / "a")
    with pytest.raises(TinyevalError, match="different base model"):
        load_adapter(make_llama(seed=1), tmp_path / "a")  # same architecture, other weights
    with pytest.raises(TinyevalError, match="adapted modules differ"):
        load_adapter(make_llama(layers=3), tmp_path / "a")
    with pytest.raises(TinyevalError, match="not a tinyeval adapter"):
        load_adapter(make_llama(), tmp_path)


def test_merged_model_is_not_a_valid_base(make_llama, tmp_path):
    h = attach(make_llama(), AdapterConfig(params=7))
    with torch.no_grad():
        h.state.v.fill_(0.3)
    h.save(tmp_path / "a")
    h.merge()
    with pytest.raises(TinyevalError, match="unmerge"):
        h.save(tmp_path / "b")
    merged = h.detach()
    with pytest.raises(TinyevalError, match="different base model"):
        load_adapter(merged, tmp_path / "a")


def test_lora_artifact_round_trip(make_llama, tokens, tmp_path):
    h = attach(make_llama(), AdapterConfig(method="lora", rank=2))
    with torch.no_grad():
        for p in h.trainable_parameters():
            p.normal_(std=0.1)
    expected = logits(h.model, tokens)
    h.save(tmp_path / "lora")
    loaded = load_adapter(make_llama(), tmp_path / "lora")
    torch.testing.assert_close(logits(loaded.model, tokens), expected)
    with pytest.raises(TinyevalError, match="different base model"):
        load_adapter(make_llama(seed=2), tmp_path / "lora")


def test_full_saves_whole_weights_and_checks_the_base(make_llama, tokens, tmp_path):
    h = attach(make_llama(), AdapterConfig(method="full"))
    with torch.no_grad():
        h.model.model.layers[0].mlp.up_proj.weight.add_(0.5)  # "training"
    expected = logits(h.model, tokens)
    h.save(tmp_path / "full")
    loaded = load_adapter(make_llama(), tmp_path / "full")
    assert torch.equal(logits(loaded.model, tokens), expected)
    with pytest.raises(TinyevalError, match="different base model"):
        load_adapter(make_llama(seed=3), tmp_path / "full")
    with pytest.raises(TinyevalError, match="no copy of the base"):
        with loaded.disabled():
            pass
