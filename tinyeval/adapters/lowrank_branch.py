"""The unmerged bf16/fp16 path of TinyLoRA / LoRA-XS: every module's delta prepared once per value of v, for all
modules together, and two GEMMs per module in forward, three in backward.

Why batched: on an H200 (2026-12-04, Qwen2.5-1.5B shape, bf16, 8 × 256 tokens, 196 adapted modules) a step of
the former per-module path took 2.5× the base's fwd+bwd while the GPU was busy for a quarter of it: each module
built its own R = Σ v P, B R, the bf16 pair and casts (20 extra kernel ops per module and pass, counted by
benchmarks/adapter_dispatch.py), and the step was bound by the CPU launching them. Here the per-module work is
only what must touch the activations; everything of size (out, r) or smaller is done once per pass for all
modules by a few batched ops over modules stacked by shape.

Per module i, frozen W in the model dtype, A = Vᵀ (r, in), B R (out, r) in fp32, N tokens:

    forward   h2 = x [A; A]ᵀ (N, 2r) = [h | h];  y = x Wᵀ + b;  y += h2 [hi | lo]ᵀ   (in place: base + delta in one
              fp32 accumulator, rounded once)
    backward  gx = g W;  gx += (g [hi | lo]) [A; A]   (in place);   S_i += h2[:, :r]ᵀ g   (r, out), into a sink

Every activation-size tensor stays in the model dtype and is allocated once, as in the base (the former fp32
side branch, `(out + delta.float()).to(bf16)`, made three fp32 copies of the activations and autograd mirrored
them). hi + lo ≈ B R is a pair of model-dtype matrices (hi = B R rounded, lo = the rest rounded): ~16 mantissa
bits, so the forward follows small updates of v instead of moving in steps of B R's bf16 ulp. S_i is B R's
gradient (transposed, rounded once to the model dtype, as the per-module path had it).

Autograd does not see B R at all: each module's backward adds S_i into a sink it shares with every module and
returns nothing for it; the modules take a zero-size `token` as input, made by `_Sink` from v, so autograd runs
`_Sink.backward` after every module backward of the graph, and that one turns all sinks into v's gradient with a
few batched ops: dR_i = Bᵢᵀ Sᵢᵀ, dv[g] += Σ_rs dR_i P_i. The sink is zeroed after each use, so graphs of several
forwards, or one graph backpropagated twice (retain_graph), give the same gradient as separate branches would; a
backward that does not reach v (`autograd.grad` w.r.t. the inputs only) does not write the sink. Higher-order
gradients (`create_graph=True`) through the branch are not supported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOW_PRECISION = (torch.bfloat16, torch.float16)


def hi_lo(BR: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[hi | lo] (..., out, 2r) in `dtype` with hi + lo ≈ BR (..., out, r) to ~16 mantissa bits."""
    r = BR.shape[-1]
    hl = BR.new_empty(*BR.shape[:-1], 2 * r, dtype=dtype)
    hl[..., :r] = BR
    torch.sub(BR, hl[..., :r], out=hl[..., r:])  # computed in fp32, rounded once
    return hl


def _will_run(node) -> bool:
    """Whether the running backward will reach `node` (False for `autograd.grad` w.r.t. other inputs only)."""
    will = getattr(torch._C, "_will_engine_execute_node", None)
    return True if will is None else will(node)


class _BranchLinear(torch.autograd.Function):
    """y = x Wᵀ + b + h hiᵀ + h loᵀ (h = x Aᵀ) for a frozen bf16/fp16 W, rounded once; x's gradient returned,
    B R's gradient added into `sink` (r, out) when the backward reaches `token`'s node."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, W: torch.Tensor, bias: torch.Tensor | None, A2: torch.Tensor,
                hl: torch.Tensor, sink: torch.Tensor | None, token: torch.Tensor | None) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])  # (N, in)
        h2 = x2 @ A2.t()  # (N, 2r) = [h | h]
        out = F.linear(x2, W, bias)  # (N, out)
        out.addmm_(h2, hl.t())  # base + h (hi + lo)ᵀ in one accumulator, one rounding
        ctx.save_for_backward(W, A2, hl, h2)
        ctx.sink, ctx.sink_node = sink, None if token is None else token.grad_fn
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        W, A2, hl, h2 = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])  # (N, out)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (g @ W).addmm_(g @ hl, A2).view(*grad.shape[:-1], W.shape[1])  # (..., in)
        if ctx.needs_input_grad[6] and _will_run(ctx.sink_node):
            ctx.sink.addmm_(h2[:, : A2.shape[0] // 2].t(), g)  # (r, N) @ (N, out): N-long sums in fp32
        return grad_x, None, None, None, None, None, None


class _Sink(torch.autograd.Function):
    """A zero-size tensor from v: every module takes it as an input, so its backward runs after all of theirs and
    returns v's gradient, `reduce()`, from the sinks they filled."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, reduce) -> torch.Tensor:
        ctx.reduce = reduce
        ctx.set_materialize_grads(False)  # the modules return no gradient for it
        return v.new_empty(0)

    @staticmethod
    def backward(ctx, _):
        return ctx.reduce(), None


class Layout:
    """The frozen operands, stacked by module shape once per device and dtype: B (M_k, out, r) fp32 and
    [A; A] (M_k, 2r, in) in the model dtype; `slots[i]` = (shape group, position in it) of module i."""

    def __init__(self, factors, dtype: torch.dtype):
        members: dict[tuple[int, int], list[int]] = {}
        for i, f in enumerate(factors):
            members.setdefault((f.B.shape[0], f.A.shape[1]), []).append(i)
        self.slots: list[tuple[int, int]] = [(0, 0)] * len(factors)
        self.index, self.B, self.A2, self.sink_sizes = [], [], [None] * len(factors), []
        for k, group in enumerate(members.values()):
            A = torch.stack([factors[i].A for i in group])  # (M_k, r, in)
            self.index.append(torch.tensor(group, device=A.device))
            self.B.append(torch.stack([factors[i].B for i in group]))  # (M_k, out, r)
            for j, (i, a2) in enumerate(zip(group, torch.cat([A, A], 1).to(dtype).unbind(0))):
                self.slots[i], self.A2[i] = (k, j), a2  # a2: (2r, in)
            self.sink_sizes.append(self.B[-1].numel())  # M_k × r × out, stored (M_k, r, out)


class _VGrad:
    """v's gradient from the sinks S (M_k, r, out), which it zeroes for the next backward:
    dRᵢ = Bᵢᵀ Sᵢᵀ (r, r), dv[g] += ⟨dRᵢ, Pᵢ⟩. Holds tensors only, no module: the autograd node keeps it."""

    def __init__(self, flat: torch.Tensor, sinks: list[torch.Tensor], layout: Layout, state):
        self.flat, self.sinks, self.B, self.index = flat, sinks, layout.B, layout.index
        self.P, self.group, self.v = state.P, state.group, state.v.detach()

    def __call__(self) -> torch.Tensor:
        m, _, r, _ = self.P.shape
        dR = self.P.new_empty(m, r, r)  # every module is in exactly one shape group
        for S, B, idx in zip(self.sinks, self.B, self.index):
            dR.index_copy_(0, idx, torch.bmm(S.float(), B).transpose(1, 2))  # (M_k, s, r) -> (M_k, r, s)
        self.flat.zero_()
        rows = torch.einsum("mrs,murs->mu", dR, self.P)  # (M, u)
        return torch.zeros_like(self.v).index_add_(0, self.group, rows)


class Branches:
    """The operands of every module for one value of v: `A2[i]` (2r, in), `hl[i]` (out, 2r), `sink[i]` (r, out), in
    the model dtype, and the `token` that carries v's gradient (None when no gradient is recorded)."""

    def __init__(self, state, layout: Layout, dtype: torch.dtype, key: tuple):
        v, m = state.v, len(layout.slots)
        self.key, self.A2, self.sink, self.token = key, layout.A2, [None] * m, None
        with torch.no_grad():
            R = torch.einsum("mu,murs->mrs", v.index_select(0, state.group), state.P)  # (M, r, r) fp32
            hl = [hi_lo(torch.bmm(B, R.index_select(0, idx)), dtype).unbind(0)
                  for idx, B in zip(layout.index, layout.B)]  # per shape group: (out, 2r) per module
        self.hl = [hl[k][j] for k, j in layout.slots]
        if torch.is_grad_enabled() and v.requires_grad:
            flat = torch.zeros(sum(layout.sink_sizes), dtype=dtype, device=v.device)
            sinks, start = [], 0
            for size, B in zip(layout.sink_sizes, layout.B):
                sinks.append(flat[start:start + size].view(B.shape[0], B.shape[2], B.shape[1]))  # (M_k, r, out)
                start += size
            views = [S.unbind(0) for S in sinks]
            self.sink = [views[k][j] for k, j in layout.slots]
            self.token = _Sink.apply(v, _VGrad(flat, sinks, layout, state))

    def usable(self, key: tuple) -> bool:
        """For the same v (version, storage): a cache with a token serves passes without one, and one made
        outside inference mode serves passes inside it, not the reverse."""
        (version, ptr, grad, inference), (v2, p2, grad2, inference2) = self.key, key
        return (version, ptr) == (v2, p2) and (grad or not grad2) and (inference2 or not inference)


def branch_linear(x: torch.Tensor, W: torch.Tensor, bias: torch.Tensor | None, branches: Branches,
                  i: int) -> torch.Tensor:
    """Module i's output, base + delta, through `_BranchLinear` with this pass's operands."""
    return _BranchLinear.apply(x, W, bias, branches.A2[i], branches.hl[i], branches.sink[i], branches.token)
