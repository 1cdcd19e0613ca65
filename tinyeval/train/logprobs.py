"""Per-token log-probs of given tokens, without a full-vocabulary fp32 copy of the logits: what GRPO's policy
ratio and SFT's next-token loss both need.

    log p(y_t) = z_t[y_t] - logsumexp(z_t),     z_t = logits_t / temperature, in fp32

The straightforward `torch.log_softmax(logits.float(), -1).gather(...)` keeps, per micro-batch of N sequences
of T tokens over a vocabulary V, an fp32 [N, T, V] log-softmax for backward and allocates two or three more
[N, T, V] fp32 tensors in backward (the gather's gradient, the log-softmax's, a temporary): at Qwen2.5's V =
151,936 and N × T = 32 × 64 that is ~1.2 GB each, ~4-5 GB at the start of backward, when every activation of
the forward is still held. `selected_logprobs` keeps only the model's own logits (bf16 on GPUs) and one fp32
value per token (the logsumexp), and works through the vocabulary dimension in fp32 chunks of at most
`CHUNK_ELEMENTS`, forward and backward; its one full-size allocation is the logits' gradient, in the logits'
dtype (what the `.float()` cast's backward would have produced anyway). Same numerics: every log-prob is
computed in fp32 from the same logits, and the gradient is computed in fp32 per chunk before the cast.
TRL's `selective_log_softmax` does a row-wise log-softmax in the logits' dtype instead (bf16 log-probs).
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 25  # fp32 elements per chunk (128 MB): ~220 tokens at V = 151,936, ~680 at V = 49,152


def _chunks(n_tokens: int, vocab: int):
    step = max(1, CHUNK_ELEMENTS // vocab)
    return ((s, min(s + step, n_tokens)) for s in range(0, n_tokens, step))


def _scaled(chunk: torch.Tensor, temperature: float) -> torch.Tensor:
    """chunk / temperature as a new fp32 tensor (never a view of the logits: callers work on it in place)."""
    z = chunk.to(torch.float32, copy=True)
    return z.div_(temperature) if temperature != 1.0 else z


class _SelectedLogProbs(torch.autograd.Function):
    """log_softmax(logits[:, :T] / temperature)[targets] as [N, T] fp32; logits [N, L >= T, V], targets [N, T]."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
        n, t = targets.shape
        out = torch.empty(n, t, dtype=torch.float32, device=logits.device)  # [N, T]
        lse = torch.empty(n, t, dtype=torch.float32, device=logits.device)  # [N, T]
        for i in range(n):
            for s, e in _chunks(t, logits.shape[-1]):
                z = _scaled(logits[i, s:e], temperature)  # [c, V] fp32
                lse[i, s:e] = torch.logsumexp(z, -1)
                out[i, s:e] = z.gather(-1, targets[i, s:e, None]).squeeze(-1) - lse[i, s:e]
        ctx.temperature = temperature
        ctx.save_for_backward(logits, targets, lse)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, targets, lse = ctx.saved_tensors
        n, t = targets.shape
        scale = 1.0 / ctx.temperature
        g = torch.empty_like(logits)  # [N, L, V] in the logits' dtype
        g[:, t:] = 0
        for i in range(n):
            for s, e in _chunks(t, logits.shape[-1]):
                z = _scaled(logits[i, s:e], ctx.temperature)
                w = grad[i, s:e, None].float()  # [c, 1]
                gz = z.sub_(lse[i, s:e, None]).exp_().mul_(-w)  # d/dz of w·log p(y) = w (onehot(y) - softmax(z))
                gz.scatter_add_(-1, targets[i, s:e, None], w)
                g[i, s:e] = gz.mul_(scale) if scale != 1.0 else gz
        return g, None, None


def selected_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probs [N, T] fp32 of `targets` [N, T] under `logits` [N, L, V] (L >= T: position t predicts target t;
    positions past T get no gradient). Differentiable in `logits`; `temperature` 0 or 1 means none."""
    if logits.dim() != 3 or targets.dim() != 2 or logits.shape[0] != targets.shape[0] \
            or logits.shape[1] < targets.shape[1]:
        raise ValueError(f"logits [N, L, V] and targets [N, T <= L], got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    return _SelectedLogProbs.apply(logits, targets.to(logits.device), float(temperature) if temperature > 0 else 1.0)


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int,
                   temperature: float = 1.0) -> torch.Tensor:
    """Log-probs [N, T] of the last `n_completion` tokens of `input_ids` [N, L] (left-padded prompts).

    Position ids follow the attention mask, as in `generate`; only the completion's logits are computed
    (`logits_to_keep`), and no KV cache is built. Inputs live on the CPU (trajectory bookkeeping); the result
    is on the model's device.
    """
    input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # [N, L]
    logits = model(input_ids=input_ids, attention_mask=attention_mask.long(), position_ids=positions,
                   logits_to_keep=n_completion + 1, use_cache=False).logits  # [N, T + 1, V], the model's dtype
    return selected_logprobs(logits, input_ids[:, -n_completion:], temperature)  # position t predicts token t
