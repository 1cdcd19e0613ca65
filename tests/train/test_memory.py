"""Memory: peak-memory readings, and gradient checkpointing that recomputes layers yet changes neither the loss
nor v's gradient. CPU tests; the CUDA variants skip without a GPU."""

from __future__ import annotations

import json

import pytest
import torch

from tinyeval.adapters import AdapterConfig, attach
from tinyeval.train.logprobs import token_logprobs
from tinyeval.train.memory import checkpointing, enable_gradient_checkpointing, peak_memory
from tinyeval.train.recipes import build, run


def _model(model_dir, device="cpu"):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()


def _loss_and_grad(model_dir, gradient_checkpointing: bool, device="cpu", method="tinylora"):
    model = _model(model_dir, device)
    torch.manual_seed(0)
    handle = attach(model, AdapterConfig(method=method, params=3, rank=2))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.normal_(0, 0.3)
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    layer = model.model.layers[0]
    calls = []
    layer.register_forward_pre_hook(lambda *args: calls.append(1))  # pre: a recompute may stop early
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (3, 12), generator=gen)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[0, :4] = False  # one left-padded row
    with checkpointing(model):
        logp = token_logprobs(model, ids, mask, 5)
    loss = -(logp * torch.linspace(-1, 1, 3, device=logp.device)[:, None]).mean()
    loss.backward()
    grads = [p.grad.detach().clone() for p in handle.trainable_parameters()]
    return float(loss.detach()), grads, len(calls), model


@pytest.mark.parametrize("method", ["tinylora", "lora"])
def test_gradient_checkpointing_recomputes_layers_with_the_same_loss_and_gradient(tiny_llama_dir, method):
    loss, grads, calls, _ = _loss_and_grad(tiny_llama_dir, False, method=method)
    loss_gc, grads_gc, calls_gc, model = _loss_and_grad(tiny_llama_dir, True, method=method)
    assert calls == 1 and calls_gc == 2  # checkpointed: the layer ran again in backward
    assert loss_gc == pytest.approx(loss, rel=1e-6)
    assert all(bool(g.abs().sum() > 0) for g in grads_gc)  # v still gets a gradient (the reentrant pitfall)
    for g, g_gc in zip(grads, grads_gc):
        torch.testing.assert_close(g_gc, g, rtol=1e-5, atol=1e-7)
    assert not any(layer.training or layer.self_attn.training for layer in model.model.layers)  # flags back


def test_checkpointing_flags_only_the_checkpointed_layers(tiny_llama_dir):
    model = _model(tiny_llama_dir)
    with checkpointing(model):
        assert not any(m.training for m in model.modules())
    enable_gradient_checkpointing(model)
    with checkpointing(model):  # the layers' own flags only: their attention and MLP stay in eval mode
        assert all(layer.training and not layer.self_attn.training for layer in model.model.layers)


def test_peak_memory_is_rss_on_the_cpu():
    before, kind = peak_memory("cpu")
    blob = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB touched
    after, _ = peak_memory(torch.device("cpu"))
    assert kind == "rss" and after >= before > 10 << 20
    del blob


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_peak_memory_on_cuda_is_max_allocated_and_checkpointing_runs_there(tiny_llama_dir):
    x = torch.ones(32 << 20, dtype=torch.uint8, device="cuda")
    peak, kind = peak_memory(x.device)
    assert kind == "cuda_max_allocated" and peak >= 32 << 20
    loss, grads, _, _ = _loss_and_grad(tiny_llama_dir, False, device="cuda")
    loss_gc, grads_gc, calls_gc, _ = _loss_and_grad(tiny_llama_dir, True, device="cuda")
    assert calls_gc == 2 and loss_gc == pytest.approx(loss, rel=1e-5)
    for g, g_gc in zip(grads, grads_gc):
        torch.testing.assert_close(g_gc, g, rtol=1e-4, atol=1e-6)


def test_a_run_with_gradient_checkpointing_trains_the_same_adapter(tiny_llama_dir, parity_task, tmp_path):
    """--gradient-checkpointing end to end: config.json keeps it, and GRPO's records and v are the run without."""
    from safetensors.torch import load_file

    options = dict(task="parity", method="tinylora", params=3, rank=2, steps=2, prompts_per_step=2, group_size=4,
                   max_new_tokens=6, lr=5e-2, engine="hf", micro_batch=3, dtype="float32", threads=1)
    plain = run("grpo", *build("grpo", None, model=str(tiny_llama_dir), **options), tmp_path / "a", progress=False)
    gc = run("grpo", *build("grpo", None, model=str(tiny_llama_dir), gradient_checkpointing=True, **options),
             tmp_path / "b", progress=False)
    assert json.loads((tmp_path / "b" / "config.json").read_text())["loop"]["gradient_checkpointing"] is True
    for key in ("loss", "reward_mean", "grad_norm"):
        assert gc["final"][key] == pytest.approx(plain["final"][key], rel=1e-5, abs=1e-7)
    v, v_gc = (load_file(str(tmp_path / d / "adapter" / "v.safetensors"))["v"] for d in "ab")
    torch.testing.assert_close(v_gc, v, rtol=1e-5, atol=1e-7)
