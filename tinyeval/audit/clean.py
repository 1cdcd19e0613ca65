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


def flagged_items(audit_dir: str | Path) -> dict[str, set[str]]:
    """benchmark name -> ids of the items the audit in `audit_dir` flags (a report.json or its directory)."""
    path = Path(audit_dir)
    path = path / "report.json" if path.is_dir() else path
    if not path.is_file():
        raise TinyevalError(f"--clean-from {audit_dir}: no audit report.json there (run `tinyeval audit BENCH --out "
                            f"{audit_dir}` first)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        name = report["recipe"]["name"]
        flagged = {str(item["id"]) for item in report["items"] if item["contaminated"] is True}
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise TinyevalError(f"--clean-from {path}: not a tinyeval audit report ({type(e).__name__}: {e})") from None
    return {name: flagged}
