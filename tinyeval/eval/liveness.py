"""Proof that the model being scored (or sampled from) is the trained adapter, not the base model.

Users of other tools have silently scored the base model: lm-eval with a LoRA under data parallelism, verl's
rollout engine never receiving the adapter. Every path that serves an adapted model through a second copy of the
weights can fail that way: a merge that did not happen, a LoRARequest that did not reach a worker, a weight reload
that kept the old weights. So before tinyeval scores an adapted model, and after each GRPO weight sync until the
adapter is seen live, it asks the served model for its next-token log-probs at the end of a few fixed probe prompts
and compares them with two references computed here in transformers:

    adapted  the trainer's model: the adapter attached, unmerged, exactly as it trained
    base     the same model without the adapter (taken before the adapter loads: full fine-tuning loads in place)

The served model answers through a callable (`ServedLogProbs`): its top `TOP_K` next-token log-probs per probe,
so one rule serves every path: an HF model with the adapter merged (`hf_logprobs`), a vLLM engine with a
LoRARequest or merged weights (`tinyeval.vllm.probe_logprobs`), lm-eval's vLLM wrapper with every data-parallel
replica asked each probe (`tinyeval.eval.backends.lm_eval_logprobs`), a kept engine whose weights were switched.

The rule, over the tokens the served model reports for each probe (the adapted model's most likely token must be
among them, else the gap is infinite):
  - served vs adapted: max |Δ log p| must be <= `tolerance(dtype)`, else one TinyevalError line (naming the base
    model when the served model matches it instead);
  - adapted vs base: above the tolerance the verdict is "live": a served base model would differ from the adapted
    one by exactly that much and be refused. At or below it the adapter does not move these log-probs measurably
    (TinyLoRA at v = 0, LoRA at B = 0, the start of every GRPO run) and the verdict is "no-op": nothing can tell
    its served model from the base, and nothing needs to.

Tolerances from measurement (SmolLM2-135M with trained TinyLoRA adapters that move the base by 1.0-4.2, AVX-512
EPYC; DEVELOPERS.md "Adapter liveness"): fp32 HF merged vs unmerged exactly 0, vLLM-CPU on the merged checkpoint
vs HF unmerged 2.7e-5; bf16 (8 mantissa bits: a logit near 20 is rounded to 1/16) 0.12-0.35 per probe. A false
refusal stops a run, so the margins are wide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypedDict

from tinyeval.errors import TinyevalError

if TYPE_CHECKING:  # torch is imported where it is used: the results' schemas import this module
    import torch

PROBES = (  # short, fixed, unlike any benchmark item; changing them changes every recorded check
    "Ava has 7 books and gets 5 more. How many books does Ava have now?",
    "Question: What is 12 times 3?\nAnswer:",
    "The capital of France is",
    "def add(a, b):\n    return",
)
TOLERANCE = {"float32": 0.02, "float16": 0.2, "bfloat16": 0.5}  # max |Δ log p| (nats) on the served top tokens
TOP_K = 20  # log-probs the served model reports per probe (vLLM's default `max_logprobs` is 20)

ServedLogProbs = Callable[[list[list[int]]], list[dict[int, float]]]
"""Token ids of each probe -> the served model's top next-token log-probs {token: log p}, one dict per probe in
order; several rounds of all probes when the model is served by several replicas (each must answer every probe)."""


class LivenessJson(TypedDict):
    """What the check measured, recorded with the scores (eval results.json `liveness`, the matrix's unit.json,
    GRPO's summary.json for a vLLM rollout engine)."""

    served: str  # hf-merged | vllm-merged | vllm-lora | vllm-merge-sync, or two joined by "+"
    probes: int
    replicas: int  # copies of the served model that answered every probe (lm-eval data parallelism: one each)
    top_k: int  # gaps are over the served model's top_k next tokens of each probe
    tolerance: float
    served_vs_adapted: float  # max |log p_served - log p_adapted| (inf in a refusal: adapted top-1 not served)
    served_vs_base: float
    adapted_vs_base: float  # what the adapter changes on the probes: <= tolerance means "no-op"
    verdict: Literal["live", "no-op"]


@dataclass(frozen=True)
class Reference:
    """The adapted model and its base on the probes, computed in transformers: (P, V) float32 log-probs."""

    ids: list[list[int]]
    adapted: torch.Tensor
    base: torch.Tensor


def probe_ids(tokenizer) -> list[list[int]]:
    """The probes as token ids (no special tokens): the same ids go to the references and to the served model."""
    return [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in PROBES]


def next_token_logprobs(model, ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """(P, V) float32 log-softmax at each probe's last position (one probe at a time: no padding to get wrong)."""
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        rows = [model(input_ids=torch.tensor([list(i)], device=device)).logits[0, -1].float() for i in ids]
    return torch.log_softmax(torch.stack(rows), -1).cpu()


def hf_logprobs(model, k: int = TOP_K) -> ServedLogProbs:
    """The served-log-probs callable of an HF model: its top `k` next-token log-probs per probe."""
    def served(ids: list[list[int]]) -> list[dict[int, float]]:
        values, tokens = next_token_logprobs(model, ids).topk(k, dim=-1)
        return [dict(zip(t.tolist(), v.tolist())) for t, v in zip(tokens, values)]

    return served


def tolerance(*dtypes: str) -> float:
    """The tolerance of a comparison between models in these dtypes: the loosest one's."""
    names = [str(d).removeprefix("torch.") for d in dtypes]
    unknown = [d for d in names if d not in TOLERANCE]
    if unknown:
        raise TinyevalError(f"no liveness tolerance for dtype {unknown[0]!r}; known: {', '.join(TOLERANCE)}")
    return max(TOLERANCE[d] for d in names)


def _gaps(ref: Reference, p: int, got: dict[int, float]) -> tuple[float, float, float]:
    """(served vs adapted, served vs base, adapted vs base) on the served tokens of probe `p`."""
    import torch

    tokens = torch.tensor(list(got))
    values = torch.tensor(list(got.values()), dtype=torch.float32)
    adapted, base = ref.adapted[p, tokens], ref.base[p, tokens]
    missing = int(ref.adapted[p].argmax()) not in got
    return (math.inf if missing else float((values - adapted).abs().max()), float((values - base).abs().max()),
            float((adapted - base).abs().max()))


def check(ref: Reference, served: ServedLogProbs, name: str, tol: float) -> LivenessJson:
    """The rule of the module docstring: the record, or one TinyevalError line naming what the served model is."""
    outs = served(ref.ids)
    n = len(ref.ids)
    if not outs or len(outs) % n:
        raise TinyevalError(f"adapter liveness check ({name}): the served model answered {len(outs)} probes, "
                            f"expected a multiple of {n}")
    gaps = [_gaps(ref, j % n, got) for j, got in enumerate(outs)]
    s_a, s_b, a_b = (max(g[i] for g in gaps) for i in range(3))
    if s_a > tol:
        worst = max(range(len(gaps)), key=lambda j: gaps[j][0])
        w_a, w_b, w_ab = gaps[worst]
        what = "ignores the adapter: it serves the base model" if w_b <= tol else "is not the adapted model"
        copy = f", replica {worst // n + 1} of {len(outs) // n}" if len(outs) > n else ""
        how = (f"the adapted model's most likely token is not in its top {len(outs[worst])}" if w_a == math.inf
               else f"max |Δ log p| vs the adapted model {w_a:.3g} > tolerance {tol:g}")
        raise TinyevalError(f"adapter liveness check ({name}): the served model {what} (after probe "
                            f"{PROBES[worst % n]!r}{copy}: {how}; vs the base model {w_b:.3g}; the adapter moves "
                            f"them by {w_ab:.3g}); refusing to use it")
    return LivenessJson(served=name, probes=n, replicas=len(outs) // n, top_k=max(len(o) for o in outs),
                        tolerance=tol, served_vs_adapted=round(s_a, 6), served_vs_base=round(s_b, 6),
                        adapted_vs_base=round(a_b, 6), verdict="live" if a_b > tol else "no-op")


def attach(model, tokenizer, adapter_dir, load: Callable):
    """(`load(model, adapter_dir)`: the attached adapter's handle, its `Reference`): the base log-probs are taken
    before it loads (full fine-tuning loads in place and keeps no base), the adapted ones before anything merges."""
    ids = probe_ids(tokenizer)
    base = next_token_logprobs(model, ids)
    handle = load(model, adapter_dir)
    return handle, Reference(ids, next_token_logprobs(handle.model, ids), base)


def reference(handle, tokenizer) -> Reference:
    """The reference of an adapter attached in training: the model as is, and under `handle.disabled()`."""
    ids = probe_ids(tokenizer)
    adapted = next_token_logprobs(handle.model, ids)
    with handle.disabled() as model:
        base = next_token_logprobs(model if model is not None else handle.model, ids)
    return Reference(ids, adapted, base)


def merged_with_proof(model, tokenizer, adapter_dir, dtype: str, load: Callable) -> tuple[object, LivenessJson]:
    """(`model` with the adapter at `adapter_dir` merged into its weights, the proof that the merge serves it)."""
    handle, ref = attach(model, tokenizer, adapter_dir, load)
    merged = handle.merged_model()
    return merged, check(ref, hf_logprobs(merged), "hf-merged", tolerance(dtype))


def combine(first: LivenessJson, second: LivenessJson) -> LivenessJson:
    """One record for a suite served by two models (vLLM generates, HF scores log-likelihoods): the worst of both."""
    worst = {k: max(first[k], second[k]) for k in ("replicas", "top_k", "tolerance", "served_vs_adapted",
                                                   "served_vs_base", "adapted_vs_base")}
    verdict = "live" if "live" in (first["verdict"], second["verdict"]) else "no-op"
    return LivenessJson(served=f"{first['served']}+{second['served']}", probes=first["probes"], verdict=verdict,
                        **worst)


def describe(record: LivenessJson) -> str:
    """One line for the terminal."""
    what = ("the served model is the adapted one" if record["verdict"] == "live" else
            "the adapter does not move these log-probs beyond the tolerance (a no-op here)")
    return (f"adapter liveness ({record['served']}): {record['verdict']}: {what}; max |Δ log p| vs adapted "
            f"{record['served_vs_adapted']:.2g} <= {record['tolerance']:g}, adapted vs base "
            f"{record['adapted_vs_base']:.2g} ({record['probes']} probes x {record['replicas']})")
