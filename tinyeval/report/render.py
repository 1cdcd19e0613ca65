"""Views of a `Results`: one row model, rendered as a rich table, as Markdown, and checked by a CI gate.

All views share `rows()`, so the terminal table, report.md and `--json` can never disagree. A cell's score is the
mean over the seeds of its chosen learning rate (`stats.mean_score`), shown beside the 95% interval across seeds
and the paired per-item interval of its difference to the base model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from rich.table import Table

from tinyeval.errors import TinyevalError
from tinyeval.report.results import Cell, Results, TaskScore
from tinyeval.report.stats import delta, mean_score, seed_interval
from tinyeval.report.verdict import TwinCheck, twin_check


def twin_pairs(results: Results) -> dict[str, str]:
    """original task -> its twin task, for the twin tasks of the run whose original is in the run too."""
    from tinyeval.eval.tasks import TWINS

    return {orig: twin for twin, orig in TWINS.items() if twin in results.tasks and orig in results.tasks}


def flagged_of(results: Results, task: str) -> set[str] | None:
    """The ids `--clean-from`'s audit flags for `task` (a twin task: its original's); None when it covers neither."""
    from tinyeval.audit.clean import flags_for
    from tinyeval.eval.tasks import TWINS

    return flags_for((results.clean_from or {}).get("flagged", {}), task, TWINS)


def _without(score: TaskScore | None, flagged: set[str]) -> TaskScore | None:
    """`score` restricted to the items `flagged` does not hold (None without per-item ids)."""
    import dataclasses

    if score is None or not score.ids or score.correct is None:
        return None
    keep = [i for i, item in enumerate(score.ids) if item not in flagged]
    if not keep:
        return None
    pick = lambda xs: None if xs is None else [xs[i] for i in keep]  # noqa: E731
    correct = pick(score.correct)
    return dataclasses.replace(score, value=sum(correct) / len(correct), n=len(keep), correct=correct,
                               ids=pick(score.ids), strict_correct=pick(score.strict_correct),
                               lenient_correct=pick(score.lenient_correct), stderr=None)


def twin_checks(results: Results) -> dict[tuple[str, str], TwinCheck]:
    """(cell, original task) -> the cell's `TwinCheck` against the base model, for every trained cell."""
    base = next((c for c in results.cells if c.method == "base"), None)
    if base is None:
        return {}
    out = {}
    for orig, twin in twin_pairs(results).items():
        b_orig, b_twin = mean_score(base.seeds, orig), mean_score(base.seeds, twin)
        for cell in results.cells:
            if cell is not base:
                out[(cell.name, orig)] = twin_check(mean_score(cell.seeds, orig), b_orig, mean_score(cell.seeds, twin),
                                                    b_twin)
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f}"


def _score_text(score: TaskScore | None) -> str:
    """'12.0' or, for math, 'strict 4.0 / lenient 12.0' — format compliance beside correctness."""
    if score is None:
        return "–"
    if score.strict is not None and score.lenient is not None:
        return f"{_pct(score.strict)} / {_pct(score.lenient)}"
    return _pct(score.value)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


ReportRow = TypedDict("ReportRow", {"cell": str, "algo": str, "lr": str, "seeds": str, "trainable": str,
                                    "bytes (bf16)": str, "status": str})
ReportRow.__doc__ = """One row of `tinyeval report --json` and `tinyeval train-and-eval --json`: display text, plus
per task of the run a "<task>" mean score, a "seeds <task>" 95% interval across seeds and a "Δ <task>" versus base
(strings too), hence `__extra__`."""
ReportRow.__extra__ = True


def rows(results: Results) -> list[ReportRow]:
    """One display row per cell: method, learning rate, seeds, trainable params, bytes, and per task the mean score,
    its interval across seeds and its Δ vs base."""
    base = next((c for c in results.cells if c.method == "base"), None)
    twins, checks = twin_pairs(results), twin_checks(results)
    out = []
    for cell in results.cells:
        done = len(cell.done_seeds)
        row = {"cell": cell.name, "algo": cell.algo or "–", "lr": "–" if cell.lr is None else f"{cell.lr:g}",
               "seeds": str(done) if done == len(cell.seeds) else f"{done}/{len(cell.seeds)}",
               "trainable": f"{cell.trainable:,}", "bytes (bf16)": _bytes(cell.bytes_bf16), "status": cell.status}
        for task in results.tasks:
            score = mean_score(cell.seeds, task)
            row[task] = _score_text(score)
            row[f"seeds {task}"] = str(seed_interval(cell.seeds, task) or "–")
            if base is not None:
                base_score = mean_score(base.seeds, task)
                d = delta(score, base_score) if score and base_score and cell is not base else None
                row[f"Δ {task}"] = str(d) if d else "–"
            if flagged_of(results, task) is not None:
                kept = _without(score, flagged_of(results, task)) if score else None
                b = _without(mean_score(base.seeds, task), flagged_of(results, task)) if base else None
                d = delta(kept, b) if kept and b and cell is not base else None
                row[f"Δ clean {task}"] = f"{d} (n {d.k})" if d else "–"
            if task in twins:  # every row gets the columns (views read the first row's keys)
                check = checks.get((cell.name, task))
                row[f"Δ orig−twins {task}"] = str(check.difference) if check and check.difference else "–"
                row[f"verdict {task}"] = check.verdict if check else "–"
        out.append(row)
    return out


def note(results: Results) -> str:
    tasks = [t for t in results.tasks if any(t in s.scores and s.scores[t].strict is not None
                                             for c in results.cells for s in c.seeds)]
    math = (f"Math tasks ({', '.join(tasks)}) show strict / lenient accuracy (%): strict needs the requested answer "
            "format, lenient only the right value; their gap is format compliance. ") if tasks else ""
    return (math + "Scores are means over the seeds of each cell's learning rate; \"seeds\" is the primary metric's "
            "95% Student-t interval across seeds (two or more seeds). Δ is the primary metric's change vs base in "
            "points, with a 95% CI (paired over items when available, each item's correctness averaged over seeds)."
            + (" Twins: \"Δ orig−twins\" is the cell's lenient gain on originals minus its gain on their twins over "
               "the same items (95% CI); the verdict's rule is in tinyeval/report/verdict.py (README: how to read a "
               "verdict)." if twin_pairs(results) else "")
            + (" Cells ending -random / -format are controls (GRPO on random rewards / on the answer format only, "
               "same adapter and budget): a gain they share is not learning." if any(
                   c.is_control for c in results.cells) else ""))


def table(results: Results) -> Table:
    data = rows(results)
    t = Table(title=f"tinyeval train-and-eval · {results.model} · preset {results.preset}", caption=note(results))
    for key in data[0] if data else []:
        t.add_column(key, overflow="fold", justify="left" if key in ("cell", "algo", "status") else "right")
    for row in data:
        t.add_row(*row.values())
    return t


def markdown(results: Results, plots: list[str] | None = None) -> str:
    """report.md: ready to paste into a CI job summary (GitHub's $GITHUB_STEP_SUMMARY)."""
    data = rows(results)
    lines = [f"# tinyeval: {results.model} (preset `{results.preset}`)", ""]
    sweep = "; ".join(f"{algo} {', '.join(f'{x:g}' for x in lrs)}" for algo, lrs in (results.lr_sweep or {}).items())
    lines += [f"Seeds: {', '.join(map(str, results.seeds))}. " + (
        f"Learning rates swept ({sweep}), each cell's chosen on a dev split of its training set." if sweep else
        "Each cell trained at its training preset's learning rate."), ""]
    if data:
        keys = list(data[0])
        lines += ["| " + " | ".join(keys) + " |", "|" + "|".join("---" for _ in keys) + "|"]
        lines += ["| " + " | ".join(r[k].replace("|", "\\|") for k in keys) + " |" for r in data]
    lines += ["", note(results)]
    lines += _lr_choices(results)
    failed = [c for c in results.cells if c.status in ("failed", "partial")]
    if failed:
        lines += ["", "## Failed cells", ""] + [f"- `{c.name}` ({c.status}): {c.error}" for c in failed]
    for path in plots or []:
        lines += ["", f"![{path}]({path})"]
    return "\n".join(lines) + "\n"


def _lr_choices(results: Results) -> list[str]:
    """report.md's section on how each cell's learning rate was chosen (absent without a sweep)."""
    chosen = [c for c in results.cells if c.lr_choice]
    if not chosen:
        return []
    lines = ["", "## Learning rates", "", f"Chosen per cell by {chosen[0].lr_choice['rule']}.", "",
             "| cell | dev task | dev items | chosen | dev accuracy per learning rate (mean over seeds) |",
             "|---|---|---|---|---|"]
    for c in chosen:
        choice = c.lr_choice
        tried = ", ".join(f"{x['lr']:g}: " + ("–" if x["dev_accuracy"] is None else f"{x['dev_accuracy'] * 100:.1f}")
                          for x in choice["candidates"])
        lr = "–" if choice["chosen"] is None else f"{choice['chosen']:g}"
        lines.append(f"| {c.name} | {choice['task']} | {len(choice['dev_rows'])} | {lr} | {tried} |")
    return lines


@dataclass(frozen=True)
class Threshold:
    task: str
    value: float
    cell: str | None = None  # None: every trained cell must pass


def parse_threshold(spec: str) -> Threshold:
    """'gsm8k=0.5' (every trained cell) or 'tinylora-13/gsm8k=0.5' (one cell); values are fractions."""
    target, sep, value = spec.partition("=")
    cell, _, task = target.rpartition("/")
    try:
        number = float(value)
    except ValueError:
        number = None
    if not sep or not task or number is None:
        raise TinyevalError(f"--fail-under '{spec}': expected TASK=VALUE or CELL/TASK=VALUE, e.g. gsm8k=0.5")
    return Threshold(task, number, cell or None)


def gate(results: Results, thresholds: list[Threshold], fail_if_drop: bool = False) -> list[str]:
    """Violations of the thresholds (and with `fail_if_drop`, every cell whose gain drops on twins), as readable
    lines; an empty list means the gate passes."""
    failures = [f"{cell} {task}: drops on twins (gain on originals minus gain on twins {c.difference})"
                for (cell, task), c in twin_checks(results).items() if fail_if_drop and c.verdict == "drops on twins"]
    for th in thresholds:
        if th.task not in results.tasks:
            raise TinyevalError(f"--fail-under names task '{th.task}', not in this run ({', '.join(results.tasks)})")
        # Without a cell named: every trained cell but the controls, which are meant to score low
        cells: list[Cell] = [results.cell(th.cell)] if th.cell else [
            c for c in results.cells if c.method != "base" and not c.is_control]
        for cell in cells:
            score = mean_score(cell.seeds, th.task)
            if score is None or score.value < th.value:
                got = "missing" if score is None else f"{score.value:.4f}"
                failures.append(f"{cell.name} {th.task}: {got} < {th.value}")
    return failures
