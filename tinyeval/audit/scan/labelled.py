"""A labelled contamination set: benchmark items injected into clean corpora with realistic edits.

Used at two sizes by the tests (a few MB) and by `benchmarks/audit_labelled.py` / `audit_scan.py` (hundreds
of MB, the background shuffled and repeated). Every injected item goes into a different background
document at a random sentence boundary, after one edit:

  verbatim        the item as published (GSM8K with its `<<expr=value>>` calculator annotations)
  no_annotations  GSM8K only: annotations removed, as most web copies show it
  numbers         numbers reformatted: 1000 -> 1,000 and $5 -> $5.00
  format          whitespace, punctuation and case changed (double spaces, no commas, upper/lower case)
  question_only   the question (problem) alone
  answer_only     the answer (solution) alone
  half            the first half of the item's words
  reorder         light edit: the question's sentences in another order, the answer unchanged

Negatives: GSM1k items (fresh GSM8K-style problems) and near-topic math prose (MATH *train* problems with
their solutions), injected the same way. They are not perfectly clean: MATH train shares boilerplate and
whole solution passages with MATH500, and GSM8K test holds near-duplicate pairs. So `score` checks every
flagged item that was not injected with an independent exact test (difflib's longest common run of
words against every injected text) and reports those with a real shared passage as `verified_overlaps`,
not as false positives.
"""

from __future__ import annotations

import difflib
import json
import random
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict

from tinyeval import data
from tinyeval.audit.scan.config import load_recipe
from tinyeval.audit.scan.index import item_ids
from tinyeval.errors import TinyevalError
from tinyeval.io import atomic_path, write_json
from tinyeval.schema import typed_dict

GROUPS = {"verbatim": "verbatim+reformatted", "no_annotations": "verbatim+reformatted",
          "numbers": "verbatim+reformatted", "format": "verbatim+reformatted", "question_only": "partial",
          "answer_only": "partial", "half": "partial", "reorder": "light_edit"}
TARGETS = {"verbatim+reformatted": 0.95, "partial": 0.8, "precision": 0.99}  # the recall/precision bars
BENCH_FIELDS = {"gsm8k": ("question", "answer"), "math500": ("problem", "solution")}
_ANNOTATION = re.compile(r"<<[^<>]*>>")
_SENTENCE = re.compile(r"(?<=[.?!])\s+")


def _numbers(text: str, rng: random.Random) -> str:
    text = re.sub(r"(?<![\d.,])(\d{4,})(?![\d.,]*\d)", lambda m: f"{int(m.group(1)):,}", text)
    return re.sub(r"\$(\d+)(?![\d.,]*\d)", r"$\1.00", text)


def _format(text: str, rng: random.Random) -> str:
    text = text.replace(",", "").replace("\n", " \n ").replace(" ", "  ")
    return text.upper() if rng.random() < 0.5 else text.lower()


def _reorder(q: str, a: str, rng: random.Random) -> str:
    parts = _SENTENCE.split(q.strip())
    if len(parts) > 1:
        order = list(range(len(parts)))
        while order == sorted(order):
            rng.shuffle(order)
        parts = [parts[i] for i in order]
    return " ".join(parts) + "\n" + a


# kind -> (question, answer, rng) -> injected text
EDITS: dict[str, Callable[[str, str, random.Random], str]] = {
    "verbatim": lambda q, a, rng: q + "\n" + a,
    "no_annotations": lambda q, a, rng: q + "\n" + _ANNOTATION.sub("", a),
    "numbers": lambda q, a, rng: _numbers(q + "\n" + a, rng),
    "format": lambda q, a, rng: _format(q + "\n" + a, rng),
    "question_only": lambda q, a, rng: q,
    "answer_only": lambda q, a, rng: a,
    "half": lambda q, a, rng: " ".join((q + "\n" + a).split()[: len((q + " " + a).split()) // 2]),
    "reorder": _reorder,
}


@dataclass(frozen=True)
class LabelledSpec:
    """Size and make-up of a labelled set."""

    per_kind: int = 10  # items injected per edit kind and benchmark
    benchmarks: tuple[str, ...] = ("gsm8k", "math500")
    negatives_prose: int = 50  # MATH train problems injected as near-topic negatives (plus all 50 GSM1k)
    background: tuple[str, ...] = ("corpora/wikitext2_valid.txt", "corpora/dolma_cc_en_head-0091.jsonl",
                                   "corpora/dolma_cc_en_head-0174.jsonl", "corpora/stacks/chow.tex")
    target_bytes: int | None = None  # repeat the shuffled background until the corpus is this large
    shard_bytes: int = 32 << 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.per_kind < 1:
            raise TinyevalError(f"per_kind must be >= 1, got {self.per_kind}")


@dataclass
class Labels:
    injected: dict[str, dict[str, str]] = field(default_factory=dict)  # bench -> item id -> edit kind
    negatives: int = 0
    shards: list[str] = field(default_factory=list)
    bytes: int = 0
    texts: list[str] = field(default_factory=list)  # every injected text, positives and negatives
    hosts: dict[str, tuple[str, int]] = field(default_factory=dict)  # injection key -> (shard, byte offset)


class LabelsJSON(TypedDict):
    """labels.json: what `build` injected where."""

    injected: dict[str, dict[str, str]]  # bench -> item id -> edit kind
    negatives: int
    shards: list[str]
    bytes: int
    spec: typed_dict(LabelledSpec)  # type: ignore[valid-type]
    hosts: dict[str, list[str | int]]  # injection key -> [shard, byte offset of its document's line]
    texts: list[str]


def _background(spec: LabelledSpec, root: Path) -> list[str]:
    """Clean documents: JSONL texts, and blank-line paragraphs of text/LaTeX files."""
    docs: list[str] = []
    for rel in spec.background:
        path = root / rel
        if path.suffix == ".jsonl":
            docs += [json.loads(x)["text"] for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        else:
            docs += [p for p in re.split(r"\n[ \t]*\n", path.read_text(encoding="utf-8")) if len(p.strip()) > 40]
    return docs


def _injections(spec: LabelledSpec, rng: random.Random, labels: Labels) -> list[tuple[str, str]]:
    """(key, text) of every injection: item ids for benchmark items, `negative/<i>` for negatives."""
    out: list[tuple[str, str]] = []
    for bench in spec.benchmarks:
        q_key, a_key = BENCH_FIELDS[bench]
        rows = data.load(bench, "test").rows
        kinds = [k for k in EDITS if bench == "gsm8k" or k != "no_annotations"]
        order = rng.sample(range(len(rows)), min(len(rows), spec.per_kind * len(kinds)))
        labels.injected[bench] = {}
        ids = item_ids(rows, load_recipe(bench))
        for j, i in enumerate(order):
            kind = kinds[j % len(kinds)]
            out.append((ids[i], EDITS[kind](rows[i][q_key], rows[i][a_key], rng)))
            labels.injected[bench][ids[i]] = kind
    negatives = [r["question"] + "\nAnswer: " + r["answer"] for r in data.load("gsm1k_public", "test").rows]
    math_train = data.load("math", "train").rows
    negatives += [r["problem"] + "\n" + r["solution"] for r in rng.sample(math_train, spec.negatives_prose)]
    labels.negatives = len(negatives)
    out += [(f"negative/{i}", t) for i, t in enumerate(negatives)]
    labels.texts = [t for _, t in out]
    return out


def _insert(doc: str, text: str, rng: random.Random) -> str:
    cuts = [m.end() for m in _SENTENCE.finditer(doc)]
    at = rng.choice(cuts) if cuts else len(doc)
    return doc[:at] + "\n" + text + "\n" + doc[at:]


def _documents(spec: LabelledSpec, background: list[str], inject: list[tuple[str, str]],
               rng: random.Random) -> Iterator[tuple[str, str | None]]:
    """(document, injection key or None), the background shuffled and repeated to the target size."""
    size = sum(len(d) for d in background)
    rounds = max(1, -(-(spec.target_bytes or 0) // size))
    total = rounds * len(background)
    if len(inject) > total:
        raise TinyevalError(f"labelled set: {len(inject)} injections but only {total} background documents")
    slots = dict(zip(rng.sample(range(total), len(inject)), inject))
    k = 0
    for _ in range(rounds):
        for doc in rng.sample(background, len(background)):
            key, text = slots.get(k, (None, ""))
            yield (_insert(doc, text, rng) if key else doc), key
            k += 1


def build(out: str | Path, spec: LabelledSpec = LabelledSpec(), root: str | Path | None = None) -> Labels:
    """Write the corpus shards (`corpus-NNN.jsonl`) and labels.json into `out`; return the labels."""
    base = data.data_root(root)
    if base is None:
        raise TinyevalError("the labelled set needs the data root (set TINYEVAL_DATA or pass root)")
    rng = random.Random(spec.seed)
    out = Path(out)
    labels = Labels()
    docs = _documents(spec, _background(spec, base), _injections(spec, rng, labels), rng)
    pending = next(docs, None)
    while pending is not None:
        path = out / f"corpus-{len(labels.shards):03d}.jsonl"
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            size = 0
            while pending is not None and size < spec.shard_bytes:
                line = (json.dumps({"text": pending[0]}, ensure_ascii=False) + "\n").encode("utf-8")
                if pending[1]:
                    labels.hosts[pending[1]] = (str(path), size)
                f.write(line)
                size += len(line)
                pending = next(docs, None)
        labels.shards.append(str(path))
        labels.bytes += size
    written: LabelsJSON = {"injected": labels.injected, "negatives": labels.negatives, "shards": labels.shards,
                           "bytes": labels.bytes, "spec": asdict(spec), "hosts": labels.hosts, "texts": labels.texts}
    write_json(out / "labels.json", written)
    return labels


def load(out: str | Path) -> Labels:
    """Labels of a set built earlier by `build` (benchmarks reuse their corpus between runs)."""
    raw = json.loads((Path(out) / "labels.json").read_text(encoding="utf-8"))
    return Labels(raw["injected"], raw["negatives"], raw["shards"], raw["bytes"], raw["texts"],
                  {k: tuple(v) for k, v in raw["hosts"].items()})


def _plain_words(text: str) -> list[str]:
    """A deliberately simple tokenizer (not the scanner's): NFKC, lowercase, runs of letters and digits."""
    return re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", _ANNOTATION.sub(" ", text)).lower())


def shared_run(item: str, texts: list[str]) -> int:
    """Longest run of consecutive words the item shares with any of `texts` (difflib, exact)."""
    a = _plain_words(item)
    best = 0
    for text in texts:
        b = _plain_words(text)
        m = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
        best = max(best, m.size)
    return best


def score(flagged: set[str], injected: dict[str, str], overlap: dict[str, int] | None = None,
          min_words: int = 25) -> dict:
    """Recall per edit kind and group, and precision, of one benchmark's flagged item ids.

    `overlap` maps a flagged, non-injected item to its longest shared run with the injected texts
    (`shared_run`); those with >= `min_words` hold a real copied passage and are counted as verified
    overlaps, not false positives.
    """
    out: dict = {"recall": {}, "groups": {}}
    for kind in EDITS:
        ids = [i for i, k in injected.items() if k == kind]
        if ids:
            out["recall"][kind] = round(sum(i in flagged for i in ids) / len(ids), 4)
    for group in dict.fromkeys(GROUPS.values()):
        ids = [i for i, k in injected.items() if GROUPS[k] == group]
        if ids:
            out["groups"][group] = round(sum(i in flagged for i in ids) / len(ids), 4)
    extra = flagged - set(injected)
    verified = {i for i in extra if (overlap or {}).get(i, 0) >= min_words}
    true_pos = len(flagged & set(injected)) + len(verified)
    out["precision"] = round(true_pos / len(flagged), 4) if flagged else 1.0
    out["flagged"], out["injected"] = len(flagged), len(injected)
    out["verified_overlaps"] = sorted(verified)
    out["false_positives"] = sorted(extra - verified)
    return out


def evaluate(report: dict, labels: Labels, bench: str) -> dict:
    """Score one audit report against the labels, verifying flagged items that were not injected."""
    flagged = {v["id"] for v in report["items"] if v["contaminated"]}
    q_key, a_key = BENCH_FIELDS[bench]
    rows = data.load(bench, "test").rows
    row_of = dict(zip(item_ids(rows, load_recipe(bench)), rows))
    overlap = {i: shared_run(row_of[i][q_key] + "\n" + row_of[i][a_key], labels.texts)
               for i in flagged - set(labels.injected[bench])}
    return score(flagged, labels.injected[bench], overlap, report["recipe"]["thresholds"]["min_span"])
