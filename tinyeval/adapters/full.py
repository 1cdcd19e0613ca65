"""Full fine-tuning behind the same handle: every weight trains, so a sweep treats it like any adapter.

Its artifact is the whole model (`model/`, as `save_pretrained` writes it) plus adapter.json, whose base
fingerprint still ties it to the weights training started from.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from torch import nn

from tinyeval.adapters.handle import AdapterHandle
from tinyeval.adapters.planner import Plan, Target, sized
from tinyeval.errors import TinyevalError


class FullHandle(AdapterHandle):
    """Full fine-tuning: every weight trains, so there is no separate delta to merge, disable or export."""

    @classmethod
    def cost(cls, targets: list[Target], config, total_params: int) -> Plan:
        return sized(config.method, 0, targets, int(total_params), u=None, n_tie=None, groups=None)

    @classmethod
    def create(cls, model: nn.Module, config, targets: list[Target], plan: Plan, base_fingerprint: str):
        model.requires_grad_(True)
        return cls(model, config, plan, targets, base_fingerprint)

    def write(self, out: Path) -> dict:
        self.model.save_pretrained(out / "model")
        return {}

    @classmethod
    def load(cls, model: nn.Module, config, targets: list[Target], plan: Plan, meta, path: Path):
        from tinyeval.adapters.artifact import read_tensors

        files = sorted((path / "model").glob("*.safetensors"))
        if not files:
            raise TinyevalError(f"adapter {path}: no model/*.safetensors (a full fine-tune saves the whole model)")
        for f in files:
            model.load_state_dict(read_tensors(f), strict=False)
        model.requires_grad_(True)
        return cls(model, config, plan, targets, meta["base_fingerprint"])

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
