"""The handle every `attach` returns: one small interface over TinyLoRA, LoRA-XS, LoRA (PEFT) and full FT.

Trainers and evaluators only talk to this interface (the methods below are the contract); each method
implements it in its own module (`lowrank.py` for tinylora / lora-xs, `lora.py`, `full.py`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from torch import nn

from tinyeval.adapters.config import AdapterConfig
from tinyeval.adapters.planner import Plan, Target


class AdapterHandle:
    """An adapter attached to `model`. Subclasses implement the methods below."""

    def __init__(self, model: nn.Module, config: AdapterConfig, plan: Plan, targets: list[Target],
                 base_fingerprint: str):
        self.model = model
        self.config = config
        self.plan = plan
        self.targets = targets
        self.base_fingerprint = base_fingerprint  # of the targeted base weights, taken before any training

    @property
    def num_trainable(self) -> int:
        """Trainable parameters counted as the paper counts them (tied parameters once)."""
        return self.plan.trainable

    def trainable_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def disabled(self) -> AbstractContextManager:
        """Context in which the model computes the base model's outputs (e.g. a KL reference)."""
        raise NotImplementedError

    def merge(self) -> None:
        raise NotImplementedError

    def unmerge(self) -> None:
        raise NotImplementedError

    def for_generation(self) -> AbstractContextManager:
        """Context in which the model generates fastest with the adapter's current outputs.

        By default the model as it is; TinyLoRA / LoRA-XS fold the delta in for the duration, exactly (an
        unmerged side branch halves bf16 decoding speed on CPU). Nothing else may touch the handle inside."""
        return nullcontext(self.model)

    def merged_model(self) -> nn.Module:
        """The plain model with the adapter folded into its weights and nothing of the adapter left (no hooks,
        no extra state-dict keys), e.g. to `save_pretrained` a checkpoint vLLM loads. Ends the handle."""
        raise NotImplementedError

    def export_lora(self, out_dir: str | Path, min_rank: int | None = None) -> Path:
        raise NotImplementedError

    def save(self, out_dir: str | Path, **kwargs) -> Path:
        from tinyeval.adapters.artifact import save

        return save(self, Path(out_dir), **kwargs)

    def state_bytes(self) -> int:
        """Bytes of the trainable state, i.e. what a weight sync must ship."""
        return sum(p.numel() * p.element_size() for p in self.trainable_parameters())
