"""Audit recipes: which benchmark fields are indexed, how text is normalised, and when an item is flagged.

A recipe is declarative, versioned data in `audits/<bench>.yaml` (an `include:` names a base recipe whose
keys it overrides, as lm-eval task YAMLs do). Worked example with the defaults (n = 13 words):

  item   "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."
  words  natalia sold clips to 48 of her friends in april and then she sold half as many clips in may  (20)
  index  the 8 13-grams starting at words 0..7 (an item shorter than n but at least `min_n` words is
         indexed whole, as one len-gram: GPT-3 shrank N for short tasks, to no less than 8)
  corpus "... NATALIA sold clips to 48 of her friends in April -- and then she sold half ..." matches all 8
         (case and punctuation are normalised away), so the item's matched fraction is 1.0 and its longest
         matched span is 20 words.

An item is flagged when (matched fraction >= min_fraction, or longest span >= min_span words, or one
joined field -- say the question alone -- has >= min_field_coverage of its own n-grams matched) and the
rapidfuzz alignment of the item against its best corpus window reaches min_similarity.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tinyeval.errors import TinyevalError

AUDITS_DIR = Path(__file__).resolve().parents[3] / "audits"


@dataclass(frozen=True)
class Normalisation:
    """Text normalisation applied identically to benchmark items and corpus documents."""

    nfkc: bool = True  # Unicode NFKC (fullwidth digits, ligatures, non-breaking spaces -> plain forms)
    lowercase: bool = True
    punctuation: bool = True  # ASCII and General Punctuation (U+2000-206F) characters separate words
    strip_annotations: bool = False  # GSM8K calculator annotations `<<48/2=24>>` become spaces
    numbers: bool = False  # "1,000" -> "1000" and "5.00" -> "5" before splitting words
    strip_asy: bool = False  # MATH's Asymptote code `[asy]...[/asy]`: shared drawing boilerplate, not text


@dataclass(frozen=True)
class Thresholds:
    """When an item counts as contaminated; see the module docstring."""

    min_fraction: float = 0.25  # matched n-gram fraction that flags an item
    min_span: int = 30  # longest matched run of words (in one document) that flags an item
    min_field_coverage: float = 0.8  # share of one field's own n-grams (e.g. the question alone) that flags
    min_similarity: float = 70.0  # rapidfuzz partial_ratio (0-100) of the item vs its matched window
    report: tuple[float, ...] = (0.0, 0.1, 0.2, 0.5, 0.8)  # matched-fraction cut-offs in the summary

    def __post_init__(self) -> None:
        for name in ("min_fraction", "min_field_coverage"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise TinyevalError(f"thresholds.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.min_span < 1:
            raise TinyevalError(f"thresholds.min_span must be >= 1 word, got {self.min_span}")
        if not 0.0 <= self.min_similarity <= 100.0:
            raise TinyevalError(f"thresholds.min_similarity must be in [0, 100], got {self.min_similarity}")
        if any(not 0.0 <= t <= 1.0 for t in self.report):
            raise TinyevalError(f"thresholds.report must be fractions in [0, 1], got {self.report}")


# Field extractors beyond plain keys: multiple-choice items are indexed with their gold answer text.
FIELD_GETTERS: dict[str, Callable[[dict], str]] = {
    "gold_choice": lambda row: str(row["choices"][int(row["gold"])]),
    "gold_context": lambda row: str(row["context_options"][int(row["gold"])]),
}


@dataclass(frozen=True)
class Recipe:
    """One benchmark's audit: what is indexed and how it is matched."""

    name: str
    dataset: str  # a name in tinyeval.data.DATASETS
    split: str = "test"
    fields: tuple[str, ...] = ("question", "answer")  # row keys or FIELD_GETTERS names, in item order
    join_fields: bool = True  # index the fields as one text, so n-grams across the boundary count too
    n: int = 13  # n-gram length in words
    min_n: int = 8  # items shorter than n are indexed whole down to this length; shorter ones are skipped
    normalisation: Normalisation = field(default_factory=Normalisation)
    thresholds: Thresholds = field(default_factory=Thresholds)
    version: int = 1
    id_field: str | None = None  # the row field that names an item (MATH's unique_id, test/geometry/802.json);
    # an item without it, and every item when None, is "<dataset>/<split>/<row>"
    id_source: str | None = None  # a dataset whose rows lend their id_field to rows of this one with the same
    # first field (the full MATH test takes MATH500's unique_id for its 500 problems: its files' names are
    # in no copy of it; see `lend_ids`)

    def __post_init__(self) -> None:
        if self.n < 1 or not 1 <= self.min_n <= self.n:
            raise TinyevalError(f"recipe {self.name}: need n >= 1 and 1 <= min_n <= n (got n={self.n}, "
                                f"min_n={self.min_n})")
        if not self.fields:
            raise TinyevalError(f"recipe {self.name}: `fields` is empty")

    def field_values(self, row: dict) -> list[str]:
        """The indexed fields of one benchmark row, in order."""
        parts = []
        for name in self.fields:
            getter = FIELD_GETTERS.get(name)
            try:
                value = getter(row) if getter else row[name]
            except (KeyError, IndexError, ValueError, TypeError):
                raise TinyevalError(f"recipe {self.name}: field '{name}' missing in a {self.dataset} row; "
                                    f"row keys: {', '.join(row)}") from None
            parts.append(str(value))
        return parts

    def item_texts(self, row: dict) -> list[str]:
        """The texts indexed for one benchmark row: one joined text, or one per field."""
        parts = self.field_values(row)
        return ["\n".join(parts)] if self.join_fields else parts


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise TinyevalError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise TinyevalError(f"{path}: a recipe is a mapping of keys, got {type(data).__name__}")
    base = data.pop("include", None)
    if base is None:
        return data
    merged = _read_yaml(path.parent / base)
    for key, value in data.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


def recipe_path(bench: str) -> Path:
    """A recipe name (`gsm8k`) resolves under audits/; anything ending in .yaml is a path."""
    path = Path(bench) if bench.endswith((".yaml", ".yml")) else AUDITS_DIR / f"{bench}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in AUDITS_DIR.glob("[!_]*.yaml"))
        raise TinyevalError(f"no audit recipe '{bench}' ({path}); known: {', '.join(known)}")
    return path


def _build(cls: type, values: dict, where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise TinyevalError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def load_recipe(bench: str, **overrides: Any) -> Recipe:
    """Load `audits/<bench>.yaml` (or a path); keyword overrides (e.g. n=8) replace top-level keys."""
    path = recipe_path(bench)
    data = _read_yaml(path)
    norm = _build(Normalisation, data.pop("normalisation", {}), f"{path}: normalisation")
    thr = _build(Thresholds, data.pop("thresholds", {}), f"{path}: thresholds")
    data.setdefault("name", path.stem)
    recipe = _build(Recipe, {**data, "normalisation": norm, "thresholds": thr}, str(path))
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


def lend_ids(recipe: Recipe, rows: list[dict], data_root: str | None = None) -> list[dict]:
    """`rows`, with the recipe's `id_field` filled in from `id_source` where a row lacks it and the source has a
    row with the same first field (whitespace ignored). Rows that already carry the field are kept as they are."""
    if not (recipe.id_field and recipe.id_source):
        return rows
    from tinyeval import data

    def key(row: dict) -> str:
        return " ".join(str(row.get(recipe.fields[0], "")).split())

    names = {key(r): r[recipe.id_field] for r in data.load(recipe.id_source, recipe.split, data_root).rows
             if r.get(recipe.id_field) is not None}
    return [row if row.get(recipe.id_field) is not None or key(row) not in names
            else {**row, recipe.id_field: names[key(row)]} for row in rows]


def known_recipes() -> list[str]:
    return sorted(p.stem for p in AUDITS_DIR.glob("[!_]*.yaml")) if os.path.isdir(AUDITS_DIR) else []
