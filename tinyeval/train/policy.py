"""The one seam between the trainers and the adapters: attach a trainable adapter to a loaded model.

`tinyeval.adapters.attach` (TinyLoRA, LoRA-XS, LoRA, full) is used when that package is present;
until then `tinylora` falls back to PEFT's own TinyLoRA (u = 1, tiled groups sized to the budget) and
every other method to a plain PEFT LoRA of the requested rank, with a warning, behind the same handle
interface (`model`, `trainable_parameters()`, `num_trainable`, `disabled()`, `for_generation()`,
`export_lora(dir)`, `save(dir)`, `state_bytes()`). Switching is this module only.
"""

from __future__ import annotations

import importlib.util
import warnings
from contextlib import AbstractContextManager, nullcontext
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
        self.rank = rank

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def disabled(self) -> AbstractContextManager:
        return self.model.disable_adapter()

    def for_generation(self) -> AbstractContextManager:
        """The model as it is: PEFT's unmerge is not exact in bf16, so rollouts keep the adapter unmerged."""
        return nullcontext(self.model)

    def export_lora(self, out: str | Path) -> Path:
        self.model.save_pretrained(str(out))
        return Path(out)

    def save(self, out: str | Path) -> Path:
        return self.export_lora(out)

    def state_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.trainable_parameters())


class PeftTinyLoraHandle(PeftLoraHandle):
    """PEFT's TinyLoRA (dW = B R A, R = sum_i v_i P_i, v init 0) sized to a parameter budget.

    u = 1 and consecutive modules (q, k, v, o, gate, up, down, next block...) share one v: "tiled" tying.
    `export_lora` writes the rank-r LoRA B' = B R, A' = A (scaling 1): the exact same dW, servable by vLLM.
    """

    def __init__(self, model, params: int, rank: int, seed: int, target_modules=ALL_LINEAR) -> None:
        from peft import TinyLoraConfig, get_peft_model

        n_modules = sum(1 for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in target_modules)
        groups = max(1, min(params, n_modules))
        cfg = TinyLoraConfig(r=rank, u=1, weight_tying=1.0 - groups / n_modules, projection_seed=42 + seed,
                             target_modules=list(target_modules))
        self.model = get_peft_model(model, cfg)
        self.rank = rank

    def export_lora(self, out: str | Path) -> Path:
        import json

        from safetensors.torch import save_file

        from tinyeval.io import atomic_dir

        tensors, targets = {}, set()
        with torch.no_grad():
            for name, module in self.model.named_modules():
                if hasattr(module, "tinylora_A") and "default" in module.tinylora_A:
                    r_mat = module._compute_R("default").float()  # [r, r]
                    tensors[f"{name}.lora_B.weight"] = (module.tinylora_B["default"].float() @ r_mat).contiguous()
                    tensors[f"{name}.lora_A.weight"] = module.tinylora_A["default"].float().contiguous()
                    targets.add(name.rsplit(".", 1)[-1])
        config = {"peft_type": "LORA", "r": self.rank, "lora_alpha": self.rank, "target_modules": sorted(targets),
                  "lora_dropout": 0.0, "bias": "none", "task_type": "CAUSAL_LM", "base_model_name_or_path": None}
        with atomic_dir(out) as tmp:
            save_file(tensors, str(tmp / "adapter_model.safetensors"))
            (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2))
        return Path(out)

    def save(self, out: str | Path) -> Path:
        self.model.save_pretrained(str(out))
        return Path(out)


def attach_adapter(model, method: str = "tinylora", params: int | None = 13, rank: int = 2, seed: int = 0,
                   tying: str = "tiled"):
    """Make `model` trainable with `method`; returns the handle. The only place that picks an implementation."""
    if adapters_available():
        from tinyeval.adapters import AdapterConfig, attach

        return attach(model, AdapterConfig(method=method, params=params, rank=rank, tying=tying,
                                           target_modules=ALL_LINEAR, seed=seed))
    if method == "tinylora":
        return PeftTinyLoraHandle(model, params or 13, rank, seed)
    warnings.warn(f"tinyeval.adapters is not installed yet: training a PEFT LoRA of rank {rank} instead of "
                  f"'{method}'", RuntimeWarning, stacklevel=2)
    return PeftLoraHandle(model, rank, seed)


def load_trained(model, adapter_dir: str | Path):
    """The model with a trained adapter (as `handle.save` wrote it) applied; for evaluation after training."""
    if adapters_available():
        from tinyeval.adapters import load_adapter

        return load_adapter(model, adapter_dir).model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir))
