"""tinyeval.vllm without starting an engine: rank buckets, CPU settings, engine arguments, merged checkpoints."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from tinyeval import vllm


def test_lora_rank_bucket_is_the_smallest_accepted_value(tmp_path):
    assert [vllm.vllm_lora_rank(r) for r in (1, 2, 8, 9, 300, 512)] == [1, 8, 8, 16, 320, 512]
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 2}))
    assert vllm.lora_dir_rank(tmp_path) == 8


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU settings")
def test_cpu_engines_get_a_kv_budget_eager_mode_and_every_core(monkeypatch):
    seen = {}
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=lambda **kw: seen.update(kw)))
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("VLLM_CPU_NUM_OF_RESERVED_CPU", raising=False)
    vllm.make_llm("/models/x", "float32", seed=3, gpu_memory_utilization=0.45, max_model_len=64)
    assert seen == {"model": "/models/x", "dtype": "float32", "seed": 3, "enforce_eager": True,
                    "kv_cache_memory_bytes": vllm.CPU_KV_CACHE_BYTES, "max_model_len": 64}
    assert vllm.os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"  # no core kept back on a small machine


def test_merged_checkpoint_serves_what_the_adapter_computes(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tinyeval.adapters import AdapterConfig, attach

    handle = attach(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), AdapterConfig(params=3, rank=2))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.normal_(0, 0.5)
    ids = torch.randint(0, 1000, (2, 7))
    with torch.no_grad():
        expected = handle.model(input_ids=ids).logits
    out = vllm.merged_checkpoint(handle.merged_model(), AutoTokenizer.from_pretrained(tiny_llama_dir), tmp_path / "m")
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, expected, atol=1e-4, rtol=1e-4)
    assert (out / "tokenizer_config.json").is_file()
