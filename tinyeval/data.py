"""Data registry: every benchmark tinyeval trains or evaluates on, read offline from a data root.

Source order for each (dataset, split): the data root (`--data-root` or `TINYEVAL_DATA`, laid out like
`shared/data`), then the Hugging Face hub, converted to the data root's schema so both sources give
identical rows. Rows are plain dicts in the schema of the data-root file:

  gsm8k         question, answer (with <<expr=value>> annotations and "#### N")
  math, math500 problem, solution, level, type / subject, (math500: answer, unique_id)
  gsm1k_public  question, answer
  multiple choice (arc_*, boolq, piqa, commonsense_qa, lsat_*): query, choices, gold
  winogrande    context_options, continuation, gold
  legal_<task>  label, text, ... (TSV columns); `legal_prompt(task)` gives its base_prompt.txt

Benchmark data is never copied into this repository; it is read where it lies.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from tinyeval.errors import TinyevalError
from tinyeval.hub import hub_reachable

ENV_VAR = "TINYEVAL_DATA"
LEGAL_TASKS = ("abercrombie", "diversity_1", "diversity_2", "diversity_3", "diversity_4", "diversity_5",
               "diversity_6", "hearsay", "personal_jurisdiction", "proa")
MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")


@dataclass(frozen=True)
class HubSource:
    """Where a split lives on the hub and how a hub row becomes a data-root row."""

    repo: str
    split: str
    configs: tuple[str | None, ...] = (None,)  # several configs are concatenated in order (MATH subjects)
    convert: Callable[[dict], dict] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: dict[str, str]  # split -> path relative to the data root
    hub: dict[str, HubSource] = field(default_factory=dict)
    group: str = "math"  # math | nonmath | legal | control


@dataclass
class Loaded:
    name: str
    split: str
    rows: list[dict]
    source: str  # a file path or "hub:<repo>"

    @property
    def content_hash(self) -> str:
        return content_hash(self.rows)


# ---- hub row converters: hub schema -> data-root schema -------------------------------------------------

def _arc(row: dict) -> dict:
    labels = list(row["choices"]["label"])
    return {"query": f"Question: {row['question']}", "choices": list(row["choices"]["text"]),
            "gold": labels.index(row["answerKey"])}


def _boolq(row: dict) -> dict:
    return {"query": f"Passage: {row['passage']}\nQuestion: {row['question']}?", "choices": ["no", "yes"],
            "gold": int(bool(row["answer"]))}


def _piqa(row: dict) -> dict:
    return {"query": f"Question: {row['goal']}\n", "choices": [row["sol1"], row["sol2"]], "gold": int(row["label"])}


def _winogrande(row: dict) -> dict:
    pre, post = row["sentence"].split("_", 1)
    return {"context_options": [pre + row["option1"], pre + row["option2"]], "continuation": post.strip(),
            "gold": int(row["answer"]) - 1}


def _csqa(row: dict) -> dict:
    labels, texts = row["choices"]["label"], row["choices"]["text"]
    listing = "\n".join(f"{lab}. {txt}" for lab, txt in zip(labels, texts))
    return {"query": f"Question: {row['question']}\nChoices:\n{listing}\nAnswer:", "choices": list(labels),
            "gold": list(labels).index(row["answerKey"])}


def _agieval(row: dict) -> dict:
    gold = row["gold"]
    return {"query": row["query"], "choices": list(row["choices"]), "gold": gold[0] if isinstance(gold, list) else gold}


def _math500(row: dict) -> dict:
    return {k: row[k] for k in ("problem", "solution", "answer", "subject", "level", "unique_id")}


def _mc(name: str, file: str, repo: str, split: str, convert: Callable, config: str | None = None) -> DatasetSpec:
    return DatasetSpec(name, {"test": f"nonmath/{file}"}, {"test": HubSource(repo, split, (config,), convert)},
                       "nonmath")


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("gsm8k", {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
                    {sp: HubSource("openai/gsm8k", sp, ("main",)) for sp in ("train", "test")}),
        DatasetSpec("math", {"train": "math/train.jsonl", "test": "math/test_full.jsonl"},
                    {sp: HubSource("EleutherAI/hendrycks_math", sp, MATH_SUBJECTS) for sp in ("train", "test")}),
        DatasetSpec("math500", {"test": "math/math500.jsonl"},
                    {"test": HubSource("HuggingFaceH4/MATH-500", "test", (None,), _math500)}),
        DatasetSpec("gsm1k_public", {"test": "gsm1k/public_50.csv"}, {}, "control"),
        _mc("arc_easy", "arc_easy.jsonl", "allenai/ai2_arc", "test", _arc, "ARC-Easy"),
        _mc("arc_challenge", "arc_challenge.jsonl", "allenai/ai2_arc", "test", _arc, "ARC-Challenge"),
        _mc("boolq", "boolq.jsonl", "google/boolq", "validation", _boolq),
        _mc("piqa", "piqa.jsonl", "baber/piqa", "validation", _piqa),
        _mc("winogrande", "winogrande.jsonl", "allenai/winogrande", "validation", _winogrande, "winogrande_xl"),
        _mc("commonsense_qa", "commonsense_qa.jsonl", "tau/commonsense_qa", "validation", _csqa),
        _mc("lsat_lr", "agi_eval_lsat_lr.jsonl", "hails/agieval-lsat-lr", "test", _agieval),
        _mc("lsat_rc", "agi_eval_lsat_rc.jsonl", "hails/agieval-lsat-rc", "test", _agieval),
        _mc("lsat_ar", "agi_eval_lsat_ar.jsonl", "hails/agieval-lsat-ar", "test", _agieval),
        *[
            DatasetSpec(f"legal_{t}", {sp: f"legal/{t}/{sp}.tsv" for sp in ("train", "test")},
                        {sp: HubSource("nguha/legalbench", sp, (t,)) for sp in ("train", "test")}, "legal")
            for t in LEGAL_TASKS
        ],
    ]
}


# ---- readers -----------------------------------------------------------------------------------------

def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; a corrupt line is an error naming the file and the line number."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TinyevalError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise TinyevalError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _read_delimited(path: Path, delimiter: str) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return [dict(r) for r in csv.DictReader(f, delimiter=delimiter)]


_READERS: dict[str, Callable[[Path], list[dict]]] = {
    ".jsonl": read_jsonl,
    ".csv": lambda p: _read_delimited(p, ","),
    ".tsv": lambda p: _read_delimited(p, "\t"),
}


# ---- sources -----------------------------------------------------------------------------------------

def data_root(explicit: str | os.PathLike | None = None) -> Path | None:
    """The data root in force: the flag, else `TINYEVAL_DATA`, else none (hub only)."""
    value = explicit or os.environ.get(ENV_VAR)
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise TinyevalError(f"data root {root} does not exist (from {'--data-root' if explicit else ENV_VAR})")
    return root


def spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise TinyevalError(f"unknown dataset '{name}'; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def local_path(name: str, split: str, root: str | os.PathLike | None = None) -> Path | None:
    """The data-root file for (name, split), or None when the root lacks it."""
    s = spec(name)
    if split not in s.files:
        raise TinyevalError(f"dataset '{name}' has no split '{split}'; splits: {', '.join(s.files)}")
    base = data_root(root)
    if base is None:
        return None
    path = base / s.files[split]
    return path if path.is_file() else None


def _load_hub(src: HubSource) -> list[dict]:
    import datasets

    rows: list[dict] = []
    for config in src.configs:
        ds = datasets.load_dataset(src.repo, config, split=src.split)
        rows.extend(src.convert(dict(r)) if src.convert else dict(r) for r in ds)
    return rows


def load(name: str, split: str = "test", root: str | os.PathLike | None = None) -> Loaded:
    """Rows of one split: data root first, then the hub; a clear error naming both when neither has it."""
    path = local_path(name, split, root)
    if path is not None:
        return Loaded(name, split, _READERS[path.suffix](path), str(path))
    s = spec(name)
    base = data_root(root)
    tried = f"data root {base / s.files[split]}" if base else f"no data root (set {ENV_VAR} or --data-root)"
    src = s.hub.get(split)
    if src is None:
        raise TinyevalError(f"dataset '{name}' split '{split}': {tried}; it has no hub copy")
    if not hub_reachable():
        raise TinyevalError(f"dataset '{name}' split '{split}': {tried}; hub {src.repo} unreachable (offline)")
    return Loaded(name, split, _load_hub(src), f"hub:{src.repo}")


def check(name: str, root: str | os.PathLike | None = None) -> None:
    """Fail now, naming the file and line, when a split of `name` cannot be read: a corrupt data-root file, or
    no data-root file and no reachable hub copy. Local files are read in full; a hub copy is not fetched."""
    s = spec(name)
    for split in s.files:
        path = local_path(name, split, root)
        if path is not None:
            _READERS[path.suffix](path)
        elif split not in s.hub or not hub_reachable():
            load(name, split, root)  # raises the error that names the data-root path and the hub


def math_train(levels: tuple[int, ...] | None = None, add_test_minus_math500: bool = False,
               root: str | os.PathLike | None = None) -> Loaded:
    """MATH training problems as SimpleRL builds them: optionally plus MATH test minus MATH500, by level.

    SimpleRL-Zoo trains on levels 3-5 of train + (test - MATH500); the MATH500 items stay held out because
    they are matched out by problem text, which is what identifies an item in both files.
    """
    rows = list(load("math", "train", root).rows)
    source = "math/train"
    if add_test_minus_math500:
        held_out = {r["problem"] for r in load("math500", "test", root).rows}
        rows += [r for r in load("math", "test", root).rows if r["problem"] not in held_out]
        source += "+test-math500"
    if levels:
        wanted = {f"Level {lv}" for lv in levels}
        rows = [r for r in rows if r.get("level") in wanted]
        source += f" levels {','.join(map(str, levels))}"
    return Loaded("math", "train", rows, source)


def legal_prompt(task: str, root: str | os.PathLike | None = None) -> str:
    """LegalBench's few-shot base prompt (with a `{{text}}` slot); only the data root carries it."""
    name = task if task.startswith("legal_") else f"legal_{task}"
    spec(name)
    base = data_root(root)
    path = base / "legal" / name.removeprefix("legal_") / "base_prompt.txt" if base else None
    if path is None or not path.is_file():
        raise TinyevalError(f"legal task '{task}': base_prompt.txt not found under the data root ({base})")
    return path.read_text(encoding="utf-8")


def content_hash(rows: list[dict]) -> str:
    """A hash of the rows themselves (not the file bytes), so hub and data-root copies compare equal."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def all_splits() -> list[tuple[str, str]]:
    return [(name, split) for name, s in DATASETS.items() for split in s.files]


class SplitRow(TypedDict):
    """One row of `tinyeval data --json`."""

    dataset: str
    split: str
    rows: int
    source: str  # the data-root file, or "hub:<repo>"
    hash: str  # `content_hash` of the rows


def summary(names: list[str] | None = None, root: str | os.PathLike | None = None) -> list[SplitRow]:
    """Every split of `names` (default: all datasets) with its row count, source and content hash."""
    for name in names or []:
        spec(name)
    rows: list[SplitRow] = []
    for name, split in all_splits():
        if not names or name in names:
            loaded = load(name, split, root)
            rows.append(SplitRow(dataset=name, split=split, rows=len(loaded.rows), source=loaded.source,
                                 hash=loaded.content_hash))
    return rows
