"""Rollout engines and the adapter seam: HF generate shapes, rank-r LoRA export parity, vLLM sync."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch


@pytest.fixture
def tiny(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.padding_side, tok.pad_token = "left", tok.pad_token or tok.eos_token
    return model, tok


def test_hf_engine_batches_and_masks(tiny):
    from tinyeval.train.rollout.hf import HFEngine

    model, tok = tiny
    torch.manual_seed(0)
    ro = HFEngine(model, tok, batch_size=2).generate(["a b c", "d", "e f"], max_new_tokens=5, temperature=1.0)
    n = 3
    assert ro.prompt_ids.shape[0] == ro.completion_ids.shape[0] == n and len(ro.texts) == n
    assert ro.prompt_mask.sum(1).tolist() == [len(tok(p, add_special_tokens=False)["input_ids"])
                                             for p in ["a b c", "d", "e f"]]
    assert int(ro.completion_mask.sum()) == ro.tokens and ro.completion_mask.shape[1] <= 5
    assert ro.logprobs is None  # the trainer computes them in its own forward


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hf_engine_generates_merged_and_restores_base_bits(tiny, dtype):
    """Rollouts see the adapter (greedy tokens = the unmerged model's), and the base weights come back bit for bit."""
    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.train.rollout.hf import HFEngine

    model, tok = tiny
    model = model.to(dtype)
    handle = attach(model, AdapterConfig(method="tinylora", params=3, rank=2))
    with torch.no_grad():
        handle.state.v.copy_(torch.tensor([[40.0], [-60.0], [30.0]]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged_during, real_generate = [], model.generate

    def spy(*args, **kwargs):
        merged_during.append(handle.state.merged)
        return real_generate(*args, **kwargs)

    model.generate = spy
    prompts = ["a b c", "d e"]
    ro = HFEngine(model, tok, batch_size=2, handle=handle).generate(prompts, max_new_tokens=6, temperature=0.0)
    assert merged_during == [True] and not handle.state.merged
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    del model.generate
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    ref = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)  # unmerged
    with torch.no_grad(), handle.disabled():
        base = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert not torch.equal(ref, base)  # the adapter changes what is generated, so the check below means something
    for i in range(len(prompts)):
        got = ro.completion_ids[i][ro.completion_mask[i]]
        assert got.tolist() == ref[i, enc["input_ids"].shape[1]:][: len(got)].tolist()


def test_trainer_logprobs_match_generate_scores(tiny):
    """token_logprobs (one forward, left padding, position ids from the mask) == generate's own scores."""
    from tinyeval.train.logprobs import token_logprobs

    model, tok = tiny
    enc = tok(["hello there friend", "hi"], return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=4, do_sample=False, output_scores=True, return_dict_in_generate=True,
                         pad_token_id=tok.pad_token_id, eos_token_id=None)
    new = out.sequences[:, enc["input_ids"].shape[1]:]  # [2, 4]
    expect = torch.stack([torch.log_softmax(s.float(), -1).gather(1, new[:, i:i + 1]).squeeze(1)
                          for i, s in enumerate(out.scores)], 1)
    attn = torch.cat([enc["attention_mask"], torch.ones_like(new)], 1).bool()
    got = token_logprobs(model, out.sequences, attn, 4)
    torch.testing.assert_close(got, expect, atol=1e-4, rtol=1e-4)


def test_exported_lora_reproduces_the_adapter(tiny, tiny_llama_dir, tmp_path):
    """What the vLLM engine is sent (a rank-r PEFT LoRA) computes the same function as the trained adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tinyeval.adapters import AdapterConfig, attach

    model, _ = tiny
    handle = attach(model, AdapterConfig(method="tinylora", params=3, rank=2))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.normal_(0, 0.5)
    ids = torch.randint(0, 1000, (2, 7))
    trained = handle.model(input_ids=ids).logits
    with handle.disabled():
        base = handle.model(input_ids=ids).logits
    assert (trained - base).abs().max() > 1e-3  # the adapter does something
    path = handle.export_lora(tmp_path / "lora")
    fresh = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    served = PeftModel.from_pretrained(fresh, str(path))(input_ids=ids).logits
    torch.testing.assert_close(served, trained, atol=1e-4, rtol=1e-4)


def test_engine_choice_follows_what_the_adapter_can_export(tiny, tiny_llama_dir):
    """vLLM is sized from the rank of the LoRA the handle exports; a handle without a LoRA form (full fine-tuning)
    gets HF generate with a warning, decided by the handle's own refusal, not by its method's name."""
    from transformers import AutoModelForCausalLM

    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.train.config import GRPOConfig
    from tinyeval.train.rollout.engines import lora_rank, make_engine
    from tinyeval.train.rollout.hf import HFEngine

    model, tok = tiny
    assert lora_rank(attach(model, AdapterConfig(method="lora", rank=3))) == 3
    full = attach(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), AdapterConfig(method="full"))
    assert lora_rank(full) is None
    with pytest.warns(RuntimeWarning, match="no LoRA form"):
        engine = make_engine(GRPOConfig(engine="vllm"), full, tok, "unused: HF needs no model directory")
    assert isinstance(engine, HFEngine)


def test_vllm_engine_on_a_gpu_is_sized_beside_the_trainer(tiny, tiny_llama_dir, monkeypatch):
    """The CUDA branch of the engine factory, run on CPU with vLLM faked: the engine gets the share
    `colocated_utilization` computes for the step's rollouts at full length, and is synced once at start."""
    import tinyeval.vllm
    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.train.config import GRPOConfig
    from tinyeval.train.rollout import vllm as rollout_vllm
    from tinyeval.train.rollout.engines import make_engine

    model, tok = tiny
    handle = attach(model, AdapterConfig(method="tinylora", params=3, rank=2))
    sized, built = [], {}

    class FakeEngine:
        name = "vllm"

        def __init__(self, model_dir, tokenizer, rank, **kw):
            built.update(kw, rank=rank, syncs=0)

        def sync(self, handle, step):
            built["syncs"] += 1

    monkeypatch.setattr(tinyeval.vllm, "on_cpu", lambda: False)
    monkeypatch.setattr(tinyeval.vllm, "colocated_utilization", lambda m, n_len, seqs: sized.append((m, n_len, seqs))
                        or 0.07)
    monkeypatch.setattr(rollout_vllm, "VLLMEngine", FakeEngine)
    cfg = GRPOConfig(engine="vllm", vllm_sync="lora", max_prompt_tokens=100, max_new_tokens=28)
    make_engine(cfg, handle, tok, str(tiny_llama_dir), rollouts=12)  # a local dir: no embedded wheel needed
    assert sized == [(handle.model, 128, 12)]
    assert built["gpu_memory_utilization"] == 0.07 and built["max_model_len"] == 128 and built["rank"] == 2
    assert built["sync"] == "lora" and built["syncs"] == 0  # GRPO syncs before its first rollout (below)


def test_grpo_syncs_the_engine_before_its_first_rollout(tiny, parity_task):
    """The first sync is the first rollout's, not setup's: a resumed run loads its checkpoint after setup, and the
    engine must sample from that policy (and be checked live on it), not from the freshly attached adapter."""
    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.train.config import GRPOConfig
    from tinyeval.train.grpo import GRPO
    from tinyeval.train.rollout.hf import HFEngine
    from tinyeval.train.tasks import get_task
    from tinyeval.train.types import Example

    model, tok = tiny
    handle = attach(model, AdapterConfig(method="tinylora", params=3, rank=2))
    events = []

    class Recording(HFEngine):
        def sync(self, handle, step):
            events.append(("sync", float(handle.trainable_parameters()[0].detach().abs().sum())))
            return super().sync(handle, step)

        def generate(self, *a, **kw):
            events.append(("generate",))
            return super().generate(*a, **kw)

    cfg = GRPOConfig(engine="hf", group_size=2, max_new_tokens=4)
    grpo = GRPO(handle, tok, Recording(model, tok, 8, handle), get_task("parity"), cfg, micro_batch=4)
    with torch.no_grad():
        handle.trainable_parameters()[0].fill_(0.25)  # what loading a resumed run's checkpoint does
    examples = [Example("1 0 1", "0"), Example("1 1", "0")]
    grpo.prepare(examples)
    grpo.after_update(1)
    grpo.prepare(examples)
    assert [e[0] for e in events] == ["sync", "generate", "sync", "generate"]
    assert events[0][1] > 0  # the first sync shipped the loaded policy, not the attached v = 0


def test_every_lora_sync_gets_a_new_request_id(tiny, monkeypatch, tmp_path):
    """vLLM caches an adapter by its int id: a reused id would keep serving the old policy."""
    import sys
    import types

    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.train.rollout.vllm import VLLMEngine

    monkeypatch.setitem(sys.modules, "vllm.lora.request", types.SimpleNamespace(
        LoRARequest=lambda name, int_id, path: types.SimpleNamespace(lora_name=name, lora_int_id=int_id,
                                                                     lora_path=path)))
    handle = attach(tiny[0], AdapterConfig(method="tinylora", params=3, rank=2))
    engine = VLLMEngine.__new__(VLLMEngine)  # the sync bookkeeping only: no engine is started
    engine.mode, engine._dir, engine._last, engine.syncs = "lora", tmp_path, None, 0
    engine.liveness = {"verdict": "live"}  # already proven live: no further check (tested below)
    first = engine.sync(handle, 5).bytes, engine.lora
    again = engine.sync(handle, 5).bytes, engine.lora  # the same step synced twice (e.g. after a resume)
    assert first[1].lora_int_id == 1 and again[1].lora_int_id == 2 and first[1].lora_path != again[1].lora_path
    assert first[0] == again[0] < 100_000  # adapter-sized
    assert not Path(first[1].lora_path).exists() and Path(again[1].lora_path).is_dir()  # the old file is gone


class _MergingEngine:
    """A stand-in `vllm.LLM` with the merge sync: an HF copy of the base that the sync's LoRA file is merged into
    (or, `broken`, a reload that silently keeps the base weights)."""

    def __init__(self, base, broken: bool) -> None:
        self.base, self.served, self.broken = base, base, broken

    def collective_rpc(self, name, args):
        import copy

        from peft import PeftModel

        if not self.broken:
            self.served = PeftModel.from_pretrained(copy.deepcopy(self.base), args[0]).merge_and_unload()

    def reset_prefix_cache(self) -> None:
        pass


@pytest.mark.parametrize("broken", [False, True])
def test_vllm_syncs_are_checked_until_the_adapter_is_live(tiny, tmp_path, monkeypatch, broken):
    """At initialisation the adapter is the base (verdict no-op, nothing to prove); once it has moved, the next sync
    proves the engine serves it, and a merge that silently kept the base weights stops the run. After one live
    verdict the checks stop."""
    import copy

    import tinyeval.vllm
    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.eval.liveness import hf_logprobs
    from tinyeval.errors import TinyevalError
    from tinyeval.train.rollout.vllm import VLLMEngine

    model, tok = tiny
    base = copy.deepcopy(model)
    handle = attach(model, AdapterConfig(method="tinylora", params=3, rank=2))
    monkeypatch.setattr(tinyeval.vllm, "probe_logprobs", lambda llm, k, lora: hf_logprobs(llm.served, k))
    engine = VLLMEngine.__new__(VLLMEngine)  # no engine is started: _MergingEngine stands in for it
    engine.mode, engine._dir, engine._last, engine.syncs, engine.liveness = "merge", tmp_path, None, 0, None
    engine.llm, engine.tokenizer, engine.dtype, engine.model_dir, engine.lora = _MergingEngine(base, broken), tok, \
        "float32", "unused", None
    engine.sync(handle, 0)
    assert engine.liveness["verdict"] == "no-op" and engine.liveness["served"] == "vllm-merge-sync"
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.normal_(0, 0.5)  # training moved the adapter
    if broken:
        with pytest.raises(TinyevalError, match=r"\(vllm-merge-sync\): the served model ignores the adapter"):
            engine.sync(handle, 1)
        return
    engine.sync(handle, 1)
    assert engine.liveness["verdict"] == "live"
    monkeypatch.setattr(VLLMEngine, "check_live", lambda self, handle: pytest.fail("checked after a live verdict"))
    engine.sync(handle, 2)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")
def test_vllm_engine_syncs_a_lora_each_step(tiny_llama_vllm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.train.rollout.vllm import VLLMEngine

    tok = AutoTokenizer.from_pretrained(tiny_llama_vllm_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_vllm_dir, dtype=torch.float32)
    handle = attach(model, AdapterConfig(method="tinylora", params=3, rank=2))
    engine = VLLMEngine(tiny_llama_vllm_dir, tok, rank=2, dtype="float32", max_model_len=128, sync="lora")
    try:
        sync = engine.sync(handle, 0)
        assert 0 < sync.bytes < 5_000_000  # adapter-sized, not the model
        assert engine.liveness["verdict"] == "no-op"  # v = 0: the LoRA is exactly the base model
        ro = engine.generate(["a b c", "d"], max_new_tokens=4, temperature=1.0)
        assert ro.logprobs is not None and ro.logprobs.shape == ro.completion_mask.shape
        assert bool((ro.logprobs[ro.completion_mask] <= 0).all())
        with torch.no_grad():
            for p in handle.trainable_parameters():
                p.normal_(0, 0.5)
        assert engine.sync(handle, 1).bytes == sync.bytes and engine.lora.lora_int_id == 2
        assert engine.liveness["served"] == "vllm-lora" and engine.liveness["verdict"] == "live"
    finally:
        engine.close()


@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
                    reason="needs a CUDA device and vllm")
def test_a_lora_request_on_a_gpu_is_proven_live(tiny_llama_vllm_dir):
    """The GPU default (`--vllm-sync auto` = lora): the trainer's bf16 policy on the GPU, the engine beside it
    serving each sync as a LoRARequest, checked against it within the bf16 tolerance."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.train.rollout.vllm import VLLMEngine
    from tinyeval.vllm import colocated_utilization

    tok = AutoTokenizer.from_pretrained(tiny_llama_vllm_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_vllm_dir, dtype=torch.bfloat16).to("cuda")
    handle = attach(model, AdapterConfig(method="tinylora", params=3, rank=2))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.normal_(0, 8.0)  # moves the probes' log-probs by ~1.2 nats (HF, CPU): above bf16's tolerance of 0.5
    engine = VLLMEngine(tiny_llama_vllm_dir, tok, rank=2, dtype="bfloat16", max_model_len=128, sync="auto",
                        gpu_memory_utilization=colocated_utilization(model, 128, 4))
    try:
        engine.sync(handle, 0)
        assert engine.mode == "lora" and engine.liveness["served"] == "vllm-lora"
        assert engine.liveness["verdict"] == "live", engine.liveness
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed")
def test_vllm_merge_sync_serves_the_trained_policy(tiny_llama_vllm_dir):
    """The merge sync rewrites the engine's weights to base + B @ A: its log-probs match the trainer's
    adapter, and a later sync starts from the base weights again (nothing accumulates)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.train.logprobs import token_logprobs
    from tinyeval.train.rollout.vllm import VLLMEngine

    tok = AutoTokenizer.from_pretrained(tiny_llama_vllm_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_vllm_dir, dtype=torch.float32)
    handle = attach(model, AdapterConfig(method="tinylora", params=3, rank=2))
    engine = VLLMEngine(tiny_llama_vllm_dir, tok, rank=2, dtype="float32", max_model_len=128, sync="merge")

    def gap(ro) -> float:
        """Largest |engine log-prob - trainer log-prob| over the sampled tokens."""
        ids = torch.cat([ro.prompt_ids, ro.completion_ids], 1)
        mask = torch.cat([ro.prompt_mask, ro.completion_mask], 1)
        with torch.no_grad():
            ours = token_logprobs(handle.model, ids, mask, ro.completion_ids.shape[1])
        return float((ours - ro.logprobs)[ro.completion_mask].abs().max())

    try:
        prompts = ["a b c", "d e", "f"]
        with torch.no_grad():
            for p in handle.trainable_parameters():
                p.normal_(0, 0.5)
        assert engine.sync(handle, 0).bytes < 5_000_000 and engine.lora is None
        trained = engine.generate(prompts, max_new_tokens=6, temperature=1.0)
        assert gap(trained) < 1e-3
        with handle.disabled():
            assert gap(trained) > 1e-2  # the engine is not serving the base model
        with torch.no_grad():
            for p in handle.trainable_parameters():
                p.zero_()
        engine.sync(handle, 1)  # v = 0: exactly the base model again
        assert gap(engine.generate(prompts, max_new_tokens=6, temperature=1.0)) < 1e-3
    finally:
        engine.close()


def test_merge_layout_stacks_modules_as_the_engine_does():
    """q/k/v land in one qkv_proj, gate/up in gate_up_proj (in that order); other modules stand alone."""
    from tinyeval.train.rollout.vllm_merge import engine_layout

    packed = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}
    layout = engine_layout(["model.layers.0.self_attn.v_proj", "model.layers.0.mlp.down_proj",
                            "model.layers.1.mlp.up_proj"], packed)
    assert layout == {
        "model.layers.0.self_attn.qkv_proj": [f"model.layers.0.self_attn.{m}" for m in ("q_proj", "k_proj", "v_proj")],
        "model.layers.0.mlp.down_proj": ["model.layers.0.mlp.down_proj"],
        "model.layers.1.mlp.gate_up_proj": ["model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj"],
    }


@pytest.mark.parametrize(("rslora", "scale"), [(False, 8 / 4), (True, 8 / 2)])
def test_merge_reads_peft_scaling(tmp_path, rslora, scale):
    import json

    from safetensors.torch import save_file

    from tinyeval.train.rollout.vllm_merge import read_lora

    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8, "use_rslora": rslora}))
    a, b = torch.randn(4, 6), torch.randn(5, 4)
    save_file({"base_model.model.model.layers.0.mlp.down_proj.lora_A.weight": a,
               "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight": b},
              str(tmp_path / "adapter_model.safetensors"))
    factors, got = read_lora(tmp_path)
    assert got == scale and list(factors) == ["model.layers.0.mlp.down_proj"]
    torch.testing.assert_close(factors["model.layers.0.mlp.down_proj"][1], b)
