"""The CUDA code paths, tested on every device present: cpu always, cuda when there is one.

Device and dtype defaults (`tinyeval.models`), weights and adapter state on the model's device, adapters saved
on one device and loaded on another, the RNG streams a checkpoint restores (CUDA's included), and the trainer's
inputs (built on the CPU) meeting a model that sits elsewhere. On a CPU-only machine the cuda cases are skipped
and the GPU-only branches are reached through monkeypatched capability checks.
"""

import random

import numpy as np
import pytest
import torch

from tinyeval.adapters import AdapterConfig, attach, load_adapter
from tinyeval.models import default_device, default_dtype, load_model

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_default_device_is_the_gpu_when_there_is_one():
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cpu_default_dtype_is_bf16_only_where_the_cpu_computes_in_it():
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert default_dtype("cpu") == ("bfloat16" if native else "float32")


@pytest.mark.parametrize("bf16, expected", [(True, "bfloat16"), (False, "float16")])
def test_gpu_default_dtype_is_bf16_where_supported_else_fp16(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert default_dtype("cuda") == default_dtype("cuda:1") == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == "cuda" and default_dtype() == expected  # no device given: the default one


@pytest.mark.parametrize("device", DEVICES)
def test_load_model_puts_every_weight_on_the_device_in_its_default_dtype(tiny_llama_dir, device):
    model, tok = load_model(str(tiny_llama_dir), device=device)
    dtype = getattr(torch, default_dtype(device))
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {(device, dtype)}
    assert tok.padding_side == "left" and tok.pad_token is not None and not model.training


@pytest.mark.parametrize("device", DEVICES)
def test_adapter_state_lives_and_trains_on_the_models_device(tiny_llama_dir, device):
    model, _ = load_model(str(tiny_llama_dir), dtype="bfloat16", device=device)
    h = attach(model, AdapterConfig(params=13))
    assert {t.device.type for t in h.state.state_dict().values()} == {device}
    assert h.state.v.dtype == torch.float32  # fp32 whatever the model dtype
    with torch.no_grad():
        h.state.v.fill_(0.05)
    ids = torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(0)).to(device)
    model(ids, labels=ids).loss.backward()
    assert h.state.v.grad.device.type == device and h.state.v.grad.abs().min() > 0
    before = [model.get_submodule(t.name).weight.clone() for t in h.targets]
    with h.for_generation():
        assert not torch.equal(model.get_submodule(h.targets[0].name).weight, before[0])  # merged in place
    assert all(torch.equal(model.get_submodule(t.name).weight, w) for t, w in zip(h.targets, before))


@pytest.mark.parametrize("device", DEVICES)
def test_adapter_saved_on_the_device_loads_onto_a_cpu_model(tiny_llama_dir, tmp_path, device):
    model, _ = load_model(str(tiny_llama_dir), dtype="float32", device=device)
    h = attach(model, AdapterConfig(params=13))
    with torch.no_grad():
        h.state.v.copy_(torch.linspace(-0.3, 0.3, h.num_trainable).view_as(h.state.v))
    ids = torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(ids.to(device)).logits.cpu()
    h.save(tmp_path / "adapter")
    cpu_model, _ = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    loaded = load_adapter(cpu_model, tmp_path / "adapter")  # the base fingerprint matches across devices
    assert loaded.state.v.device.type == "cpu" and torch.equal(loaded.state.v, h.state.v.cpu())
    with torch.no_grad():
        got = cpu_model(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_checkpoint_restores_every_rng_stream_and_the_params_on_their_device(tmp_path, device):
    from tinyeval.train.loop import TrainState, load_checkpoint, read_checkpoint, save_checkpoint

    param = torch.nn.Parameter(torch.ones(3, device=device))
    optimizer = torch.optim.AdamW([param], lr=0.1)
    state = TrainState([param], optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0))
    torch.manual_seed(7), random.seed(7), np.random.seed(7)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(7)
    path = save_checkpoint(tmp_path, state)

    def draws():
        gpu = torch.rand(4, device="cuda").cpu() if torch.cuda.is_available() else None
        return torch.rand(4), gpu, random.random(), float(np.random.rand())

    first = draws()
    with torch.no_grad():
        param.mul_(3)
    load_checkpoint(path, state)
    second = draws()
    assert torch.equal(first[0], second[0]) and first[2:] == second[2:]
    if torch.cuda.is_available():
        assert torch.equal(first[1], second[1])  # HF generate samples from CUDA's generator on a GPU
    assert ("cuda" in read_checkpoint(path)["rng"]) == torch.cuda.is_available()
    assert param.device.type == device and torch.equal(param.detach().cpu(), torch.ones(3))


@pytest.mark.parametrize("device", DEVICES)
def test_trainer_inputs_built_on_the_cpu_meet_the_model_on_its_device(tiny_llama_dir, device):
    """Rollouts come back as CPU tensors whatever the model's device; log-probs are computed on the model's."""
    from tinyeval.train.grpo import token_logprobs
    from tinyeval.train.rollout.hf import HFEngine

    model, tok = load_model(str(tiny_llama_dir), dtype="float32", device=device)
    h = attach(model, AdapterConfig(params=13))
    ro = HFEngine(model, tok, batch_size=2, handle=h).generate(["a b c", "d e"], max_new_tokens=4, temperature=0.0)
    assert {t.device.type for t in (ro.prompt_ids, ro.completion_ids, ro.completion_mask)} == {"cpu"}
    ids = torch.cat([ro.prompt_ids, ro.completion_ids], 1)
    mask = torch.cat([ro.prompt_mask, torch.ones_like(ro.completion_mask)], 1)
    logp = token_logprobs(model, ids, mask, ro.completion_ids.shape[1])
    assert logp.device.type == device and logp.shape == ro.completion_ids.shape and bool((logp <= 0).all())
