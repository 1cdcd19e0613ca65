"""Proof that the model being scored is the trained adapter, not the base model.

Users of other tools have silently scored the base model: lm-eval with a LoRA under data parallelism, verl's
rollout engine never receiving the adapter. Before tinyeval scores an adapted model it compares next-token
log-probabilities on a few fixed probe prompts, at the last prompt position, over the whole vocabulary:

    served   the model that will be scored (the HF model with the adapter merged into its weights, a vLLM engine)
    adapted  the trainer's model: the adapter attached, unmerged, exactly as it trained
    base     the same model with the adapter disabled

Gaps are max |Δ log p| over each probe's `TOP_K` most likely next tokens under the adapted model (what generation
draws from; far down the vocabulary, bf16 rounding alone moves log-probs by ~0.5). The served model must match the
adapted one within `tolerance` (a merge in bf16 rounds every weight: measured on SmolLM2 with trained TinyLoRA
adapters, merged vs unmerged 0.12-0.30 in bf16, exactly 0 in fp32, while the adapters moved the base by 1.0-2.8), be
closer to it than to the base, and, wherever the adapted model differs from the base by more than the tolerance,
differ from the base too. An adapter that changes nothing on the probes (TinyLoRA at v = 0, an untrained LoRA) is recorded
as "no-op" rather than refused: nothing can tell its served model from the base, and nothing needs to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypedDict

from tinyeval.errors import TinyevalError

if TYPE_CHECKING:
    import torch

PROBES = (
    "Ava has 7 books and gets 5 more. How many books does Ava have now?",
    "Question: What is 12 times 3?\nAnswer:",
    "The capital of France is",
    "def add(a, b):\n    return",
)
TOLERANCE = {"float32": 2e-3, "bfloat16": 0.5, "float16": 0.2}  # max |Δ log p| over the probes' top tokens
TOP_K = 10

class LivenessJson(TypedDict):
    """What the check measured, recorded with the scores (eval results.json `liveness`, the matrix's unit.json)."""

    served: str  # hf-merged | vllm-merged | vllm-lora
    probes: int
    top_k: int  # gaps are over each probe's top_k next tokens under the adapted model
    tolerance: float
    served_vs_adapted: float  # max |log p_served - log p_adapted|
    served_vs_base: float
    adapted_vs_base: float  # what the adapter changes on the probes
    verdict: Literal["live", "no-op"]


def next_token_logprobs(model, tokenizer, prompts: list[str]) -> torch.Tensor:
    """[P, V] fp32 log-softmax at each prompt's last position (one prompt at a time: no padding to get wrong)."""
    import torch

    device = next(model.parameters()).device
    rows = []
    with torch.no_grad():
        for p in prompts:
            ids = tokenizer(p, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
            rows.append(torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1).cpu())
    return torch.stack(rows)


def _gap(a: torch.Tensor, b: torch.Tensor, top: torch.Tensor) -> float:
    return float((a.gather(1, top) - b.gather(1, top)).abs().max())


def check(served: torch.Tensor, adapted: torch.Tensor, base: torch.Tensor, tolerance: float,
          name: str) -> LivenessJson:
    """The rule of the module docstring; a TinyevalError naming what went wrong when the served model fails it."""
    top = adapted.topk(min(TOP_K, adapted.shape[-1]), -1).indices
    record = LivenessJson(served=name, probes=int(adapted.shape[0]), top_k=int(top.shape[1]), tolerance=tolerance,
                          served_vs_adapted=_gap(served, adapted, top), served_vs_base=_gap(served, base, top),
                          adapted_vs_base=_gap(adapted, base, top), verdict="live")
    live = record["adapted_vs_base"] > tolerance
    closer = record["served_vs_adapted"] < record["served_vs_base"] or not live
    if record["served_vs_adapted"] > tolerance or not closer or (live and record["served_vs_base"] <= tolerance):
        looks = " (it serves the base model: the adapter never reached it)" if record["served_vs_base"] <= tolerance \
            else ""
        raise TinyevalError(f"adapter liveness check failed for {name}: the served model's next-token log-probs differ "
                            f"from the trained adapter's by {record['served_vs_adapted']:.3g} (tolerance {tolerance:g})"
                            f"{looks}; refusing to score it")
    if not live:
        record["verdict"] = "no-op"
    return record


def tolerance(dtype: str) -> float:
    return TOLERANCE.get(str(dtype).removeprefix("torch."), TOLERANCE["bfloat16"])


def merged_with_proof(model, tokenizer, adapter_dir, dtype: str, load: Callable) -> tuple[object, LivenessJson]:
    """(`model` with the adapter at `adapter_dir` merged into its weights, the proof that the merge serves it).

    `load(model, adapter_dir)` attaches the adapter (in place) and returns a handle with `.model` and `merged_model()`
    (`tinyeval.adapters.load_adapter`); the base log-probs are taken before it loads, the adapted ones before it
    merges."""
    base = next_token_logprobs(model, tokenizer, list(PROBES))  # before `load`: full fine-tuning loads in place
    handle = load(model, adapter_dir)
    adapted = next_token_logprobs(handle.model, tokenizer, list(PROBES))
    merged = handle.merged_model()
    served = next_token_logprobs(merged, tokenizer, list(PROBES))
    return merged, check(served, adapted, base, tolerance(dtype), "hf-merged")
