"""What the unmerged low-rank path keeps for backward, against the base model's own saved activations.

Counted exactly with `saved_tensors_hooks`: every tensor autograd saves, once per storage, minus the model's
parameters and buffers (saving a weight costs no memory). The base is the same frozen model with the gradient
flowing from its input embeddings, so both graphs hold every activation the base's backward needs; the adapted
model may add only its rank-r tensors (h = x Aᵀ and B R per module), not a copy of any layer's input.
"""

from __future__ import annotations

import pytest
import torch

from tinyeval.adapters import AdapterConfig, attach


def tiny_qwen(dtype: torch.dtype):
    """A random Qwen2-shaped model: q/k/v biases, grouped-query attention, SwiGLU, tied embeddings."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=256, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True)
    return Qwen2ForCausalLM(config).to(dtype).eval()


def saved_activation_bytes(model, embeds: torch.Tensor) -> int:
    """Bytes of the distinct non-parameter storages autograd saves in one forward (then runs the backward)."""
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(inputs_embeds=embeds, use_cache=False).logits
    logits.float().pow(2).mean().backward()
    return sum(saved.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("method", ["tinylora", "lora-xs"])
def test_adapted_model_keeps_at_most_5_percent_more_activations_than_the_base(dtype, method):
    base = tiny_qwen(dtype).requires_grad_(False)
    ids = torch.randint(0, 256, (4, 64), generator=torch.Generator().manual_seed(1))
    embeds = base.get_input_embeddings()(ids).detach()
    base_bytes = saved_activation_bytes(base, embeds.clone().requires_grad_())

    adapted = tiny_qwen(dtype)
    handle = attach(adapted, AdapterConfig(method=method, params=13, rank=2))
    with torch.no_grad():
        handle.state.v.fill_(0.01)
    adapted_bytes = saved_activation_bytes(adapted, embeds.clone().requires_grad_())
    assert handle.state.v.grad is not None and bool(handle.state.v.grad.abs().sum() > 0)
    assert base_bytes > 0 and adapted_bytes / base_bytes <= 1.05, (base_bytes, adapted_bytes)
