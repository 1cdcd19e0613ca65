"""Export a TinyLoRA / LoRA-XS adapter as a standard PEFT LoRA adapter of rank r.

ΔW = U Σ R Vᵀ has rank ≤ r, so it is exactly a LoRA: lora_B = UΣR (out, r), lora_A = Vᵀ (r, in), with
lora_alpha = r so PEFT's scaling alpha/r is 1. The directory (adapter_config.json + adapter_model.safetensors)
loads with `PeftModel.from_pretrained`, vLLM's `LoRARequest` and lm-eval's `peft=` / `lora_local_path=`, with
no tinyeval code. `min_rank` zero-pads both factors (ΔW unchanged) for servers whose smallest LoRA rank is
larger than r.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tinyeval.errors import TinyevalError


def lora_factors(handle, i: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(lora_A (rank, in), lora_B (out, rank)) of module i, zero-padded from r to `rank`, fp32."""
    f, r = handle.state.factors[i], handle.config.rank
    A, B = f.A, f.B @ handle.state.core(i).detach()  # (r, in), (out, r)
    if rank > r:
        A = torch.cat([A, A.new_zeros(rank - r, A.shape[1])])
        B = torch.cat([B, B.new_zeros(B.shape[0], rank - r)], dim=1)
    return A.contiguous(), B.contiguous()


def export_lora(handle, out_dir: Path, min_rank: int | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """Write the PEFT LoRA directory atomically; returns it."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    from tinyeval.io import atomic_dir

    if handle.state.merged:
        raise TinyevalError("unmerge the adapter before exporting it (a merged model has no separate delta)")
    rank = max(handle.config.rank, min_rank or 0)
    tensors = {}
    for i, t in enumerate(handle.targets):
        A, B = lora_factors(handle, i, rank)
        tensors[f"base_model.model.{t.name}.lora_A.weight"] = A.to(dtype).cpu()
        tensors[f"base_model.model.{t.name}.lora_B.weight"] = B.to(dtype).cpu()
    base = getattr(handle.model.config, "_name_or_path", None) or None
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                        target_modules=sorted({t.kind for t in handle.targets}), base_model_name_or_path=base)
    with atomic_dir(out_dir) as tmp:
        config.save_pretrained(tmp)
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    return out_dir
