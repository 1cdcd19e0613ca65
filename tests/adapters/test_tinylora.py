import pytest
import torch

from tinyeval.adapters import AdapterConfig, attach
from tinyeval.adapters.lowrank import module_seed, projections

ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def logits(model, tokens):
    with torch.no_grad():
        return model(tokens).logits


def hand_delta(W: torch.Tensor, v: torch.Tensor, P: torch.Tensor, r: int) -> torch.Tensor:
    """U Σ (Σᵢ vᵢ Pᵢ) Vᵀ from an exact SVD, with the documented sign convention (max |u_j| entry > 0)."""
    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    U, S, V = U[:, :r], S[:r], Vh[:r].T
    sign = torch.sign(U[U.abs().argmax(0), torch.arange(r)])
    U, V = U * sign, V * sign
    R = sum(v[i].double() * P[i].double() for i in range(len(v)))
    return U @ torch.diag(S) @ R @ V.T


def test_delta_matches_formula_by_hand(model_pair, tokens):
    model, base = model_pair
    h = attach(model, AdapterConfig(params=28, rank=2))  # 14 modules -> u = 2, no tying
    assert (h.plan.u, h.plan.n_tie, h.num_trainable) == (2, 1, 28)
    with torch.no_grad():
        h.state.v.copy_(torch.randn(14, 2, generator=torch.Generator().manual_seed(3)))
    for i, t in enumerate(h.targets):
        W = base.get_submodule(t.name).weight
        expected = hand_delta(W, h.state.v[i], projections(0, t.name, 2, 2), 2)
        torch.testing.assert_close(h.delta_weight(i).double(), expected, rtol=1e-4, atol=1e-5)
    # the forward path adds exactly x ΔWᵀ: compare against the base model with ΔW added to its weights
    with torch.no_grad():
        for i, t in enumerate(h.targets):
            base.get_submodule(t.name).weight += h.delta_weight(i)
    torch.testing.assert_close(logits(model, tokens), logits(base, tokens), rtol=1e-4, atol=1e-4)


def test_zero_v_reproduces_base_logits_exactly(make_llama, tokens):
    model, base = make_llama(dtype="bfloat16"), make_llama(dtype="bfloat16")
    h = attach(model, AdapterConfig(params=13))
    assert h.state.v.dtype == torch.float32 and not h.state.v.any()
    assert torch.equal(logits(model, tokens), logits(base, tokens))


def test_gradients_reach_only_v(model, tokens):
    h = attach(model, AdapterConfig(params=7, tying="structured"))
    assert h.trainable_parameters() == [h.state.v] and h.num_trainable == 7
    assert [p for p in model.parameters() if p.requires_grad] == [h.state.v]
    model(tokens, labels=tokens).loss.backward()
    assert h.state.v.grad is not None and h.state.v.grad.abs().min() > 0  # every group gets signal at v = 0
    assert all(p.grad is None for n, p in model.named_parameters() if not n.endswith("tinyeval_adapter.v"))
    assert h.state_bytes() == 7 * 4


def test_folded_fp32_path_matches_the_separate_branch(make_llama, tokens):
    """fp32 folds ΔW into the weight with a hand-written backward; fp64 takes the two-branch path (autograd).
    Loss and the gradient of v must agree, also for v ≠ 0 and for x-gradients flowing through many layers."""
    losses, grads = [], []
    for dtype in ("float32", "float64"):
        model = make_llama(dtype=dtype)
        h = attach(model, AdapterConfig(params=28))  # u = 2, no tying
        with torch.no_grad():
            h.state.v.copy_(torch.randn(h.state.v.shape, generator=torch.Generator().manual_seed(5)))
        loss = model(tokens, labels=tokens).loss
        loss.backward()
        losses.append(loss.double())
        grads.append(h.state.v.grad.double())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_tied_modules_share_one_v(model, tokens):
    h = attach(model, AdapterConfig(params=7))  # 14 modules, tiled, n_tie = 2
    assert h.plan.n_tie == 2 and h.state.group.tolist() == [i // 2 for i in range(14)]
    with torch.no_grad():
        h.state.v[3] = 1.0
    changed = [i for i in range(14) if h.delta_weight(i).abs().sum() > 0]
    assert changed == [6, 7]


def test_two_builds_are_identical(make_llama, tokens):
    a, b = attach(make_llama(), AdapterConfig(params=14)), attach(make_llama(), AdapterConfig(params=14))
    assert torch.equal(a.state.P, b.state.P)
    for fa, fb in zip(a.state.factors, b.state.factors):
        assert torch.equal(fa.A, fb.A) and torch.equal(fa.B, fb.B)
    assert a.base_fingerprint == b.base_fingerprint
    # seeds come from (seed, module name), not from Python's salted hash()
    assert module_seed(0, "x") == module_seed(0, "x") != module_seed(1, "x") != module_seed(0, "y")
    c = attach(make_llama(), AdapterConfig(params=14, seed=1))
    assert not torch.equal(a.state.P, c.state.P)


def test_lora_xs_is_a_trainable_r_by_r_core(model_pair, tokens):
    model, base = model_pair
    h = attach(model, AdapterConfig(method="lora-xs", rank=2))
    assert h.num_trainable == 14 * 4 and h.state.v.shape == (14, 4)
    with torch.no_grad():
        h.state.v.normal_()
    f = h.state.factors[5]
    torch.testing.assert_close(h.delta_weight(5), f.B @ h.state.v[5].view(2, 2) @ f.A)
    assert torch.equal(logits(base, tokens), logits(base, tokens))
    assert not torch.allclose(logits(model, tokens), logits(base, tokens))


def test_disabled_gives_base_outputs_and_merge_round_trips_bit_exactly(make_llama, tokens):
    model, base = make_llama(dtype="bfloat16"), make_llama(dtype="bfloat16")
    h = attach(model, AdapterConfig(params=14))
    with torch.no_grad():
        h.state.v.normal_(std=0.5)
    adapted = logits(model, tokens)
    with h.disabled():
        assert torch.equal(logits(model, tokens), logits(base, tokens))
    h.merge()
    torch.testing.assert_close(logits(model, tokens), adapted, rtol=0.05, atol=0.05)  # bf16 rounding of W+ΔW
    with h.disabled():  # unmerges underneath, re-merges after
        assert torch.equal(logits(model, tokens), logits(base, tokens))
    assert h.state.merged
    h.unmerge()
    for t in h.targets:
        assert torch.equal(model.get_submodule(t.name).weight, base.get_submodule(t.name).weight)
    assert torch.equal(logits(model, tokens), adapted)


@pytest.mark.parametrize("method", ["tinylora", "lora"])
def test_merged_model_is_the_plain_model_with_the_delta_folded_in(make_llama, tokens, method):
    """What vLLM loads from a merged checkpoint: the base's exact state-dict keys, the adapted outputs."""
    base_keys = set(make_llama().state_dict())
    h = attach(make_llama(), AdapterConfig(method=method, params=14, rank=2))
    with torch.no_grad():
        for p in h.trainable_parameters():
            p.normal_(std=0.5)
    adapted = logits(h.model, tokens)
    merged = h.merged_model()
    assert set(merged.state_dict()) == base_keys
    assert all("forward" not in vars(m) for m in merged.modules())  # no per-instance forward left behind
    torch.testing.assert_close(logits(merged, tokens), adapted, rtol=1e-4, atol=1e-4)


def test_lora_and_full_through_the_same_interface(make_llama, tokens):
    lora = attach(make_llama(), AdapterConfig(method="lora", rank=1))
    peft_count = sum(p.numel() for p in lora.trainable_parameters())
    assert lora.num_trainable == peft_count == sum(t.in_features + t.out_features for t in lora.targets)
    with lora.disabled():
        base_out = logits(lora.model, tokens)
    assert torch.equal(base_out, logits(make_llama(), tokens))
    full = attach(make_llama(), AdapterConfig(method="full"))
    assert full.num_trainable == sum(p.numel() for p in full.model.parameters())
    assert all(p.requires_grad for p in full.model.parameters())
