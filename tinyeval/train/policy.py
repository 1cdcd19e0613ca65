"""The one seam between the trainers and the adapters: attach a trainable adapter to a loaded model.

`tinyeval.adapters.attach` (TinyLoRA, LoRA-XS, LoRA, full) is used when that package is present;
until then every method falls back to a plain PEFT LoRA of the requested rank, with a warning, behind
the same handle interface (`model`, `trainable_parameters()`, `num_trainable`, `disabled()`,
`export_lora(dir)`, `save(dir)`, `state_bytes()`). Switching is this module only.
"""

from __future__ import annotations

import importlib.util
import warnings
from contextlib import AbstractContextManager
from pathlib import Path

import torch

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
METHODS = ("tinylora", "lora-xs", "lora", "full")


def adapters_available() -> bool:
    """True once `tinyeval.adapters` exports its public API (a half-built package does not count)."""
    if importlib.util.find_spec("tinyeval.adapters") is None:
        return False
    import tinyeval.adapters as adapters

    return hasattr(adapters, "attach") and hasattr(adapters, "AdapterConfig")


class PeftLoraHandle:
    """A PEFT LoRA behind the adapters handle interface (the fallback until `tinyeval.adapters` lands)."""

    def __init__(self, model, rank: int, seed: int, target_modules=ALL_LINEAR) -> None:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed)  # LoRA A init
        cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=list(target_modules))
        self.model = get_peft_model(model, cfg)  # adapter weights in fp32 (PEFT's autocast_adapter_dtype)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def disabled(self) -> AbstractContextManager:
        return self.model.disable_adapter()

    def export_lora(self, out: str | Path) -> Path:
        self.model.save_pretrained(str(out))
        return Path(out)

    def save(self, out: str | Path) -> Path:
        return self.export_lora(out)

    def state_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.trainable_parameters())


def attach_adapter(model, method: str = "tinylora", params: int | None = 13, rank: int = 2, seed: int = 0,
                   tying: str = "tiled"):
    """Make `model` trainable with `method`; returns the handle. The only place that picks an implementation."""
    if adapters_available():
        from tinyeval.adapters import AdapterConfig, attach

        return attach(model, AdapterConfig(method=method, params=params, rank=rank, tying=tying,
                                           target_modules=ALL_LINEAR, seed=seed))
    warnings.warn(f"tinyeval.adapters is not installed yet: training a PEFT LoRA of rank {rank} instead of "
                  f"'{method}'", RuntimeWarning, stacklevel=2)
    return PeftLoraHandle(model, rank, seed)
