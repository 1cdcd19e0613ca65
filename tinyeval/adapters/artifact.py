"""Saving and loading adapters, tied to the base weights they were built on.

A TinyLoRA / LoRA-XS artifact is a directory of three files:

  v.safetensors       the trained payload and nothing else: v (groups, u) for TinyLoRA, R (modules, r, r) for
                      LoRA-XS. 13 parameters in bf16 are 26 bytes of tensor data (plus the safetensors header).
  frozen.safetensors  what ΔW also depends on: P (modules, u, r, r), the group index, and each module's frozen
                      factors A = Vᵀ, B = UΣ (fp32). They could in principle be recomputed from the base, but
                      not reliably: SVD signs, the order of near-equal singular values (σ₂ ≈ σ₃ is common),
                      randomized-SVD seeds and CPU/GPU arithmetic all change them, and a v is meaningless
                      against different factors. Shipping them makes loading exact and SVD-free.
  adapter.json        config, plan, module list, SVD provenance and the base fingerprint.

The base fingerprint is an xxh3-128 over every adapted weight's bytes (in module order). Loading onto a model
whose weights differ — another model, another revision, or this one merged — is a `TinyevalError`.
LoRA artifacts are PEFT's own directory plus adapter.json; "full" saves the whole model plus adapter.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tinyeval.adapters.config import AdapterConfig
from tinyeval.adapters.planner import Target
from tinyeval.errors import TinyevalError

FORMAT = "tinyeval-adapter"
VERSION = 1
V_FILE, FROZEN_FILE, META_FILE = "v.safetensors", "frozen.safetensors", "adapter.json"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def target_fingerprints(model: nn.Module, targets: list[Target], canonical: bool = False) -> list[str]:
    """Per-module weight fingerprints. `canonical` hashes the weights rounded to bf16, so the same base model
    loaded in fp32 (training on CPU) and in bf16 (evaluation) has one identity; without it the hash is of the
    exact bytes (what the SVD cache must key on)."""
    import torch

    from tinyeval.adapters.svd import fingerprint

    weights = (model.get_submodule(t.name).weight for t in targets)
    return [fingerprint(w.to(torch.bfloat16) if canonical else w) for w in weights]


def combine(targets: list[Target], prints: list[str]) -> str:
    import xxhash

    return xxhash.xxh3_128_hexdigest("\n".join(f"{t.name}={p}" for t, p in zip(targets, prints)).encode())


def _meta(handle, **extra) -> dict:
    return {"format": FORMAT, "version": VERSION, "config": handle.config.to_dict(), "plan": handle.plan.row(),
            "modules": [t.name for t in handle.targets], "base_fingerprint": handle.base_fingerprint,
            "model_type": getattr(getattr(handle.model, "config", None), "model_type", None), **extra}


def _save_lowrank(handle, out: Path, v_dtype: str = "float32") -> None:
    from safetensors.torch import save_file

    st = handle.state
    v = st.v.detach().to(_DTYPES[v_dtype]).cpu().contiguous()
    r = handle.config.rank
    payload = {"v": v} if handle.config.method == "tinylora" else {"R": v.view(-1, r, r).contiguous()}
    save_file(payload, str(out / V_FILE))
    frozen = {"P": st.P.cpu().contiguous(), "group": st.group.cpu().contiguous()}
    for t, f in zip(handle.targets, st.factors):
        frozen[f"{t.name}.A"] = f.A.cpu().contiguous()
        frozen[f"{t.name}.B"] = f.B.cpu().contiguous()
    save_file(frozen, str(out / FROZEN_FILE))
    (out / META_FILE).write_text(json.dumps(_meta(handle, v_dtype=v_dtype, svd=handle.svd_info), indent=2))


def _save_lora(handle, out: Path) -> None:
    handle.model.save_pretrained(out)
    (out / META_FILE).write_text(json.dumps(_meta(handle), indent=2))


def _save_full(handle, out: Path) -> None:
    handle.model.save_pretrained(out / "model")
    (out / META_FILE).write_text(json.dumps(_meta(handle), indent=2))


_SAVE: dict[str, Callable] = {"tinylora": _save_lowrank, "lora-xs": _save_lowrank, "lora": _save_lora,
                              "full": _save_full}


def save(handle, out_dir: Path, **kwargs) -> Path:
    """Write the artifact atomically (`v_dtype="bfloat16"` stores a TinyLoRA / LoRA-XS payload in bf16)."""
    from tinyeval.io import atomic_dir

    if getattr(getattr(handle, "state", None), "merged", False):
        raise TinyevalError("unmerge the adapter before saving it")
    with atomic_dir(out_dir) as tmp:
        _SAVE[handle.config.method](handle, tmp, **kwargs)
    return out_dir


def read_meta(path: Path) -> dict:
    f = path / META_FILE
    if not f.is_file():
        raise TinyevalError(f"{path} is not a tinyeval adapter: no {META_FILE}")
    meta = json.loads(f.read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise TinyevalError(f"{f}: unsupported adapter format {meta.get('format')} v{meta.get('version')}")
    return meta


def _check_base(model: nn.Module, cfg: AdapterConfig, meta: dict, path: Path):
    from tinyeval.adapters.planner import plan_model

    targets, p = plan_model(model, cfg)
    names = [t.name for t in targets]
    prints = target_fingerprints(model, targets, canonical=True) if names == meta["modules"] else []
    found = combine(targets, prints) if prints else None
    if found != meta["base_fingerprint"]:
        raise TinyevalError(
            f"adapter {path} was built on a different base model (base fingerprint {meta['base_fingerprint'][:12]}, "
            f"model_type {meta.get('model_type')}, {len(meta['modules'])} adapted modules); this model's "
            f"{'fingerprint is ' + found[:12] if found else 'adapted modules differ'}. Load it onto the exact base "
            "weights it was trained from (unmerged)")
    return targets, p, prints


def _load_lowrank(model: nn.Module, cfg: AdapterConfig, meta: dict, path: Path):
    from safetensors.torch import load_file

    from tinyeval.adapters.lowrank import Factors, LowRankHandle, LowRankState

    targets, p, prints = _check_base(model, cfg, meta, path)
    frozen, payload = load_file(str(path / FROZEN_FILE)), load_file(str(path / V_FILE))
    v = payload["v"] if "v" in payload else payload["R"].flatten(1)
    factors = [Factors(frozen[f"{t.name}.A"], frozen[f"{t.name}.B"]) for t in targets]
    device = model.get_submodule(targets[0].name).weight.device
    state = LowRankState(v.float(), frozen["P"], frozen["group"], factors).to(device)
    return LowRankHandle(model, cfg, p, targets, meta["base_fingerprint"], state, {"methods": {"artifact": 1}})


def _load_lora(model: nn.Module, cfg: AdapterConfig, meta: dict, path: Path):
    from peft import PeftModel

    from tinyeval.adapters.lora import LoraHandle

    targets, p, _ = _check_base(model, cfg, meta, path)
    return LoraHandle(PeftModel.from_pretrained(model, path, is_trainable=True), cfg, p, targets,
                      meta["base_fingerprint"])


def _load_full(model: nn.Module, cfg: AdapterConfig, meta: dict, path: Path):
    from safetensors.torch import load_file

    from tinyeval.adapters.lora import FullHandle

    targets, p, _ = _check_base(model, cfg, meta, path)
    for f in sorted((path / "model").glob("*.safetensors")):
        model.load_state_dict(load_file(str(f)), strict=False)
    model.requires_grad_(True)
    return FullHandle(model, cfg, p, targets, meta["base_fingerprint"])


_LOAD: dict[str, Callable] = {"tinylora": _load_lowrank, "lora-xs": _load_lowrank, "lora": _load_lora,
                              "full": _load_full}


def load_adapter(model: nn.Module, path: str | Path):
    """Attach a saved adapter to `model` (which must hold the exact base weights) and return its handle."""
    path = Path(path)
    meta = read_meta(path)
    cfg = AdapterConfig.from_dict(meta["config"])
    model.requires_grad_(False)
    return _LOAD[cfg.method](model, cfg, meta, path)
