"""selected_logprobs: the same log-probs and logits gradient as log_softmax(logits.float()).gather, chunked, and
without an fp32 [N, T, V] tensor kept for backward."""

import pytest
import torch

from tinyeval.train import logprobs
from tinyeval.train.logprobs import selected_logprobs


def _reference(logits, targets, temperature):
    z = logits[:, : targets.shape[1]].float()
    if temperature > 0 and temperature != 1.0:
        z = z / temperature
    return torch.log_softmax(z, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_values_and_gradient_match_the_full_log_softmax(monkeypatch, dtype, temperature, device):
    monkeypatch.setattr(logprobs, "CHUNK_ELEMENTS", 3 * 50)  # 3 tokens per chunk: rows split into several chunks
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 8, 50, generator=gen) * 4).to(device, dtype)  # [N, L = T + 1, V]
    targets = torch.randint(0, 50, (3, 7), generator=gen).to(device)
    weights = torch.randn(3, 7, generator=gen).to(device)  # a loss that weighs tokens differently

    ours_in = logits.clone().requires_grad_()
    ours = selected_logprobs(ours_in, targets, temperature)
    (ours * weights).sum().backward()
    ref_in = logits.clone().requires_grad_()
    ref = _reference(ref_in, targets, temperature)
    (ref * weights).sum().backward()

    assert ours.dtype == torch.float32 and ours.shape == (3, 7)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert ours_in.grad.dtype == dtype
    torch.testing.assert_close(ours_in.grad.float(), ref_in.grad.float(), rtol=1e-5 if dtype == torch.float32 else 1e-2,
                               atol=1e-6 if dtype == torch.float32 else 1e-2)
    assert bool((ours_in.grad[:, 7:] == 0).all())  # the last position predicts nothing here
    assert torch.equal(ours_in.detach(), logits)  # the model's logits are read, never written


def test_no_fp32_full_vocabulary_tensor_is_kept_for_backward():
    """What autograd holds after the forward: the bf16 logits and [N, T] vectors, not a [N, T, V] fp32 copy."""
    logits = torch.randn(2, 5, 1000).to(torch.bfloat16).requires_grad_()
    targets = torch.randint(0, 1000, (2, 4))
    kept = []

    def pack(t):
        kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        selected_logprobs(logits, targets)
    full = [t for t in kept if t.numel() >= 2 * 4 * 1000]
    assert full and all(t.dtype == torch.bfloat16 for t in full)
    kept.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):  # what the old code kept
        _reference(logits, targets, 1.0)
    assert any(t.dtype == torch.float32 and t.numel() >= 2 * 4 * 1000 for t in kept)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="logits"):
        selected_logprobs(torch.zeros(2, 3, 10), torch.zeros(2, 4, dtype=torch.long))
