"""Fixtures for the eval tests: a non-zero PEFT LoRA on the tiny model and one shared tiny run."""

from __future__ import annotations

import pytest

TINY = {"limit": 2, "max_gen_toks": 8, "dtype": "float32", "batch_size": 8}  # fp32: bf16 matmuls are slow on CPU


@pytest.fixture(scope="session")
def tiny_lora_dir(tmp_path_factory, tiny_llama_dir):
    """A rank-2 PEFT LoRA on every linear layer with random (non-zero) A and B: it must change outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    cfg = LoraConfig(r=2, lora_alpha=16, init_lora_weights=False,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    out = tmp_path_factory.mktemp("tiny-lora")
    get_peft_model(model, cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_all_run(tmp_path_factory, tiny_llama_dir, data_root):
    """Every task of the suite (tinyeval_all + the 8-shot GSM8K variant) on the tiny model, 2 items each."""
    from tinyeval.eval.run import EvalConfig, evaluate

    out = tmp_path_factory.mktemp("tiny-all")
    record = evaluate(EvalConfig(model=str(tiny_llama_dir), tasks=["tinyeval_all", "gsm8k_cot_8shot"], out=out,
                                 backend="hf", **TINY))
    return out, record
