"""The bf16/fp16 unmerged path (`lowrank_branch`): fp32-reference numerics, no fp32 copy of the activations, and
few ops per adapted module.

Parametrised over the devices present (cpu always, cuda when available), so a GPU machine runs the same checks.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from tinyeval.adapters import AdapterConfig, attach
from tinyeval.adapters.lowrank_branch import _BranchLinear, _Sink, hi_lo

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in fp64."""
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def branch_inputs(dtype: torch.dtype, device: str, bias: bool):
    g = torch.Generator().manual_seed(0)
    W = (torch.randn(160, 96, generator=g) / 96**0.5).to(dtype)
    b = torch.randn(160, generator=g).to(dtype) if bias else None
    A = torch.linalg.qr(torch.randn(96, 2, generator=g))[0].T.contiguous()  # (r, in), orthonormal rows like Vᵀ
    BR = torch.randn(160, 2, generator=g) * 0.3
    x = torch.randn(4, 32, 96, generator=g).to(dtype)
    gy = torch.randn(4, 32, 160, generator=g).to(dtype)
    return [t if t is None else t.to(device) for t in (x, W, b, A, BR, gy)]


def branch(x, W, b, A, BR):
    """One module through `_BranchLinear`, with BR's gradient (the sink, transposed, in fp32) reaching BR."""
    sink = torch.zeros(BR.shape[1], BR.shape[0], dtype=W.dtype, device=W.device)  # (r, out)
    token = _Sink.apply(BR, lambda: sink.t().float()) if BR.requires_grad else None
    return _BranchLinear.apply(x, W, b, torch.cat([A, A]).to(W.dtype), hi_lo(BR.detach(), W.dtype), sink, token)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bias", [False, True])
def test_branch_matches_the_fp64_reference_within_low_precision_tolerance(device, dtype, bias):
    x, W, b, A, BR, gy = branch_inputs(dtype, device, bias)
    x.requires_grad_(True)
    BR.requires_grad_(True)
    y = branch(x, W, b, A, BR)
    y.backward(gy)
    assert y.dtype == dtype and x.grad.dtype == dtype and BR.grad.dtype == torch.float32
    # the former fp32 side branch: base rounded, fp32 delta added, rounded once more
    old = (F.linear(x, W, b) + F.linear(F.linear(x.detach().float(), A), BR.detach())).to(dtype)
    xd, BRd = x.detach().double().requires_grad_(True), BR.detach().double().requires_grad_(True)
    bd = None if b is None else b.double()
    yd = F.linear(xd, W.double(), bd) + (xd @ A.double().T) @ BRd.T
    yd.backward(gy.double())
    tol = 2 ** -7 if dtype == torch.bfloat16 else 2 ** -10  # a few units of the format's rounding (2^-9, 2^-12)
    assert rel(y, yd) < tol and rel(x.grad, xd.grad) < tol and rel(BR.grad, BRd.grad) < tol
    assert rel(y, old) < tol and rel(old, yd) < tol  # the former branch is no closer to fp64 than tol either


@pytest.mark.parametrize("device", DEVICES)
def test_zero_delta_is_the_base_output_bit_for_bit(device):
    x, W, b, A, BR, _ = branch_inputs(torch.bfloat16, device, bias=True)
    assert torch.equal(branch(x, W, b, A, torch.zeros_like(BR)), F.linear(x, W, b))


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_model_loss_and_v_gradient_match_fp32_within_bf16_tolerance(make_llama, tokens, device):
    """The same bf16-valued weights run in bf16 (the branch) and upcast to fp32 (the folded path), one state."""
    lo = make_llama(dtype="bfloat16").to(device)
    hi = make_llama(dtype="bfloat16").float().to(device)
    h_lo, h_hi = attach(lo, AdapterConfig(params=28)), attach(hi, AdapterConfig(params=28))  # u = 2, untied
    with torch.no_grad():
        h_lo.state.v.copy_(torch.randn(h_lo.state.v.shape, generator=torch.Generator().manual_seed(5)))
    h_hi.state.load_state_dict(h_lo.state.state_dict())
    tokens = tokens.to(device)
    results = []
    for model, h in ((lo, h_lo), (hi, h_hi)):
        out = model(tokens, labels=tokens)
        out.loss.backward()
        results.append((out.loss.float(), out.logits.float(), h.state.v.grad))
    (loss, logits, grad), (loss32, logits32, grad32) = results
    with torch.no_grad(), h_hi.disabled():
        moved = (logits32 - hi(tokens).logits).abs().max()
    assert moved > 0.05  # the adapter changes the outputs it is compared on
    torch.testing.assert_close(loss, loss32, rtol=1.6e-2, atol=1e-5)
    torch.testing.assert_close(logits, logits32, rtol=1.6e-2, atol=2e-2)
    assert rel(grad, grad32) < 2e-2


class _Allocations(TorchDispatchMode):
    """Records (dtype, numel) of every tensor an op returns."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[torch.dtype, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.seen.append((t.dtype, t.numel()))
        return out


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_module_makes_no_fp32_copy_of_its_activations(make_llama, device):
    """Forward + backward of one adapted bf16 module allocates no fp32 tensor of activation size (the former
    branch made five: x.float(), the fp32 delta and sum, and their gradients)."""
    model = make_llama(dtype="bfloat16").to(device)
    h = attach(model, AdapterConfig(params=14))
    with torch.no_grad():
        h.state.v.fill_(0.1)
    module = model.get_submodule(h.targets[4].name)  # gate_proj: 32 -> 64
    x = torch.randn(8, 64, module.in_features, device=device, dtype=torch.bfloat16, requires_grad=True)
    gy = torch.randn(8, 64, module.out_features, device=device, dtype=torch.bfloat16)
    with _Allocations() as mode:
        (module(x) * gy).sum().backward()
    activation = 8 * 64 * min(module.in_features, module.out_features)
    big = [(dt, n) for dt, n in mode.seen if n >= activation]
    assert big and h.state.v.grad is not None
    assert [n for dt, n in big if dt != torch.bfloat16] == []



def bf16_adapted(make_llama, device: str):
    """A bf16 tiny Llama with TinyLoRA (u = 2, untied), v non-zero; its embeddings (requiring grad) and loss."""
    model = make_llama(dtype="bfloat16").to(device)
    h = attach(model, AdapterConfig(params=28, svd_cache=False))
    with torch.no_grad():
        h.state.v.copy_(torch.randn(h.state.v.shape, generator=torch.Generator().manual_seed(5)).to(device))
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1)).to(device)
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    return model, h, embeds, lambda: model(inputs_embeds=embeds, labels=ids).loss


def v_grad(h, run) -> torch.Tensor:
    h.state.v.grad = None
    run()
    return h.state.v.grad.clone()


@pytest.mark.parametrize("device", DEVICES)
def test_v_gradient_is_right_in_every_backward_pattern(make_llama, device):
    """v's gradient reaches it through one sink that every backward empties: accumulation, a retained graph, two
    forwards in one loss, a backward that does not reach v first, a no-grad pass first, and checkpointing."""
    from tinyeval.train.memory import checkpointing, enable_gradient_checkpointing

    model, h, embeds, loss = bf16_adapted(make_llama, device)
    once = v_grad(h, lambda: loss().backward())
    assert once.abs().sum() > 0

    def accumulate():
        loss().backward()
        loss().backward()

    def retained():
        out = loss()
        out.backward(retain_graph=True)
        out.backward()

    def inputs_only_first():
        out = loss()
        torch.autograd.grad(out, embeds, retain_graph=True)  # reaches every module, not v: no sink write
        out.backward()

    assert torch.equal(v_grad(h, accumulate), 2 * once)
    assert torch.equal(v_grad(h, retained), 2 * once)
    assert torch.equal(v_grad(h, inputs_only_first), once)
    torch.testing.assert_close(v_grad(h, lambda: (loss() + loss()).backward()), 2 * once, rtol=1e-2, atol=0)
    with torch.no_grad():
        h.state.v.mul_(1.0)  # a new version of the same v
        loss()  # builds operands without a gradient sink: the next pass must rebuild them with one
    assert torch.equal(v_grad(h, lambda: loss().backward()), once)
    enable_gradient_checkpointing(model)
    with checkpointing(model):  # non-reentrant: the layers' forward runs again inside the backward
        assert torch.equal(v_grad(h, lambda: loss().backward()), once)


@pytest.mark.parametrize("device", DEVICES)
def test_operands_follow_v_the_device_and_copies(make_llama, device):
    """A change of v (an optimizer step), `.to()` and deepcopy each give the outputs of freshly built operands."""
    import copy

    model, h, _, loss = bf16_adapted(make_llama, device)
    before = loss()
    opt = torch.optim.SGD([h.state.v], lr=1.0)
    before.backward()
    opt.step()
    stepped = loss().detach()
    assert stepped != before
    h.state._forget()
    assert torch.equal(loss().detach(), stepped)
    twin = copy.deepcopy(model)  # the operands hold autograd nodes: a copy starts without them
    assert twin.tinyeval_adapter._branches == {}
    model.float()
    assert loss().dtype == torch.float32 and h.state._branches == {}
