"""Shared fixtures: the data root, offline hub, and a tiny random-init Llama for fast unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TINYEVAL_DATA", str(REPO.parent / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ["TINYEVAL_DATA"])
    if not (root / "gsm8k" / "test.jsonl").is_file():
        pytest.skip(f"no data root at {root}")
    return root


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded SmolLM2 converted to bf16 safetensors (converted once per cache)."""
    from tinyeval.models import embedded_model_dir

    return embedded_model_dir()


def _tiny_llama(out: Path, tokenizer_dir: Path, **shape) -> Path:
    """A random-init 2-layer Llama of the given shape with SmolLM2's tokenizer, saved to `out`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, num_hidden_layers=2, tie_word_embeddings=True, bos_token_id=1,
                         eos_token_id=2, pad_token_id=2, **shape)
    LlamaForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer random-init Llama with SmolLM2's tokenizer: real shapes of every module type, ~3M params."""
    return _tiny_llama(tmp_path_factory.mktemp("tiny-llama"), smollm2_dir, hidden_size=64, intermediate_size=128,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)


@pytest.fixture(scope="session")
def tiny_llama_vllm_dir(tmp_path_factory, smollm2_dir) -> Path:
    """Like `tiny_llama_dir` but with head_dim 64: vLLM's CPU attention has no kernel for head_dim 16."""
    return _tiny_llama(tmp_path_factory.mktemp("tiny-llama-vllm"), smollm2_dir, hidden_size=128,
                       intermediate_size=256, num_attention_heads=2, num_key_value_heads=1,
                       max_position_embeddings=2048)
