"""Audit reports: report.json (results only, so two engines give identical bytes), report.md, rich table.

Run facts that differ between runs (engine, workers, seconds, throughput) go to run.json instead. Other
audit steps (model probes) add their own section with `add_section`, which rewrites both files.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from tinyeval.audit.scan.index import NgramIndex
from tinyeval.audit.scan.verdict import Merged, summary
from tinyeval.io import write_json, write_text

TOP_ITEMS_MD = 50


def build(merged: Merged, index: NgramIndex, corpus: list[str]) -> dict:
    recipe = asdict(index.recipe)
    stats = merged.stats
    return {
        "recipe": recipe,
        "corpus": {"sources": corpus, "documents": stats.docs, "bytes": stats.bytes,
                   "skipped": {k: int(v) for k, v in sorted(stats.skipped.items())},
                   "problems": sorted(stats.problems)},
        "summary": summary(merged.verdicts, index),
        "items": [asdict(v) for v in merged.verdicts],
    }


def _doc(hit: dict) -> str:
    return f"{Path(hit['source']).name}@{hit['doc']}"


def markdown(report: dict) -> str:
    s, c, r = report["summary"], report["corpus"], report["recipe"]
    lines = [f"# Contamination audit: {r['name']} ({r['dataset']}/{r['split']})", "",
             (f"Corpus: {c['documents']:,} documents, {c['bytes'] / 1e6:,.1f} MB from "
              f"{len(c['sources'])} source(s). n = {r['n']} words."), "",
             (f"**{s['contaminated']} of {s['items']} items contaminated ({s['contaminated_pct']}%)** "
              f"(matched fraction >= {r['thresholds']['min_fraction']} or span >= "
              f"{r['thresholds']['min_span']} words, confirmed at similarity >= "
              f"{r['thresholds']['min_similarity']})."), "",
             "| matched n-grams | items | % |", "|---|---:|---:|"]
    lines += [f"| {row['label']} | {row['items']} | {row['pct']} |" for row in s["by_fraction"]]
    skipped = {k: v for k, v in c["skipped"].items() if v}
    if skipped:
        lines += ["", "Skipped input: " + ", ".join(f"{k} {v}" for k, v in skipped.items())]
        lines += [f"- {p}" for p in c["problems"]]
    lines += ["", "| item | fraction | span | similarity | document | snippet |", "|---|---:|---:|---:|---|---|"]
    for v in report["items"][:TOP_ITEMS_MD]:
        hit = v["hits"][0] if v["hits"] else None
        snippet = hit["snippet"].replace("|", "\\|")[:120] if hit else ""
        flag = " **(contaminated)**" if v["contaminated"] else ""
        lines.append(f"| {v['id']}{flag} | {v['fraction']:.3f} | {v['span']} | {v['similarity']:.1f} | "
                     f"{_doc(hit) if hit else ''} | {snippet} |")
    for name, section in report.get("sections", {}).items():
        lines += ["", f"## {name}", "", "```json", json.dumps(section, indent=2, default=str), "```"]
    return "\n".join(lines) + "\n"


def write(report: dict, out: str | Path) -> None:
    out = Path(out)
    write_json(out / "report.json", report)
    write_text(out / "report.md", markdown(report))


def add_section(out: str | Path, name: str, data: dict) -> None:
    """Add a named section (e.g. model probes) to an existing report.json and report.md."""
    path = Path(out) / "report.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    report.setdefault("sections", {})[name] = data
    write(report, out)


def rows(report: dict, limit: int = 20) -> list[dict]:
    """Table rows for the terminal: the top items with their best document and snippet."""
    out = []
    for v in report["items"][:limit]:
        hit = v["hits"][0] if v["hits"] else None
        out.append({"item": v["id"], "contaminated": "yes" if v["contaminated"] else "",
                    "score": f"{v['fraction']:.3f}", "span": v["span"], "similarity": f"{v['similarity']:.0f}",
                    "document": _doc(hit) if hit else "", "snippet": (hit["snippet"][:80] if hit else "")})
    return out


def summary_rows(report: dict) -> list[dict]:
    s = report["summary"]
    rows_ = [{"threshold": r["label"], "items": r["items"], "% of items": r["pct"]} for r in s["by_fraction"]]
    rows_.append({"threshold": "contaminated (recipe rule)", "items": s["contaminated"],
                  "% of items": s["contaminated_pct"]})
    return rows_
