"""Turn lm-eval's output into tinyeval's per-task summary: metric, value, stderr, n, config hash, and for
math tasks the strict / lenient decomposition.

Every math score is reported twice because the GSM8K baseline moves by 10+ points with the extractor:
  strict   - right answer in the requested format (`#### N`, `\\boxed{}`),
  lenient  - right answer wherever it is,
  format   - share of completions that used the format at all (right or wrong).
`lenient - strict` is then format compliance, not reasoning: an adapter that only teaches the format moves
strict and format, not lenient. The per-task dict is a superset of `tinyeval.report.results.TaskScore`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from tinyeval.eval.hooks import INVALID


class TaskRow(TypedDict):
    """One task in results.json (`tasks.<name>`); the math keys are present for `MATH_TASKS` only."""

    metric: str  # the primary metric (lm-eval's name), e.g. exact_match, acc, math_verify
    filter: str  # the lm-eval filter it was read under (math: the lenient one)
    value: float
    stderr: float | None  # None where lm-eval has none (it writes "N/A")
    n: int  # items scored
    config_hash: str  # `config_hash`: equal hashes saw equal prompts and scoring
    version: float | str | None  # the task YAML's metadata version
    num_fewshot: int | None
    metrics: dict[str, float]  # every "metric,filter" lm-eval reported
    correct: list[int]  # per-item 0/1 of the primary metric, in item order
    ids: list[str]  # per-item id in the audit's scheme ("gsm8k/test/17", MATH's unique_id); a twin: its original's
    strict: NotRequired[float]
    strict_correct: NotRequired[list[int]]  # per-item 0/1 strict, in item order (math tasks)
    lenient_correct: NotRequired[list[int]]  # per-item 0/1 lenient
    lenient: NotRequired[float]
    format_rate: NotRequired[float]
    right_answer_wrong_format: NotRequired[int]
    right_format_wrong_answer: NotRequired[int]
    clean: NotRequired[CleanJson]  # `tinyeval eval --clean-from`: the score without the items an audit flags


class CleanJson(TypedDict):
    """A task's score on its clean subset: the items an audit (`tinyeval audit --out DIR`) does not flag."""

    audit: str  # the audit's report.json
    dropped: int  # scored items the audit flags (left out below)
    n: int  # items kept
    value: float | None  # the primary metric over the kept items (null: none kept)
    strict: float | None
    lenient: float | None


def clean_score(row: TaskRow, flagged: set[str], audit: str) -> CleanJson:
    """`row`'s scores over the items whose id `flagged` does not hold (per-item lists, so nothing is re-run)."""
    keep = [i for i, item in enumerate(row["ids"]) if item not in flagged]

    def mean(values: list[int] | None) -> float | None:
        return sum(values[i] for i in keep) / len(keep) if values is not None and keep else None

    return CleanJson(audit=audit, dropped=len(row["ids"]) - len(keep), n=len(keep), value=mean(row["correct"]),
                     strict=mean(row.get("strict_correct")), lenient=mean(row.get("lenient_correct")))


class GroupRow(TypedDict):
    """One group in results.json (`group_scores.<name>`): the unweighted mean of its tasks' primary metric."""

    metric: str
    filter: str
    value: float
    stderr: float | None
    n: int
    tasks: list[str]  # its leaf tasks


TableRow = TypedDict("TableRow", {"task": str, "metric": str, "value": str, "±": str, "n": int, "strict": str,
                                  "lenient": str, "format": str})
TableRow.__doc__ = "One row of `tinyeval eval`'s table and of `tinyeval eval --json` (scores in percent, as text)."


@dataclass(frozen=True)
class MathScoring:
    """How a math task's two scores are named in lm-eval's output."""

    metric: str
    strict_filter: str
    lenient_filter: str


_GSM8K = MathScoring("exact_match", "strict-match", "flexible-extract")
MATH_TASKS: dict[str, MathScoring] = {
    "gsm8k": _GSM8K,
    "gsm8k_cot_8shot": _GSM8K,
    "gsm8k_parity": _GSM8K,
    "math500": MathScoring("math_verify", "strict-boxed", "lenient"),
    "arith": _GSM8K,
    "arith_twins": _GSM8K,
    "gsm8k_twins": _GSM8K,
    "gsm1k_public": _GSM8K,
}


def item_id(task: str, doc_id: int, doc: dict | None) -> str:
    """An item's id: the doc's own `item_id` (twins carry their original's) or `unique_id` (MATH), else
    "<task>/test/<row>", the audit's scheme (`tinyeval.audit.scan.index.item_ids`)."""
    doc = doc or {}
    return str(doc.get("item_id") or doc.get("unique_id") or f"{task}/test/{doc_id}")


def config_hash(task_config: dict, settings: dict) -> str:
    """A hash of everything that decides prompts and scoring: the task config lm-eval ran (functions are
    dumped as their source) plus the run-wide prompt settings (chat template, few-shot turns).

    Two runs with equal hashes saw the same prompts and were scored the same way. The YAML's absolute
    path and function addresses are machine noise, so they are left out.
    """
    cfg = {k: v for k, v in task_config.items() if k != "metadata"}
    cfg["version"] = (task_config.get("metadata") or {}).get("version")
    text = json.dumps({"task": cfg, "settings": settings}, sort_keys=True, default=str)
    text = re.sub(r" at 0x[0-9a-f]+", "", text)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _metric_keys(task_results: dict) -> list[str]:
    return [k for k in task_results if "," in k and "_stderr," not in k]


def _per_doc(samples: list[dict], filt: str, metric: str) -> dict[int, dict]:
    return {s["doc_id"]: s for s in samples if s["filter"] == filt and metric in s}


def _filtered(sample: dict):
    value = sample["filtered_resps"]
    return value[0] if isinstance(value, list) and value else value


def decompose(samples: list[dict], scoring: MathScoring) -> dict:
    """strict / lenient / format rates and the two kinds of disagreement, from lm-eval's per-sample log."""
    strict = _per_doc(samples, scoring.strict_filter, scoring.metric)
    lenient = _per_doc(samples, scoring.lenient_filter, scoring.metric)
    ids = sorted(strict)
    n = len(ids) or 1
    s_ok = {i: bool(strict[i][scoring.metric]) for i in ids}
    l_ok = {i: bool(lenient[i][scoring.metric]) for i in ids}
    formatted = {i: _filtered(strict[i]) != INVALID for i in ids}
    return {
        "strict": sum(s_ok.values()) / n,
        "lenient": sum(l_ok.values()) / n,
        "format_rate": sum(formatted.values()) / n,
        "right_answer_wrong_format": sum(l_ok[i] and not s_ok[i] for i in ids),
        "right_format_wrong_answer": sum(formatted[i] and not s_ok[i] for i in ids),
        "strict_correct": [int(s_ok[i]) for i in ids],
        "lenient_correct": [int(l_ok[i]) for i in ids],
    }


def _stderr(value) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summarize_task(name: str, out: dict, settings: dict) -> TaskRow:
    """One task's row of results.json from lm-eval's `simple_evaluate` output."""
    res = out["results"][name]
    scoring = MATH_TASKS.get(name)
    keys = _metric_keys(res)
    primary = f"{scoring.metric},{scoring.lenient_filter}" if scoring else keys[0]
    metric, filt = primary.split(",", 1)
    samples = out.get("samples", {}).get(name, [])
    docs = _per_doc(samples, filt, metric)
    row = TaskRow(metric=metric, filter=filt, value=res[primary], stderr=_stderr(res.get(f"{metric}_stderr,{filt}")),
                  n=out["n-samples"][name]["effective"], config_hash=config_hash(out["configs"][name], settings),
                  version=out["versions"].get(name), num_fewshot=out["n-shot"].get(name),
                  metrics={k: res[k] for k in keys}, correct=[int(docs[i][metric]) for i in sorted(docs)],
                  ids=[item_id(name, i, docs[i].get("doc")) for i in sorted(docs)])
    if scoring:
        row.update(decompose(samples, scoring))
    return row


def summarize_group(name: str, out: dict) -> GroupRow | None:
    """A group's aggregate (unweighted mean of its tasks' primary metric), or None when it has none."""
    res = out["results"].get(name, {})
    keys = _metric_keys(res)
    if not keys:
        return None
    metric, filt = keys[0].split(",", 1)
    return GroupRow(metric=metric, filter=filt, value=res[keys[0]], stderr=_stderr(res.get(f"{metric}_stderr,{filt}")),
                    n=sum(out["n-samples"][t]["effective"] for t in _leaves(name, out)), tasks=_leaves(name, out))


def _leaves(name: str, out: dict) -> list[str]:
    children = out.get("group_subtasks", {}).get(name)
    return [name] if children is None else [leaf for c in children for leaf in _leaves(c, out)]


def table_rows(tasks: dict[str, TaskRow | GroupRow]) -> list[TableRow]:
    """Rows for the rich table: one per task; math tasks add strict / lenient / format (percent)."""
    def pct(v: float | None) -> str:
        return "" if v is None else f"{v * 100:.1f}"

    return [TableRow(**{"task": name, "metric": t["metric"], "value": pct(t["value"]),
                        "±": "n/a" if t["stderr"] is None else pct(t["stderr"]), "n": t["n"],
                        "strict": pct(t.get("strict")), "lenient": pct(t.get("lenient")),
                        "format": pct(t.get("format_rate"))})
            for name, t in tasks.items()]
