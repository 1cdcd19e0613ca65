"""When an audit's verdict does not stand, and when `tinyeval audit` fails (exit 1).

"0 items contaminated" says something only about what was read. The verdict is *incomplete* -- reported
in report.json's summary, on the terminal, and failing the command whatever `--fail-above` says -- when

  * no document was scanned (every line lacked the text field, the files were binary, ...);
  * more than `max_skipped` percent of the input bytes were skipped: lines or rows that could not be read
    (malformed JSON, invalid UTF-8, no text), files no reader takes, unreadable or damaged files (their size
    on disk, or the unread rest of a damaged compressed file);
  * a source of unknown size (a hub dataset) could not be read at all.

`--fail-above PCT` also fails when more than PCT% of the benchmark's items are contaminated.
"""

from __future__ import annotations

from tinyeval.audit.scan.readers import registry
from tinyeval.audit.scan.readers.types import Stats

MAX_SKIPPED_PCT = 1.0  # default --max-skipped


def skipped_pct(stats: Stats) -> float:
    """Skipped input bytes as a percentage of what was scanned plus what was skipped."""
    total = stats.bytes + stats.skipped_bytes
    return round(100.0 * stats.skipped_bytes / total, 3) if total else 0.0


def incomplete(stats: Stats, skipped: dict[str, Stats], max_skipped: float = MAX_SKIPPED_PCT) -> list[str]:
    """Why the verdict does not cover the corpus asked for (one clear line each); empty when it does."""
    reasons = []
    if stats.docs == 0:
        reasons.append("no documents were scanned (no line or row held a string text field): nothing was "
                       "read that could be called clean")
    pct = skipped_pct(stats)
    if stats.docs and pct > max_skipped:
        reasons.append(f"{pct:g}% of the input bytes were skipped ({stats.skipped_bytes:,} bytes), more than "
                       f"--max-skipped {max_skipped:g}%")
    unsized = sorted(s for s, st in skipped.items() if registry.scheme_of(s) and st.skipped["unreadable_files"])
    if unsized:
        reasons.append(f"could not read {', '.join(unsized)} (size unknown)")
    return reasons


def failures(report: dict, fail_above: float | None) -> list[str]:
    """Every reason for `tinyeval audit` to exit 1."""
    out = [f"verdict incomplete: {r}" for r in report["summary"]["incomplete"]]
    pct = report["summary"]["contaminated_pct"]
    if fail_above is not None and pct > fail_above:
        out.append(f"{pct}% of items contaminated > --fail-above {fail_above:g}%")
    return out
