"""What every training recipe does around the loop: route options to config dataclasses, persist them.

A recipe's options live in several dataclasses (the loop's and its objective's). `build` routes each
option to the dataclass that owns the field; `prepare_out` writes them to the run's config.json, or on
`--resume` reads them back, so a resumed run continues with exactly the settings it started with.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tinyeval.errors import TinyevalError
from tinyeval.io import write_json


def build(classes: dict[str, type], presets: dict[str, dict], preset: str | None, **overrides) -> dict[str, Any]:
    """Preset values, then non-None `overrides`, each routed to the dataclass in `classes` that owns it."""
    if preset is not None and preset not in presets:
        raise TinyevalError(f"unknown preset '{preset}'; known: {', '.join(presets)}")
    values = {**(presets[preset] if preset else {}), **{k: v for k, v in overrides.items() if v is not None}}
    owners = {f.name: key for key, cls in classes.items() for f in dataclasses.fields(cls)}
    unknown = set(values) - set(owners)
    if unknown:
        raise TinyevalError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    return {key: cls(**{k: v for k, v in values.items() if owners[k] == key}) for key, cls in classes.items()}


def _from_json(cls: type, raw: dict) -> Any:
    """Rebuild a dataclass from JSON, restoring tuples (JSON has only lists)."""
    tuples = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, tuple)}
    return cls(**{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in raw.items()})


def prepare_out(out: Path, configs: dict[str, Any], resume: bool, grow: tuple[str, str] = ("loop", "steps")) -> dict:
    """Write `configs` to out/config.json, or on `resume` return the saved ones.

    On resume only the step budget (`grow`) may change, so "train 20 more steps" works while every other
    setting stays as the run began.
    """
    path = out / "config.json"
    if resume:
        if not path.is_file():
            raise TinyevalError(f"--resume: {path} not found; start a run with --out {out} first")
        raw = json.loads(path.read_text())
        saved = {key: _from_json(type(cfg), raw[key]) for key, cfg in configs.items()}
        section, field = grow
        new = getattr(configs[section], field)
        if new and new != getattr(saved[section], field):
            setattr(saved[section], field, new)
            write_json(path, {k: dataclasses.asdict(v) for k, v in saved.items()})
        return saved
    if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
        raise TinyevalError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    write_json(path, {k: dataclasses.asdict(v) for k, v in configs.items()})
    return configs
