"""LoRA and full fine-tuning behind the same handle, so a sweep treats every method alike.

LoRA is PEFT's own (`LoraConfig`, rank r, alpha = r unless set, no dropout, no bias): it is the baseline the
paper compares with, so it stays unmodified. Full fine-tuning trains every weight.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from torch import nn

from tinyeval.adapters.handle import AdapterHandle
from tinyeval.errors import TinyevalError


class LoraHandle(AdapterHandle):
    """A PEFT LoRA model; `handle.model` is the `PeftModel` (HF causal-LM interface preserved)."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def disabled(self):
        return self.model.disable_adapter()

    def merge(self) -> None:
        self.model.merge_adapter()

    def unmerge(self) -> None:
        self.model.unmerge_adapter()

    def merged_model(self) -> nn.Module:
        return self.model.merge_and_unload()

    def export_lora(self, out_dir: str | Path, min_rank: int | None = None) -> Path:
        if min_rank is not None and min_rank > self.config.rank:
            raise TinyevalError(f"this LoRA has rank {self.config.rank}; padding to {min_rank} is not supported")
        out = Path(out_dir)
        self.model.save_pretrained(out)
        return out


def lora_config(config, rank: int, alpha: float | None, targets: tuple[str, ...]):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, lora_dropout=0.0, bias="none",
                      target_modules=list(targets), task_type="CAUSAL_LM")


def wrap_lora(model: nn.Module, cfg) -> nn.Module:
    from peft import get_peft_model

    return get_peft_model(model, lora_config(None, cfg.rank, cfg.lora_alpha, cfg.target_modules))


class FullHandle(AdapterHandle):
    """Full fine-tuning: every weight trains, so there is no separate delta to merge, disable or export."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @contextmanager
    def disabled(self):
        raise TinyevalError("full fine-tuning keeps no copy of the base weights: load a separate reference "
                            "model for KL, or use an adapter method")
        yield  # pragma: no cover

    def merge(self) -> None:
        """No-op: the trained weights are the model's weights."""

    def unmerge(self) -> None:
        """No-op, for the same reason (rollout code can call merge/unmerge for every method)."""

    def merged_model(self) -> nn.Module:
        return self.model

    def export_lora(self, out_dir: str | Path, min_rank: int | None = None) -> Path:
        raise TinyevalError("method 'full' has no low-rank delta to export as LoRA; save the model instead")
