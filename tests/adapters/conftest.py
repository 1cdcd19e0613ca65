"""Tiny in-memory Llama models for adapter tests (no tokenizer, no disk)."""

from __future__ import annotations

import copy

import pytest


def tiny_llama(layers: int = 2, dtype: str = "float32", seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).to(getattr(torch, dtype)).eval()


@pytest.fixture
def make_llama():
    return tiny_llama


@pytest.fixture
def model():
    return tiny_llama()


@pytest.fixture
def model_pair():
    """Two identical copies of one tiny model (one to adapt, one as the untouched base)."""
    m = tiny_llama()
    return m, copy.deepcopy(m)


@pytest.fixture
def tokens():
    import torch

    return torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test gets its own SVD cache so no test depends on another's leftovers."""
    monkeypatch.setenv("TINYEVAL_CACHE", str(tmp_path / "cache"))
