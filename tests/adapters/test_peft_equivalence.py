"""tinyeval's TinyLoRA against PEFT's own tuner (peft >= 0.21, `TinyLoraConfig`).

PEFT stores B = U√Σ, A = √Σ Vᵀ and computes ΔW = B R A with R = Σᵢ vᵢ Pᵢ; tinyeval uses the paper's
U Σ R Vᵀ (B = UΣ, A = Vᵀ). Given the same U, Σ, V, P and v, the two are the same computation once PEFT's
buffers hold the paper's placement — checked here module by module (ΔW) and end to end (logits).
"""

import copy

import pytest
import torch

from tinyeval.adapters import AdapterConfig, attach

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture
def pair(make_llama):
    from peft import TinyLoraConfig, get_peft_model

    base = make_llama()
    # 14 modules; PEFT's weight_tying = 0.5 -> 7 groups of 2 consecutive modules = tinyeval's tiled n_tie = 2
    peft = get_peft_model(copy.deepcopy(base), TinyLoraConfig(r=2, u=3, weight_tying=0.5, target_modules=ALL))
    ours = attach(copy.deepcopy(base), AdapterConfig(u=3, n_tie=2, rank=2))
    assert (ours.plan.u, ours.plan.n_tie, ours.plan.groups) == (3, 2, 7)
    layers = {t.name: peft.base_model.model.get_submodule(t.name) for t in ours.targets}
    return base, peft, ours, layers


def peft_groups(peft, layers) -> dict[str, list[int]]:
    """The v group each PEFT layer reads, through public attributes only: switch one group's v on at a time and
    see which layers' ΔW move. (PEFT keeps this mapping in a private attribute, `_tinylora_v_ref` in peft 0.21.0
    and `_tinylora_v_key` in 0.21.2.)"""
    vs = peft.base_model.tinylora_v["default"]
    found: dict[str, list[int]] = {name: [] for name in layers}
    with torch.no_grad():
        for g in vs:
            for key, v in vs.items():
                v.fill_(1.0 if key == g else 0.0)
            for name, layer in layers.items():
                if layer.get_delta_weight("default").abs().sum() > 0:
                    found[name].append(int(g))
    return found


def test_same_groups_and_same_svd_factors(pair):
    _, peft, ours, layers = pair
    groups = peft_groups(peft, layers)
    for i, t in enumerate(ours.targets):
        layer = layers[t.name]
        assert groups[t.name] == [ours.state.group[i].item()]
        B_peft, A_peft = layer.tinylora_B["default"], layer.tinylora_A["default"]  # U√Σ, √Σ Vᵀ
        f = ours.state.factors[i]
        sigma = f.B.norm(dim=0)  # our B = UΣ, so its column norms are σ
        torch.testing.assert_close(B_peft.norm(dim=0) ** 2, sigma, rtol=1e-4, atol=1e-6)
        U, V = f.B / sigma, f.A.T  # (out, r), (in, r)
        sign = torch.sign((B_peft * U).sum(0))  # full SVD signs are arbitrary; align per column
        torch.testing.assert_close(B_peft, U * sigma.sqrt() * sign, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(A_peft, (V * sigma.sqrt() * sign).T, rtol=1e-3, atol=1e-4)


def test_same_delta_and_logits_given_same_factors_p_and_v(pair, tokens):
    _, peft, ours, layers = pair
    with torch.no_grad():
        ours.state.v.copy_(torch.randn(7, 3, generator=torch.Generator().manual_seed(0)))
        for g in range(7):
            peft.base_model.tinylora_v["default"][str(g)].copy_(ours.state.v[g])
        for i, t in enumerate(ours.targets):
            layer, f = layers[t.name], ours.state.factors[i]
            layer.tinylora_P["default"].copy_(ours.state.P[i])
            sigma = f.B.norm(dim=0)
            # PEFT's own placement, from our U, Σ, V: ΔW = U√Σ R √Σ Vᵀ
            layer.tinylora_B["default"].copy_(f.B / sigma.sqrt())
            layer.tinylora_A["default"].copy_(f.A * sigma.sqrt()[:, None])
            R = ours.state.core(i)
            torch.testing.assert_close(layer.get_delta_weight("default"),
                                       (f.B / sigma.sqrt()) @ R @ (f.A * sigma.sqrt()[:, None]))
            # the paper's placement in PEFT's buffers: B = UΣ, A = Vᵀ -> exactly tinyeval's ΔW
            layer.tinylora_B["default"].copy_(f.B)
            layer.tinylora_A["default"].copy_(f.A)
            torch.testing.assert_close(layer.get_delta_weight("default"), ours.delta_weight(i),
                                       rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(peft(tokens).logits, ours.model(tokens).logits, rtol=1e-5, atol=1e-5)


def test_zero_v_and_trainable_count_agree(pair, tokens):
    base, peft, ours, _ = pair
    n_peft = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    assert n_peft == ours.num_trainable == 21
    with torch.no_grad():
        assert torch.equal(peft(tokens).logits, base(tokens).logits)
        assert torch.equal(ours.model(tokens).logits, base(tokens).logits)
