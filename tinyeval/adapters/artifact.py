"""What every saved adapter shares, whatever its method: adapter.json, the base fingerprint, integrity hashes.

An artifact is a directory: the method's own files (written by its class's `write`, e.g. `lowrank.py`'s
v.safetensors + frozen.safetensors, PEFT's adapter directory for LoRA, the whole model for "full") plus
`adapter.json` (`AdapterJson`): config, plan, module list, base fingerprint, and `files`, an xxh3-128 of every
tensor and config file beside it (`*.safetensors`, `*.json`).

Loading refuses, each with one line (`TinyevalError`):
  - a directory without a readable adapter.json, or one that does not match `AdapterJson`;
  - a file that is missing, unexpected, or whose hash differs (truncated, damaged, or edited: multiplying the
    frozen P by 3 changes the model and is caught here, before any tensor is read);
  - trained parameters holding NaN or inf (also refused at save: a diverged run must not look like a result);
  - a base model whose adapted weights differ from the ones the adapter was built on: the base fingerprint is an
    xxh3-128 over every adapted weight rounded to bf16, in module order (another model, another revision, or
    this one merged).
Only safetensors and JSON are read: nothing in an artifact is unpickled or executed.

Hashing the base is one pass over every adapted weight (on a GPU through the host: ~13 GB for Qwen2.5-7B), so
`attach` does it once (`hashing_once`): the base fingerprint and the SVD cache keys hash the same bytes when the
weights are bf16.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from torch import Tensor, nn

from tinyeval.adapters.planner import Plan, Target
from tinyeval.errors import TinyevalError

FORMAT = "tinyeval-adapter"
VERSION = 2  # 2: `files` (integrity hashes) added; v1 artifacts carry none and are refused
META_FILE = "adapter.json"
_HASHED = ("*.safetensors", "*.json")


class ConfigJson(TypedDict):
    """`AdapterConfig.to_dict()`."""

    method: str
    params: int | None
    rank: int
    tying: str
    target_modules: list[str]
    seed: int
    svd: str
    svd_cache: bool
    lora_alpha: float | None
    u: int | None
    n_tie: int | None
    extra: dict[str, Any]


# `Plan.row()`: the plan's fields but the per-group module lists (derived, so the two cannot drift apart)
PlanJson = TypedDict("PlanJson", {f.name: f.type for f in fields(Plan) if f.name != "members"})


class SvdJson(TypedDict, total=False):
    """How the frozen factors were obtained: SVD method counts, passes over the weights, seconds."""

    methods: dict[str, int]
    passes: int
    seconds: float


class AdapterJson(TypedDict):
    """adapter.json. `v_dtype` and `svd` are written by TinyLoRA / LoRA-XS only; `timings` (seconds of each
    phase of the `attach` or `load_adapter` that made the saved handle: `AdapterHandle.timings`) by every method."""

    format: Literal["tinyeval-adapter"]
    version: int
    config: ConfigJson
    plan: PlanJson
    modules: list[str]
    base_fingerprint: str
    model_type: str | None
    files: dict[str, str]  # relative path -> xxh3-128 of the file's bytes
    v_dtype: NotRequired[str]
    svd: NotRequired[SvdJson]
    timings: NotRequired[dict[str, float]]


_prints: ContextVar[dict[int, str] | None] = ContextVar("tinyeval_weight_prints", default=None)


@contextmanager
def hashing_once() -> Iterator[None]:
    """Inside: each weight tensor is hashed at most once (its identity keys the hash, so the weights must not
    change in between; `attach` holds it around fingerprinting the base and building the factors)."""
    token = _prints.set({})
    try:
        yield
    finally:
        _prints.reset(token)


def target_fingerprints(model: nn.Module, targets: list[Target], canonical: bool = False) -> list[str]:
    """Per-module weight fingerprints. `canonical` hashes the weights rounded to bf16, so the same base model
    loaded in fp32 (training on CPU) and in bf16 (evaluation) has one identity; without it the hash is of the
    exact bytes (what the SVD cache must key on)."""
    import torch

    from tinyeval.adapters.svd import fingerprint

    seen, out = _prints.get(), []
    for t in targets:
        w = model.get_submodule(t.name).weight
        data = w.to(torch.bfloat16) if canonical else w  # w itself when it is bf16 already
        if seen is not None and data is w and id(w) in seen:
            out.append(seen[id(w)])
            continue
        out.append(fingerprint(data))
        if seen is not None and data is w:
            seen[id(w)] = out[-1]
    return out


def combine(targets: list[Target], prints: list[str]) -> str:
    import xxhash

    return xxhash.xxh3_128_hexdigest("\n".join(f"{t.name}={p}" for t, p in zip(targets, prints)).encode())


def base_fingerprint(model: nn.Module, targets: list[Target]) -> str:
    """The identity of the base weights an adapter is built on (what `load_adapter` checks)."""
    return combine(targets, target_fingerprints(model, targets, canonical=True))


def file_hashes(root: Path) -> dict[str, str]:
    """xxh3-128 of each tensor and config file under `root` (but adapter.json), by relative path."""
    import xxhash

    found = {}
    for f in sorted({f for pattern in _HASHED for f in root.rglob(pattern) if f.is_file()}):
        name = f.relative_to(root).as_posix()
        if name == META_FILE:
            continue
        h = xxhash.xxh3_128()
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
        found[name] = h.hexdigest()
    return found


def check_finite(params: Iterable[Tensor], what: str) -> None:
    """Refuse trained parameters that hold NaN or inf (a diverged run, or a damaged artifact)."""
    import torch

    params = list(params)
    bad = sum(int((~torch.isfinite(p.detach())).sum()) for p in params)
    if bad:
        total = sum(p.numel() for p in params)
        raise TinyevalError(f"{what}: {bad} of {total} trained parameters are NaN or inf (the run diverged: "
                            "lower the learning rate or use an earlier checkpoint)")


def save(handle, out_dir: Path, **kwargs) -> Path:
    """Write the artifact atomically: the method's files (`handle.write`), then adapter.json with their
    hashes."""
    from tinyeval.io import atomic_dir, write_json

    check_finite(handle.trainable_parameters(), f"refusing to save the adapter to {out_dir}")
    with atomic_dir(out_dir) as tmp:
        extra = handle.write(tmp, **kwargs)
        meta = {"format": FORMAT, "version": VERSION, "config": handle.config.to_dict(), "plan": handle.plan.row(),
                "modules": [t.name for t in handle.targets], "base_fingerprint": handle.base_fingerprint,
                "model_type": getattr(getattr(handle.model, "config", None), "model_type", None),
                "files": file_hashes(tmp), **extra}
        if handle.timings:
            meta["timings"] = handle.timings
        write_json(tmp / META_FILE, meta)
    return out_dir


def read_meta(path: Path) -> AdapterJson:
    """adapter.json of the artifact in `path`, checked against `AdapterJson`."""
    from tinyeval import schema

    f = path / META_FILE
    if not f.is_file():
        raise TinyevalError(f"{path} is not a tinyeval adapter: no {META_FILE}")
    try:
        meta = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TinyevalError(f"{f}: unreadable adapter metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        found = f"{meta.get('format')} v{meta.get('version')}" if isinstance(meta, dict) else type(meta).__name__
        raise TinyevalError(f"{f}: unsupported adapter format {found} (this tinyeval reads {FORMAT} v{VERSION})")
    try:
        schema.check(meta, AdapterJson)
    except schema.SchemaError as e:
        raise TinyevalError(f"{f}: broken adapter metadata: {e}") from None
    return meta  # type: ignore[return-value]


def verify_files(path: Path, meta: AdapterJson) -> None:
    """Refuse an artifact whose files are not exactly the ones adapter.json recorded, byte for byte."""
    found, recorded = file_hashes(path), meta["files"]
    missing = sorted(set(recorded) - set(found))
    if missing:
        raise TinyevalError(f"adapter {path} is incomplete: missing {', '.join(missing)}")
    unexpected = sorted(set(found) - set(recorded))
    if unexpected:
        raise TinyevalError(f"adapter {path} holds files its adapter.json does not list: {', '.join(unexpected)}")
    changed = [name for name in recorded if found[name] != recorded[name]]
    if changed:
        raise TinyevalError(f"adapter {path}: {', '.join(changed)} does not match the hash in adapter.json "
                            "(truncated, damaged or modified after saving); refusing to load it")


def read_tensors(f: Path, keys: Iterable[str] = ()) -> dict[str, Tensor]:
    """All tensors of a safetensors file, requiring `keys`; an unreadable file is a `TinyevalError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(f))
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TinyevalError(f"{f}: unreadable tensor file ({why})") from None
    missing = [k for k in keys if k not in tensors]
    if missing:
        more = " ..." if len(missing) > 3 else ""
        raise TinyevalError(f"{f}: missing tensor(s) {', '.join(missing[:3])}{more}")
    return tensors


def check_base(model: nn.Module, targets: list[Target], meta: AdapterJson, path: Path) -> None:
    """Refuse a model whose adapted weights are not the ones the adapter was built on."""
    names = [t.name for t in targets]
    found = base_fingerprint(model, targets) if names == meta["modules"] else None
    if found != meta["base_fingerprint"]:
        raise TinyevalError(
            f"adapter {path} was built on a different base model (base fingerprint {meta['base_fingerprint'][:12]}, "
            f"model_type {meta.get('model_type')}, {len(meta['modules'])} adapted modules); this model's "
            f"{'fingerprint is ' + found[:12] if found else 'adapted modules differ'}. Load it onto the exact base "
            "weights it was trained from (unmerged)")
