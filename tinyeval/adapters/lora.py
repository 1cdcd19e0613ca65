"""LoRA: PEFT's own (`LoraConfig`, rank r, alpha = r unless set, no dropout, no bias) behind the same handle.

It is the baseline the paper compares with, so it stays unmodified; its artifact is PEFT's adapter directory
(adapter_config.json + adapter_model.safetensors) plus adapter.json.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from tinyeval.adapters.handle import AdapterHandle
from tinyeval.adapters.planner import Plan, Target, sized
from tinyeval.errors import TinyevalError


class LoraHandle(AdapterHandle):
    """A PEFT LoRA model; `handle.model` is the `PeftModel` (HF causal-LM interface preserved)."""

    @classmethod
    def cost(cls, targets: list[Target], config, total_params: int) -> Plan:
        """B (out×r) and A (r×in) per module."""
        r = config.rank
        return sized(config.method, r, targets, sum(r * (t.in_features + t.out_features) for t in targets),
                     u=None, n_tie=None, groups=None)

    @classmethod
    def create(cls, model: nn.Module, config, targets: list[Target], plan: Plan, base_fingerprint: str):
        return cls(wrap_lora(model, config), config, plan, targets, base_fingerprint)

    def write(self, out: Path) -> dict:
        self.model.save_pretrained(out)
        return {}

    @classmethod
    def load(cls, model: nn.Module, config, targets: list[Target], plan: Plan, meta, path: Path):
        from peft import PeftModel

        try:
            peft = PeftModel.from_pretrained(model, path, is_trainable=True)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise TinyevalError(f"adapter {path}: PEFT cannot load it ({str(e).splitlines()[0]})") from None
        return cls(peft, config, plan, targets, meta["base_fingerprint"])

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


def wrap_lora(model: nn.Module, cfg) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    alpha = cfg.lora_alpha if cfg.lora_alpha is not None else cfg.rank
    return get_peft_model(model, LoraConfig(r=cfg.rank, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                                            target_modules=list(cfg.target_modules), task_type="CAUSAL_LM"))
