"""Merge a rank-r LoRA into a running CPU vLLM engine's weights: the `merge` weight sync.

Why: on CPU, vLLM serving a LoRA decodes ~2-3x slower than the same engine without one (its LoRA kernels
are plain torch ops per layer), and CPU vLLM cannot take new weights through `load_weights` either: after
loading, each linear layer's weight is repacked for oneDNN and the original tensor is dropped. This worker
extension ships the same rank-r LoRA file as the `lora` sync (the bytes on the wire stay adapter-sized),
then inside the worker rebuilds each touched layer's weight as base + scale * B @ A and asks the layer's own
quantisation method to repack it, exactly as at load time. The base weights of the touched layers are read
once from the checkpoint and kept in the worker (one extra copy of those layers), so every sync starts
from the base weights and nothing accumulates. The evaluation engine a worker keeps across units
(`tinyeval.eval.engine_pool`) switches adapters the same way, shipped already-merged weights instead of a LoRA.

This module is imported inside vLLM's worker process (`worker_extension_cls`), so it imports only torch,
safetensors and the standard library.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

_PREFIX = "base_model.model."


def read_lora(adapter_dir: Path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float]:
    """{HF module name: (A [r, in], B [out, r])} and PEFT's scaling (alpha / r, or alpha / sqrt(r) for rsLoRA)."""
    from safetensors.torch import load_file

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    r, alpha = cfg["r"], cfg.get("lora_alpha", cfg["r"])
    scale = alpha / (r ** 0.5) if cfg.get("use_rslora") else alpha / r
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")].removeprefix(_PREFIX)
            factors[module] = (a, tensors[key.replace(".lora_A.", ".lora_B.")])
    if not factors:
        raise ValueError(f"{adapter_dir} holds no LoRA factors")
    return factors, scale


def engine_layout(modules: list[str], packed: dict[str, list[str]]) -> dict[str, list[str]]:
    """{vLLM module: the HF modules stacked in it, in order}: q/k/v live in one `qkv_proj`, gate/up in `gate_up_proj`.

    `packed` is the model's `packed_modules_mapping` (the table vLLM's own LoRA support uses)."""
    part_of = {sub: (fused, subs) for fused, subs in packed.items() for sub in subs}
    layout: dict[str, list[str]] = {}
    for name in modules:
        parent, _, leaf = name.rpartition(".")
        if leaf in part_of:
            fused, subs = part_of[leaf]
            layout[f"{parent}.{fused}"] = [f"{parent}.{s}" for s in subs]
        else:
            layout[name] = [name]
    return layout


def _checkpoint_weights(model_dir: Path, names: set[str]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    found: dict[str, torch.Tensor] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in names.intersection(f.keys()):
                found[key] = f.get_tensor(key)
    missing = names - found.keys()
    if missing:
        raise ValueError(f"{model_dir} lacks {len(missing)} weights the adapter touches, e.g. {min(missing)}")
    return found


class MergeLoRA:
    """vLLM worker extension (`LLM(worker_extension_cls=...)`); called through `collective_rpc`.

    Two callers: the GRPO `merge` sync (`tinyeval_merge_lora`: a rank-r LoRA file, merged here) and the evaluation
    engine a worker keeps across units (`tinyeval.eval.engine_pool`: `tinyeval_load_merged`, weights merged by the
    trainer's side, so the engine serves exactly the weights a fresh engine would load from a merged checkpoint)."""

    def tinyeval_merge_lora(self, adapter_dir: str, model_dir: str) -> int:
        """Set every touched layer to base + LoRA delta and repack it; returns the number of layers rewritten."""
        factors, scale = read_lora(Path(adapter_dir))

        def add(sub: str, rows: torch.Tensor) -> None:
            a, b = factors[sub]
            rows += scale * (b.float() @ a.float())

        return self._tinyeval_rewrite(sorted(factors), model_dir, add)

    def tinyeval_load_merged(self, weights_file: str | None, model_dir: str) -> int:
        """Set the layers holding the weights in `weights_file` (a safetensors file of HF `<module>.weight` tensors,
        the adapter already merged) to them, every other layer rewritten before back to base (None: the base
        model); returns the number of layers rewritten."""
        from safetensors.torch import load_file

        merged = {k.removesuffix(".weight"): v for k, v in (load_file(weights_file) if weights_file else {}).items()}

        def put(sub: str, rows: torch.Tensor) -> None:
            rows.copy_(merged[sub])

        return self._tinyeval_rewrite(sorted(merged), model_dir, put)

    def tinyeval_reseed(self, seed: int) -> None:
        """The worker's random state as an engine started with `seed` sets it (sampling without a per-request
        seed draws from it): an engine kept across evaluations samples from each one's own seed."""
        import random

        import numpy as np

        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _tinyeval_rewrite(self, modules: list[str], model_dir: str, change) -> int:
        """Rebuild the engine layers holding `modules` (HF names) from their base weights, `change(module, rows)`
        editing each named module's rows (float32, in place), and repack them; layers rewritten earlier and not
        named now go back to base."""
        if self.parallel_config.world_size > 1:
            raise ValueError("merge sync supports a single worker; use the lora sync with tensor parallelism")
        model = self.get_model()
        layers = dict(model.named_modules())
        layout = engine_layout(modules, getattr(model, "packed_modules_mapping", {}))
        base: dict[str, tuple[torch.Tensor, list[int]]] = self.__dict__.setdefault("_tinyeval_base", {})
        new = [m for m in layout if m not in base]
        if new:
            unknown = [m for m in new if m not in layers]
            if unknown:
                raise ValueError(f"the engine's model has no module {unknown[0]}")
            weights = _checkpoint_weights(Path(model_dir), {f"{sub}.weight" for m in new for sub in layout[m]})
            for m in new:  # the engine's dtype; its (emptied) weight still carries it
                parts = [weights[f"{sub}.weight"] for sub in layout[m]]
                base[m] = (torch.cat(parts).to(layers[m].weight.dtype), [p.shape[0] for p in parts])
        for m in base.keys() - layout.keys():  # rewritten before, absent now: back to base
            layout[m] = []
        named = set(modules)
        for m, subs in layout.items():
            weight, sizes = base[m]
            merged = weight.to(torch.float32, copy=True)  # base stays untouched
            for sub, rows in zip(subs, merged.split(sizes)):  # views into merged, one per stacked module
                if sub in named:
                    change(sub, rows)
            layer = layers[m]
            layer.weight = torch.nn.Parameter(merged.to(weight.dtype), requires_grad=False)
            layer.quant_method.process_weights_after_loading(layer)
        return len(layout)
