"""The clean subset of a benchmark: its items minus those an audit flags as contaminated.

`tinyeval audit BENCH --out DIR` writes DIR/report.json (`scan.report.ReportJSON`): the recipe (whose `name` is the
benchmark, `gsm8k`, `math500`, ...) and every item with a matched n-gram, each with its id (the scheme of
`scan.index.item_ids`: "gsm8k/test/17", MATH's unique_id) and whether the recipe's rule flags it. Evaluation records
the same ids per item (`tinyeval.eval.results.item_id`; a twin carries its original's), so a score restricted to
the unflagged ids is the score on the clean subset, item for item.
"""

from __future__ import annotations

import json
from pathlib import Path

from tinyeval.errors import TinyevalError


def report_paths(audit: str | Path) -> list[Path]:
    """The audit reports `--clean-from` names: a report.json, an audit directory (holding one), or a directory of
    audit directories (one audit per benchmark or corpus: every report.json one level down)."""
    path = Path(audit)
    if path.is_file():
        return [path]
    if (path / "report.json").is_file():
        return [path / "report.json"]
    found = sorted(p for p in path.glob("*/report.json") if p.is_file()) if path.is_dir() else []
    if not found:
        raise TinyevalError(f"--clean-from {audit}: no audit report.json there or one directory down (run `tinyeval "
                            f"audit BENCH --out {audit}` first)")
    return found


def flagged_items(audit_dir: str | Path) -> dict[str, set[str]]:
    """benchmark name -> ids of the items the audits at `audit_dir` flag (`report_paths`; two audits of one
    benchmark, e.g. against two corpora, flag the union). An audit of the full MATH test names MATH500's items by
    their unique_id (its recipe's `id_source`), so its flags count for math500 too."""
    flagged: dict[str, set[str]] = {}
    for path in report_paths(audit_dir):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            recipe = report["recipe"]
            ids = {str(item["id"]) for item in report["items"] if item["contaminated"] is True}
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise TinyevalError(f"--clean-from {path}: not a tinyeval audit report ({type(e).__name__}: {e})") from None
        for name in (recipe["name"], recipe.get("id_source")):
            if name:
                flagged.setdefault(name, set()).update(ids)
    return flagged


def flags_for(flagged: dict, task: str, twins: dict[str, str]) -> set[str] | None:
    """The ids `flagged` (benchmark -> ids) holds for `task`, or for its original when `task` is a twin task
    (`twins`: task -> original); None when the audits cover neither."""
    ids = flagged.get(task, flagged.get(twins.get(task, ""), None))
    return None if ids is None else set(ids)


def covered(flagged: dict[str, set[str]], tasks: list[str], twins: dict[str, str], audit_dir: str | Path) -> None:
    """Refuse, before anything runs, a `--clean-from` whose audits cover none of `tasks` (`flags_for`): its clean
    column would be silently empty."""
    if all(flags_for(flagged, t, twins) is None for t in tasks):
        raise TinyevalError(f"--clean-from {audit_dir}: its audits cover {', '.join(sorted(flagged)) or 'nothing'}, "
                            f"none of the tasks {', '.join(tasks)}")
