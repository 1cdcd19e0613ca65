"""The bf16/fp16 unmerged path (`_BranchLinear`): fp32-reference numerics and no fp32 copy of the activations.

Parametrised over the devices present (cpu always, cuda when available), so a GPU machine runs the same checks.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from tinyeval.adapters import AdapterConfig, attach
from tinyeval.adapters.lowrank import _BranchLinear

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


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bias", [False, True])
def test_branch_matches_the_fp64_reference_within_low_precision_tolerance(device, dtype, bias):
    x, W, b, A, BR, gy = branch_inputs(dtype, device, bias)
    x.requires_grad_(True)
    BR.requires_grad_(True)
    y = _BranchLinear.apply(x, W, b, A, BR)
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
    assert torch.equal(_BranchLinear.apply(x, W, b, A, torch.zeros_like(BR)), F.linear(x, W, b))


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
