"""TinyLoRA and LoRA-XS: a trainable r×r core between frozen top-r SVD factors of each adapted weight.

Parameterization (one Σ placement, used identically in training, merge, export and saved artifacts):

    ΔW = U Σ R Vᵀ            U: (out, r), Σ = diag(σ₁..σ_r), V: (in, r) from the top-r SVD of the frozen W
    R  = Σᵢ₌₁ᵘ v[g, i] Pᵢ    TinyLoRA: v (groups, u) trainable fp32, P (u, r, r) fixed per module, g = its group
    R  = trainable (r, r)     LoRA-XS (stored as v (modules, r²) with P the r² unit matrices, so one code path)

This is the paper's placement (U Σ R Vᵀ). PEFT's tuner uses U√Σ · R · √Σ Vᵀ; the two agree exactly when PEFT's
buffers hold B = UΣ, A = Vᵀ (tests/adapters/test_peft_equivalence.py). The frozen factors are stored as
A = Vᵀ (r, in) and B = UΣ (out, r) in fp32, so ΔW = B R A and y = x Wᵀ + ((x Aᵀ) Rᵀ) Bᵀ.

P ~ N(0, 1/r) (PEFT's choice; the paper gives no distribution), seeded per module from a blake2b hash of
(seed, module name) — never Python's salted `hash()` — and stored with every artifact anyway. v starts at zero,
so step 0 is exactly the base model.

Why not build on PEFT's `TinyLoraModel` (peft 0.21): its layer constructor runs a full `torch.linalg.svd` with
no way to substitute a faster one (~47 min for Qwen2.5-7B on a CPU); it keeps U√Σ and √Σ Vᵀ in the model dtype
(bf16-rounded frozen factors); its groups come from round(M·(1 − weight_tying)) with floor-sized runs, which
cannot express the paper's ceil(M / n_tie) runs of n_tie (196 modules, 13 groups: PEFT 12×15 + 16, the paper
12×16 + 4); and it has no structured tying. PEFT stays the reference in tests and the LoRA baseline/format.

The delta is added by a per-instance forward on the unchanged nn.Linear modules (not a forward hook: a hook runs
after the base matmul, so the delta could not be folded into it): the HF model keeps its structure, its
state-dict keys and its `generate`; the adapter state lives in one submodule, `model.tinyeval_adapter`, so
`model.to(device)` moves it.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tinyeval.adapters.handle import AdapterHandle
from tinyeval.adapters.lowrank_branch import LOW_PRECISION, Branches, Layout, branch_linear
from tinyeval.adapters.planner import TYING, Plan, Target, choose_tying, sized
from tinyeval.errors import TinyevalError

STATE_NAME = "tinyeval_adapter"


def module_seed(seed: int, name: str) -> int:
    """A stable 63-bit seed for one module's projections (identical across processes and machines)."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def projections(seed: int, name: str, u: int, r: int) -> torch.Tensor:
    """P for one module: (u, r, r) ~ N(0, 1/r), from the module's own generator."""
    gen = torch.Generator().manual_seed(module_seed(seed, name))
    return torch.randn(u, r, r, generator=gen) / r**0.5


def unit_projections(r: int) -> torch.Tensor:
    """LoRA-XS as TinyLoRA: the r² unit matrices, so R = v.view(r, r). (r², r, r)"""
    return torch.eye(r * r).view(r * r, r, r)


class Factors(nn.Module):
    """Frozen factors of one module: A = Vᵀ (r, in), B = UΣ (out, r), fp32 buffers."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor):
        super().__init__()
        self.register_buffer("A", A.float().contiguous())
        self.register_buffer("B", B.float().contiguous())


class LowRankState(nn.Module):
    """Everything the adapter adds to a model: trainable v, fixed P, group index and per-module factors."""

    def __init__(self, v: torch.Tensor, P: torch.Tensor, group: torch.Tensor, factors: list[Factors]):
        super().__init__()
        self.v = nn.Parameter(v.float())  # (groups, u), fp32 whatever the model dtype
        self.register_buffer("P", P.float())  # (modules, u, r, r)
        self.register_buffer("group", group.long())  # (modules,) -> row of v
        self._rows = group.tolist()  # the same index as Python ints: no tensor indexing in every forward
        self.factors = nn.ModuleList(factors)
        self.active = True  # False inside `disabled()`
        self.merged = False
        self._layouts: dict = {}  # (device, dtype) -> lowrank_branch.Layout: stacked frozen factors
        self._branches: dict = {}  # dtype -> lowrank_branch.Branches for the current v
        self.register_load_state_dict_post_hook(LowRankState._forget)

    def branches(self, dtype: torch.dtype) -> Branches:
        """Every module's bf16/fp16 branch operands for the current v, built once per value of v (an optimizer
        step or any in-place change of v bumps its version and so rebuilds them) and per dtype."""
        v = self.v
        key = (v._version, v.data_ptr(), torch.is_grad_enabled() and v.requires_grad,
               torch.is_inference_mode_enabled())
        cached = self._branches.get(dtype)
        if cached is None or not cached.usable(key):
            layout = self._layouts.get((v.device, dtype))
            if layout is None:
                layout = self._layouts[(v.device, dtype)] = Layout(self.factors, dtype)
            cached = self._branches[dtype] = Branches(self, layout, dtype, key)
        return cached

    def _forget(self, *_) -> None:
        """Drop the stacked factors and branch operands (after `.to()`, a state-dict load)."""
        self._layouts, self._branches = {}, {}

    def _apply(self, fn, recurse=True):
        self._forget()
        return super()._apply(fn, recurse)

    def __getstate__(self):  # deepcopy / pickle: the caches hold autograd nodes
        return {**super().__getstate__(), "_layouts": {}, "_branches": {}}

    def core(self, i: int) -> torch.Tensor:
        """R for module i: Σᵢ v[g, i] P[i]. (r, r), fp32, differentiable in v."""
        return torch.einsum("u,urs->rs", self.v[self._rows[i]], self.P[i])

    def delta_weight(self, i: int) -> torch.Tensor:
        """ΔW of module i = B R A. (out, in), fp32."""
        f = self.factors[i]
        return f.B @ self.core(i) @ f.A


class _FoldedLinear(torch.autograd.Function):
    """y = x (W + B R A)ᵀ + b for a frozen fp32 W, with a gradient only for BR.

    Adding the delta as a second branch, (x Aᵀ)(BR)ᵀ, costs two passes over the activations and skinny (N = r)
    GEMMs in forward and backward: 1.2× the base fwd+bwd on SmolLM2. Folding it into the weight costs one pass
    over W (smaller than the activations once tokens > in_features) and leaves the base's single GEMM; backward
    is the base's x-gradient GEMM plus the (out, r) contraction gᵀ h that BR needs.

    What it keeps for backward is what the base keeps (W, a parameter: no new memory) plus h = x Aᵀ, (N, r),
    computed in forward: never x itself, which the frozen base linear does not keep either (autograd saves a
    linear's input only for its weight's gradient). Keeping x cost a full fp32 activation per adapted module,
    1.35× the base's saved activations on a Qwen2-shaped model (tests/adapters/test_lowrank_memory.py); h is the
    same product backward computed before, so the gradient is unchanged bit for bit.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, W: torch.Tensor, bias: torch.Tensor | None, A: torch.Tensor,
                BR: torch.Tensor) -> torch.Tensor:
        h = x.reshape(-1, x.shape[-1]) @ A.t() if ctx.needs_input_grad[4] else None
        ctx.save_for_backward(W, A, BR, h)  # h: (N, r)
        return F.linear(x, torch.addmm(W, BR, A), bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        W, A, BR, h = ctx.saved_tensors
        grad_x = grad @ torch.addmm(W, BR, A) if ctx.needs_input_grad[0] else None
        grad_br = None
        if ctx.needs_input_grad[4]:
            grad_br = grad.reshape(-1, grad.shape[-1]).t() @ h  # (out, r)
        return grad_x, None, None, None, grad_br


class _DeltaForward:
    """Replaces forward of adapted module i while attached: base linear plus the delta, active and unmerged.

    Frozen fp32 weights take the folded path (`_FoldedLinear`), frozen bf16/fp16 weights the in-place branch
    (`lowrank_branch`: one rounding of base + delta, no fp32 copy of the activations, so a bf16 model does not
    round tiny updates of v away and the exported LoRA reproduces it; every module's delta is prepared once per
    value of v, so a module adds two GEMMs to the forward and three to the backward). Anything else (fp64,
    trainable base weights, an input in another dtype) adds the delta as a separate fp32 branch through autograd,
    like PEFT's LoRA forward.
    """

    def __init__(self, module: nn.Linear, state: LowRankState, i: int):
        self.module, self.state, self.i = module, state, i

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s, m = self.state, self.module
        if not s.active or s.merged:
            return F.linear(x, m.weight, m.bias)
        frozen = not m.weight.requires_grad and (m.bias is None or not m.bias.requires_grad)
        if frozen and x.dtype == m.weight.dtype and x.dtype in LOW_PRECISION:
            return branch_linear(x, m.weight, m.bias, s.branches(x.dtype), self.i)
        f = s.factors[self.i]
        BR = f.B @ s.core(self.i)  # (out, r), differentiable in v
        if frozen and x.dtype == m.weight.dtype == torch.float32:
            return _FoldedLinear.apply(x, m.weight, m.bias, f.A, BR)
        out = F.linear(x, m.weight, m.bias)
        return (out + F.linear(F.linear(x.float(), f.A), BR)).to(out.dtype)  # (..., r) -> (..., out)


class LowRankHandle(AdapterHandle):
    """Handle of a TinyLoRA / LoRA-XS adapter attached by replacing the adapted modules' forward."""

    def __init__(self, model: nn.Module, config, plan: Plan, targets: list[Target],
                 base_fingerprint: str, state: LowRankState, svd_info: dict):
        super().__init__(model, config, plan, targets, base_fingerprint)
        self.state = state
        self.svd_info = svd_info  # how the factors were obtained (method counts, passes, seconds)
        self._fixups: list[tuple[torch.Tensor, torch.Tensor]] = []  # per module: (flat index, exact base value)
        self._merged_cores: list[torch.Tensor] = []
        self._pristine: list[torch.Tensor] | None = None  # CPU only: base weights kept by for_generation()
        model.add_module(STATE_NAME, state)
        for i, t in enumerate(targets):  # an instance attribute shadows nn.Linear.forward until detach()
            module = self._linear(t)
            module.forward = _DeltaForward(module, state, i)

    def _linear(self, t: Target) -> nn.Linear:
        return self.model.get_submodule(t.name)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [self.state.v]

    @contextmanager
    def disabled(self):
        was_merged = self.state.merged
        if was_merged:
            self.unmerge()
        self.state.active = False
        try:
            yield self.model
        finally:
            self.state.active = True
            if was_merged:
                self.merge()

    @contextmanager
    def for_generation(self):
        """Merged for the duration, from a copy of the adapted base weights.

        An unmerged side branch halves bf16 HF decoding on CPU (SmolLM2: 54 vs 111 tok/s). With the copy, merging
        is one `addmm` per module and unmerging a copy back, exact by construction: ~0.1 s per rollout batch on
        SmolLM2 vs ~0.6 s for `merge`/`unmerge`'s in-place round trip. On CPU the copy is kept for the whole run
        (RAM is not the limit there, and one clone per batch is saved); on an accelerator it lives only inside
        this context, so it is never resident while the trainer's activations are (Qwen2.5-1.5B: 2.4 GiB, 7B:
        13 GiB of GPU memory). `merge`, `unmerge` and `disabled` must not be called inside (they assume their own
        merged state).
        """
        if self.state.merged or not self.state.active:
            yield self.model
            return
        weights = [self._linear(t).weight for t in self.targets]
        pristine = self._pristine or [w.detach().clone() for w in weights]
        if weights[0].device.type == "cpu":
            self._pristine = pristine
        with torch.no_grad():
            for i, (w, w0) in enumerate(zip(weights, pristine)):
                f = self.state.factors[i]
                w.copy_(torch.addmm(w0.float(), f.B @ self.state.core(i), f.A))  # W0 + B R A, rounded once
        self.state.merged = True
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for w, w0 in zip(weights, pristine):
                    w.copy_(w0)
            self.state.merged = False
            del pristine

    @torch.no_grad()
    def merge(self) -> None:
        """W ← W + ΔW in W's dtype, remembering which entries would not round-trip exactly on unmerge."""
        if self.state.merged:
            return
        self._fixups, self._merged_cores = [], []
        for i, t in enumerate(self.targets):
            W = self._linear(t).weight
            core = self.state.core(i).detach().clone()
            delta = self.state.factors[i].B @ core @ self.state.factors[i].A  # (out, in) fp32
            merged = (W.float() + delta).to(W.dtype)
            back = (merged.float() - delta).to(W.dtype)
            bad = (back != W).view(-1).nonzero().view(-1)  # rounding would lose these base entries
            self._fixups.append((bad, W.view(-1)[bad].clone()))
            self._merged_cores.append(core)
            W.copy_(merged)
        self.state.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore the exact base weights (bit for bit), using the cores captured at merge time."""
        if not self.state.merged:
            return
        for i, t in enumerate(self.targets):
            W = self._linear(t).weight
            f = self.state.factors[i]
            back = (W.float() - f.B @ self._merged_cores[i] @ f.A).to(W.dtype)
            idx, vals = self._fixups[i]
            back.view(-1)[idx] = vals
            W.copy_(back)
        self._fixups, self._merged_cores = [], []
        self.state.merged = False

    def delta_weight(self, i: int) -> torch.Tensor:
        return self.state.delta_weight(i)

    def export_lora(self, out_dir: str | Path, min_rank: int | None = None) -> Path:
        from tinyeval.adapters.export import export_lora

        return export_lora(self, Path(out_dir), min_rank=min_rank)

    def merged_model(self) -> nn.Module:
        self.merge()
        return self.detach()

    def detach(self) -> nn.Module:
        """Restore the modules' own forward and drop the adapter state (merged weights stay merged)."""
        for t in self.targets:
            del self._linear(t).forward
        delattr(self.model, STATE_NAME)
        return self.model


def _svd_factors(W: torch.Tensor, cfg, key: str) -> tuple[torch.Tensor, torch.Tensor, str, int]:
    from tinyeval.adapters.svd import SvdSettings, cached_top_svd, top_svd

    settings = SvdSettings(method=cfg.svd, seed=cfg.seed)
    out = cached_top_svd(W, cfg.rank, settings, key=key) if cfg.svd_cache else top_svd(W, cfg.rank, settings)
    return out.V.T, out.U * out.S, out.method, out.passes  # A = Vᵀ (r, in), B = UΣ (out, r)


def build_state(model: nn.Module, cfg, plan: Plan, targets: list[Target], fingerprints: list[str],
                init) -> tuple[LowRankState, dict]:
    """Factors from the SVD of each target weight; P, group index and zero v from `init(cfg, plan, targets)`."""
    import time

    if min(min(t.in_features, t.out_features) for t in targets) < cfg.rank:
        raise TinyevalError(f"rank {cfg.rank} exceeds the smallest adapted dimension")
    t0, methods, passes = time.perf_counter(), {}, 0
    factors = []
    for t, key in zip(targets, fingerprints):
        W = model.get_submodule(t.name).weight
        A, B, method, n = _svd_factors(W, cfg, key)
        factors.append(Factors(A, B))
        methods[method] = methods.get(method, 0) + 1
        passes += n
    P, group, v = init(cfg, plan, targets)
    device = model.get_submodule(targets[0].name).weight.device
    state = LowRankState(v, P, group, factors).to(device)
    info = {"methods": methods, "passes": passes, "seconds": round(time.perf_counter() - t0, 3)}
    return state, info


# The registered methods. TinyLoRA and LoRA-XS differ only in their plan, their initial P / group / v and the
# name of their payload; attaching, saving and loading are shared.

V_FILE, FROZEN_FILE = "v.safetensors", "frozen.safetensors"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LowRankMethod(LowRankHandle):
    """Attach by SVD; save and load a three-file artifact.

    v.safetensors       the trained payload and nothing else: v (groups, u) for TinyLoRA, R (modules, r, r) for
                        LoRA-XS. 13 parameters in bf16 are 26 bytes of tensor data (plus the safetensors header).
    frozen.safetensors  what ΔW also depends on: P (modules, u, r, r), the group index, and each module's frozen
                        factors A = Vᵀ, B = UΣ (fp32). They could in principle be recomputed from the base, but
                        not reliably: SVD signs, the order of near-equal singular values (σ₂ ≈ σ₃ is common),
                        randomized-SVD seeds and CPU/GPU arithmetic all change them, and a v is meaningless
                        against different factors. Shipping them makes loading exact and SVD-free.
    adapter.json        `artifact.AdapterJson`, with `v_dtype` and `svd` (how the factors were obtained).
    """

    payload_key = "v"

    @classmethod
    def initial(cls, config, plan: Plan, targets: list[Target]):
        """(P (M, u, r, r), the group index (M,), the zero v (groups, u)) of a fresh adapter."""
        raise NotImplementedError

    def payload(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"v": v}

    @classmethod
    def unpayload(cls, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return tensors["v"]

    @classmethod
    def create(cls, model: nn.Module, config, targets: list[Target], plan: Plan, base_fingerprint: str):
        from tinyeval.adapters.artifact import target_fingerprints

        state, info = build_state(model, config, plan, targets, target_fingerprints(model, targets), cls.initial)
        handle = cls(model, config, plan, targets, base_fingerprint, state, info)
        handle.timings["svd_s"] = info["seconds"]  # the factors' SVD (or cache reads), inside attach's create_s
        return handle

    def write(self, out: Path, v_dtype: str = "float32") -> dict:
        """`v_dtype="bfloat16"` stores the payload in bf16 (the frozen tensors stay fp32)."""
        from safetensors.torch import save_file

        if self.state.merged:
            raise TinyevalError("unmerge the adapter before saving it")
        if v_dtype not in _DTYPES:
            raise TinyevalError(f"v_dtype must be one of {', '.join(_DTYPES)}, got {v_dtype!r}")
        st = self.state
        save_file(self.payload(st.v.detach().to(_DTYPES[v_dtype]).cpu().contiguous()), str(out / V_FILE))
        frozen = {"P": st.P.cpu().contiguous(), "group": st.group.cpu().contiguous()}
        for t, f in zip(self.targets, st.factors):
            frozen[f"{t.name}.A"] = f.A.cpu().contiguous()
            frozen[f"{t.name}.B"] = f.B.cpu().contiguous()
        save_file(frozen, str(out / FROZEN_FILE))
        return {"v_dtype": v_dtype, "svd": self.svd_info}

    @classmethod
    def load(cls, model: nn.Module, config, targets: list[Target], plan: Plan, meta, path: Path):
        from tinyeval.adapters.artifact import read_tensors

        frozen = read_tensors(path / FROZEN_FILE, ["P", "group"] + [f"{t.name}.{k}" for t in targets for k in "AB"])
        v = cls.unpayload(read_tensors(path / V_FILE, [cls.payload_key]))
        r, m, group = config.rank, len(targets), frozen["group"]
        shapes = {"v": (v, (plan.groups, plan.u)), "P": (frozen["P"], (m, plan.u, r, r)), "group": (group, (m,))}
        for t in targets:
            shapes[f"{t.name}.A"] = (frozen[f"{t.name}.A"], (r, t.in_features))
            shapes[f"{t.name}.B"] = (frozen[f"{t.name}.B"], (t.out_features, r))
        bad = [f"{k} {tuple(x.shape)} (expected {want})" for k, (x, want) in shapes.items()
               if tuple(x.shape) != want]
        if bad or not 0 <= int(group.min()) <= int(group.max()) < plan.groups:
            raise TinyevalError(f"adapter {path}: tensors do not fit its plan: {'; '.join(bad) or 'group index'}")
        factors = [Factors(frozen[f"{t.name}.A"], frozen[f"{t.name}.B"]) for t in targets]
        device = model.get_submodule(targets[0].name).weight.device
        state = LowRankState(v.float(), frozen["P"], frozen["group"], factors).to(device)
        return cls(model, config, plan, targets, meta["base_fingerprint"], state, {"methods": {"artifact": 1}})


class TinyLoraHandle(LowRankMethod):
    """TinyLoRA: R = Σᵢ v[g, i] Pᵢ, one v (u,) per group of tied modules; u and tying from the budget."""

    @classmethod
    def check_config(cls, config) -> None:
        if config.u is None and (config.params is None or config.params < 1):
            raise TinyevalError(f"tinylora needs a trainable-parameter budget params >= 1, got {config.params}")

    @classmethod
    def cost(cls, targets: list[Target], config, total_params: int) -> Plan:
        """(u, n_tie) from the budget `params` (the paper's rule: `planner.choose_tying`) unless both are set."""
        if config.u is not None and config.n_tie is not None:
            u, n_tie, groups = config.u, config.n_tie, TYING[config.tying](targets, config.n_tie)
        else:
            u, n_tie, groups = choose_tying(targets, config.params, config.tying)
        members = tuple(tuple(targets[i].name for i in g) for g in groups)
        return sized(config.method, config.rank, targets, len(groups) * u, u=u, n_tie=n_tie, groups=len(groups),
                     tying=config.tying, members=members)

    @classmethod
    def initial(cls, config, plan: Plan, targets: list[Target]):
        P = torch.stack([projections(config.seed, t.name, plan.u, config.rank) for t in targets])  # (M, u, r, r)
        index = {name: g for g, names in enumerate(plan.members) for name in names}
        return P, torch.tensor([index[t.name] for t in targets]), torch.zeros(plan.groups, plan.u)


class LoraXsHandle(LowRankMethod):
    """LoRA-XS: one untied trainable R = v[i].view(r, r) per module; saved as R (modules, r, r)."""

    payload_key = "R"

    @classmethod
    def cost(cls, targets: list[Target], config, total_params: int) -> Plan:
        r = config.rank
        return sized(config.method, r, targets, len(targets) * r * r, u=r * r, n_tie=1, groups=len(targets))

    @classmethod
    def initial(cls, config, plan: Plan, targets: list[Target]):
        r, m = config.rank, len(targets)
        return unit_projections(r).expand(m, -1, -1, -1).clone(), torch.arange(m), torch.zeros(m, r * r)

    def payload(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        r = self.config.rank
        return {"R": v.view(-1, r, r).contiguous()}

    @classmethod
    def unpayload(cls, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return tensors["R"].flatten(1)
