"""Audit reports: report.json (results only, so two engines give identical bytes), report.md, terminal rows.

report.md is rendered here, from report.json's data, and nowhere else: its sections (model probes, or any
added with `add_section`) are rendered by `SECTION_MARKDOWN` (a JSON block for a section it does not know).
Run facts that differ between runs (engine, workers, seconds, throughput) go to run.json instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from tinyeval.audit.scan import gate
from tinyeval.audit.scan.config import Recipe
from tinyeval.audit.scan.index import NgramIndex
from tinyeval.audit.scan.verdict import ItemJSON, Merged, SummaryJSON, summary
from tinyeval.io import dumps_json, write_json, write_text
from tinyeval.schema import typed_dict

TOP_ITEMS_MD = 50


class SkippedFile(TypedDict):
    """A source of which something was skipped (the whole file, or some lines or rows), and why."""

    source: str
    skipped_bytes: int
    skipped: dict[str, int]  # kind -> count


class CorpusJSON(TypedDict):
    """What was read: sources as given, documents and UTF-8 bytes scanned, and what was skipped."""

    sources: list[str]
    sample: bool  # True: no --corpus was given and the data root's sample corpora were scanned
    documents: int
    bytes: int
    skipped: dict[str, int]  # kind (readers.types.SKIP_KINDS) -> count
    skipped_bytes: int  # input bytes not scanned (see scan.gate)
    skipped_pct: float  # of scanned + skipped bytes
    skipped_files: list[SkippedFile]
    problems: list[str]  # "source: what happened" for damaged or unreadable sources


class ReportJSON(TypedDict):
    """report.json."""

    recipe: typed_dict(Recipe)  # type: ignore[valid-type]
    corpus: CorpusJSON
    summary: SummaryJSON
    items: list[ItemJSON]  # type: ignore[valid-type]  # items with any matched n-gram, most contaminated first
    sections: NotRequired[dict[str, Any]]  # e.g. "probes": probes.run.ProbesReport


def build(merged: Merged, index: NgramIndex, corpus: list[str], max_skipped: float = gate.MAX_SKIPPED_PCT,
          sample: bool = False) -> ReportJSON:
    stats = merged.stats
    files: list[SkippedFile] = [{"source": src, "skipped_bytes": st.skipped_bytes,
                                 "skipped": {k: int(v) for k, v in sorted(st.skipped.items())}}
                                for src, st in sorted(merged.skipped.items())]
    return {
        "recipe": asdict(index.recipe),
        "corpus": {"sources": corpus, "sample": sample, "documents": stats.docs, "bytes": stats.bytes,
                   "skipped": {k: int(v) for k, v in sorted(stats.skipped.items())},
                   "skipped_bytes": stats.skipped_bytes, "skipped_pct": gate.skipped_pct(stats),
                   "skipped_files": files, "problems": sorted(stats.problems)},
        "summary": summary(merged.verdicts, index, gate.incomplete(stats, merged.skipped, max_skipped)),
        "items": [asdict(v) for v in merged.verdicts],
    }


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v)


def _doc(hit: dict) -> str:
    """"c4-0001.jsonl@48213 (doc-42)": the source, the document's offset (or row) and its own id, if any."""
    named = f" ({hit['doc_id']})" if hit.get("doc_id") is not None else ""
    return f"{Path(hit['source']).name}@{hit['doc']}{named}"


def probes_markdown(section: dict) -> str:
    """The model probes' section: the verdict table plus what was run."""
    cfg = section["config"]
    lines = [f"## Leakage probes: {cfg['benchmark']} on {cfg['model']}"
             + (f" + {cfg['adapter']}" if cfg.get("adapter") else ""), "",
             "| probe | signal | value | 95% CI | n | suggests |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['probe']} | {r['signal']} | {r['value']} | {r['ci95']} | {r['n']} | {r['suggests']} |"
              for r in section["rows"]]
    if section.get("coverage"):
        c = section["coverage"]
        lines += ["", f"Perturbation coverage: {c['perturbed']}/{c['total']} ({c['coverage']:.1%}) verified twins."]
    lines += ["", f"Backend: {section['backend']}; {section['seconds']} s."]
    return "\n".join(lines) + "\n"


def _json_section(name: str, section: Any) -> str:
    return "\n".join([f"## {name}", "", "```json", dumps_json(section), "```"]) + "\n"


SECTION_MARKDOWN: dict[str, Callable[[dict], str]] = {"probes": probes_markdown}


SAMPLE_NOTE = ("a sample: the data root's small clean corpora, not your training data; point the audit at "
               "yours with --corpus (local files, folders or globs: {suffixes}; hub datasets: "
               "hf://dataset[:config[:split]]; repeatable)")


def sample_note() -> str:
    from tinyeval.audit.scan.readers import registry

    return SAMPLE_NOTE.format(suffixes=" ".join(registry.suffixes()))


def markdown(report: ReportJSON) -> str:
    s, c, r = report["summary"], report["corpus"], report["recipe"]
    lines = [f"# Contamination audit: {r['name']} ({r['dataset']}/{r['split']})", ""]
    if c["sample"]:
        lines += [f"> **Sample corpus.** This is {sample_note()}.", ""]
    lines += [f"> **Verdict incomplete:** {why}." for why in s["incomplete"]] + ([""] if s["incomplete"] else [])
    lines += [(f"Corpus: {c['documents']:,} documents, {c['bytes'] / 1e6:,.1f} MB from "
               f"{len(c['sources'])} source(s). n = {r['n']} words."), "",
              (f"**{s['contaminated']} of {s['items']} items contaminated ({s['contaminated_pct']}%)** "
               f"(matched fraction >= {r['thresholds']['min_fraction']} or span >= "
               f"{r['thresholds']['min_span']} words, confirmed at similarity >= "
               f"{r['thresholds']['min_similarity']})."), "",
              "| matched n-grams | items | % |", "|---|---:|---:|"]
    lines += [f"| {row['label']} | {row['items']} | {row['pct']} |" for row in s["by_fraction"]]
    if c["skipped_files"]:
        lines += ["", f"Skipped input: {c['skipped_bytes']:,} bytes ({c['skipped_pct']}%), "
                  + ", ".join(f"{k} {v}" for k, v in c["skipped"].items() if v), "",
                  "| source | skipped bytes | what |", "|---|---:|---|"]
        lines += [f"| {f['source']} | {f['skipped_bytes']:,} | {_kinds(f['skipped'])} |" for f in c["skipped_files"]]
        lines += [f"- {p}" for p in c["problems"]]
    lines += ["", "| item | fraction | span | similarity | document | snippet |", "|---|---:|---:|---:|---|---|"]
    for v in report["items"][:TOP_ITEMS_MD]:
        hit = v["hits"][0] if v["hits"] else None
        snippet = hit["snippet"].replace("|", "\\|")[:120] if hit else ""
        flag = " **(contaminated)**" if v["contaminated"] else ""
        lines.append(f"| {v['id']}{flag} | {v['fraction']:.3f} | {v['span']} | {v['similarity']:.1f} | "
                     f"{_doc(hit) if hit else ''} | {snippet} |")
    text = "\n".join(lines) + "\n"
    for name, section in report.get("sections", {}).items():
        render = SECTION_MARKDOWN.get(name)
        text += "\n" + (render(section) if render else _json_section(name, section))
    return text


def write(report: ReportJSON, out: str | Path) -> None:
    out = Path(out)
    write_json(out / "report.json", report)
    write_text(out / "report.md", markdown(report))


def add_section(out: str | Path, name: str, data: dict) -> None:
    """Add a named section to an existing report.json and render report.md again from it."""
    path = Path(out) / "report.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    report.setdefault("sections", {})[name] = data
    write(report, out)


def rows(report: ReportJSON, limit: int = 20) -> list[dict]:
    """Table rows for the terminal: the top items with their best document and snippet."""
    out = []
    for v in report["items"][:limit]:
        hit = v["hits"][0] if v["hits"] else None
        out.append({"item": v["id"], "contaminated": "yes" if v["contaminated"] else "",
                    "score": f"{v['fraction']:.3f}", "span": v["span"], "similarity": f"{v['similarity']:.0f}",
                    "document": _doc(hit) if hit else "", "snippet": (hit["snippet"][:80] if hit else "")})
    return out


def summary_rows(report: ReportJSON) -> list[dict]:
    s = report["summary"]
    rows_ = [{"threshold": r["label"], "items": r["items"], "% of items": r["pct"]} for r in s["by_fraction"]]
    rows_.append({"threshold": "contaminated (recipe rule)", "items": s["contaminated"],
                  "% of items": s["contaminated_pct"]})
    return rows_


def corpus_line(report: ReportJSON, run: dict) -> str:
    """One line for the terminal: what was read, how fast, how much was skipped."""
    c = report["corpus"]
    shown = f"{c['bytes'] / 1e6:,.1f} MB" if c["bytes"] >= 1e5 else f"{c['bytes'] / 1e3:,.1f} kB"
    skipped = f"; skipped {c['skipped_bytes']:,} bytes ({c['skipped_pct']}%)" if c["skipped_files"] else ""
    return f"{c['documents']:,} documents, {shown}, {run['mb_per_s']:,.1f} MB/s ({run['engine']}){skipped}"


def skipped_lines(report: ReportJSON, limit: int = 20) -> list[str]:
    """One line per source with something skipped (for stderr), the rest summed up."""
    files = report["corpus"]["skipped_files"]
    out = [f"skipped: {f['source']}: {_kinds(f['skipped'])} ({f['skipped_bytes']:,} bytes)" for f in files[:limit]]
    if len(files) > limit:
        out.append(f"skipped: ... and {len(files) - limit} more sources (report.json: corpus.skipped_files)")
    return out
