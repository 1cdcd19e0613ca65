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


# ---- an engine beside the trainer on one GPU: gpu_memory_utilization -----------------------------------------

GiB = 1 << 30


def test_kv_bytes_per_token_counts_k_and_v_of_every_layer():
    from transformers import LlamaConfig, Qwen2Config

    qwen15 = Qwen2Config(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2)
    assert vllm.kv_bytes_per_token(qwen15, 2) == 2 * 28 * 2 * 128 * 2 == 28 * 1024  # 28 KiB in bf16
    mha = LlamaConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=None)
    assert vllm.kv_bytes_per_token(mha, 4) == 2 * 3 * 4 * 16 * 4


def test_gpu_memory_utilization_is_what_the_engine_needs_and_no_more():
    h200, a100_40 = 139 * GiB, 40 * GiB
    weights, kv = int(2.9 * GiB), int(1.1 * GiB)  # Qwen2.5-1.5B bf16; 32 rollouts x 1,280 tokens x 28 KiB
    share = vllm.gpu_memory_utilization(weights, h200, kv)
    working = vllm.VLLM_WORKING_BYTES + vllm.VLLM_WORKING_PER_WEIGHT * weights
    assert share == pytest.approx((weights + working + kv) / h200, abs=0.01) and share == 0.05  # rounded up
    assert share * h200 >= weights + working + kv
    assert vllm.gpu_memory_utilization(weights, a100_40, kv) > share  # the same engine is a larger share of less
    # a KV cache wanted beyond the cap is cut to it: the engine never takes more than max_share of the GPU
    assert vllm.gpu_memory_utilization(weights, a100_40, 100 * GiB) == vllm.COLOCATED_MAX_SHARE
    assert vllm.gpu_memory_utilization(weights, a100_40, 100 * GiB, max_share=0.3) == 0.3
    # 7B in bf16 (15.2 GB) fits beside its trainer on an 80 GB GPU, not on a 24 GB one
    assert vllm.gpu_memory_utilization(int(14.2 * GiB), 80 * GiB, 4 * GiB) < 0.35
    with pytest.raises(vllm.TinyevalError, match="--engine hf"):
        vllm.gpu_memory_utilization(int(14.2 * GiB), 24 * GiB, 4 * GiB, min_kv_bytes=GiB // 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_colocated_utilization_reads_this_gpu(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16).to("cuda")
    share = vllm.colocated_utilization(model, max_model_len=256, max_seqs=8)
    free, total = torch.cuda.mem_get_info()
    assert 0 < share <= vllm.COLOCATED_MAX_SHARE and share * total <= free


# ---- tensor / data parallelism (tinyeval eval --tp / --dp) ---------------------------------------------------

def test_parallel_flags_are_validated(monkeypatch):
    vllm.check_parallel(1, 1)
    for tp, dp in ((0, 1), (1, -2), (1.5, 1)):
        with pytest.raises(vllm.TinyevalError, match="integer >= 1"):
            vllm.check_parallel(tp, dp)
    monkeypatch.setattr(vllm, "on_cpu", lambda: True)
    with pytest.raises(vllm.TinyevalError, match="need CUDA GPUs; on CPU vLLM runs one worker"):
        vllm.check_parallel(2, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_parallel_flags_are_checked_against_this_machines_gpus():
    n = torch.cuda.device_count()
    with pytest.raises(vllm.TinyevalError, match=f"needs {2 * n} GPUs, this machine has {n}"):
        vllm.check_parallel(n, 2)
    vllm.check_parallel(n, 1)  # every GPU for one copy: allowed
