"""Labelled contamination set: tinyeval audit's recall and precision vs lm-eval's Janitor (GPT-3 13-gram rule).

    .venv/bin/python benchmarks/audit_labelled.py          # builds benchmarks/work/audit_labelled once

GSM8K and MATH500 items injected into the shared clean corpora with realistic edits (tinyeval.audit.scan.labelled:
verbatim, annotations removed, numbers reformatted, whitespace/punctuation/case, question only, answer
only, half, sentence order) beside negatives (GSM1k items, MATH train problems). tinyeval reports items at its
default recipe settings; the Janitor (Python mode, n = 13, its own normalisation) flags documents, and an
injected item counts as found when the document holding it is flagged. Janitor precision is per document:
flagged documents that hold an injection of that benchmark. tinyeval precision is per item, with flagged but
not injected items checked by an independent exact test (difflib) and listed as verified overlaps.
Without lm-eval's Janitor (an anchor, benchmarks/anchors.py) tinyeval's figures are written alone, the
Janitor's skip line under `skipped`.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from anchors import Anchors
from audit_scan import REPO, clock, run_janitor

from tinyeval import data
from tinyeval.audit.scan import labelled
from tinyeval.audit.scan.run import AuditOptions, run_audit
from tinyeval.io import write_json

WORK = REPO / "benchmarks" / "work" / "audit_labelled"


def docs_of(labels: labelled.Labels) -> list[tuple[tuple[str, int], str]]:
    out = []
    for shard in labels.shards:
        with open(shard, "rb") as f:
            pos = 0
            for line in f:
                out.append(((shard, pos), json.loads(line)["text"]))
                pos += len(line)
    return out


def janitor_scores(bench: str, labels: labelled.Labels, docs: list, anchors: Anchors) -> dict:
    q_key, a_key = labelled.BENCH_FIELDS[bench]
    items = [r[q_key] + "\n" + r[a_key] for r in data.load(bench, "test").rows]
    measured = anchors.measure("lm-eval Janitor", lambda: run_janitor(items, docs))
    if measured is None:
        return {"skipped": anchors.skipped["lm-eval Janitor"]}
    flagged, wall, _ = measured
    injected = labels.injected[bench]
    hosts = {tuple(labels.hosts[i]): i for i in injected}
    found = {hosts[h] for h in flagged if h in hosts}
    out = labelled.score(found, injected)
    out["precision"] = round(len(found) / max(len(flagged), 1), 4)  # per document
    out["flagged_documents"], out["false_positives"] = len(flagged), len(flagged) - len(found)
    out["seconds"] = round(wall, 1)
    return out


def main() -> None:
    root = Path(os.environ["TINYEVAL_DATA"])
    background = tuple(sorted(str(p.relative_to(root)) for p in (root / "corpora").rglob("*")
                              if p.suffix in (".txt", ".jsonl", ".tex")))
    spec = labelled.LabelledSpec(per_kind=60, negatives_prose=1000, background=background, target_bytes=12 << 20,
                                 seed=11)
    try:
        labels = labelled.load(WORK)
        assert json.loads((WORK / "labels.json").read_text())["spec"] == json.loads(json.dumps(spec.__dict__))
    except (OSError, KeyError, ValueError, AssertionError):
        labels = labelled.build(WORK, spec)
    docs = docs_of(labels)
    anchors = Anchors()
    report: dict = {"corpus_mb": round(labels.bytes / 1e6, 1), "negatives": labels.negatives}
    for bench in ("gsm8k", "math500"):
        opts = AuditOptions(bench, tuple(labels.shards), str(WORK / f"out-{bench}"), workers=1)
        outcome, wall, _ = clock(lambda opts=opts: run_audit(opts))
        tiny = labelled.evaluate(outcome.report, labels, bench)
        tiny["seconds"] = round(wall, 1)
        report[bench] = {"tinyeval": tiny, "janitor": janitor_scores(bench, labels, docs, anchors)}
        print(bench, json.dumps(report[bench]), flush=True)

    def partial(tool: str) -> float | None:
        if any("skipped" in report[b][tool] for b in ("gsm8k", "math500")):
            return None
        return round(min(report[b][tool]["groups"]["partial"] for b in ("gsm8k", "math500")), 4)

    tiny, jan = partial("tinyeval"), partial("janitor")

    write_json(REPO / "benchmarks" / "results" / "audit_labelled.json", {
        "name": "audit_labelled", "metric": "recall on partial injections (worse of GSM8K, MATH500)",
        "unit": "fraction", "tinyeval": tiny, "anchor_name": "lm-eval Janitor (GPT-3 13-gram rule)",
        "anchor": jan, "ratio": round(tiny / max(jan, 1e-9), 3) if jan is not None else None, **anchors.fields(),
        "target": "recall >= 0.95 verbatim+reformatted, >= 0.8 partial; precision >= 0.99 (default settings)",
        "command": "python benchmarks/audit_labelled.py",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "details": report})


if __name__ == "__main__":
    main()
