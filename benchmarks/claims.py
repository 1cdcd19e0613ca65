"""The paper's five claims, checked at 135M: the `claims-cpu` matrix on the embedded model, claim by claim.

    python benchmarks/claims.py [--out runs/claims] [--workers 2] [--analyse-only]
    python benchmarks/claims.py --seeds 2 --lr-sweep off --eval-limit 100 --out runs/claims-quick   # a smaller cut
    python benchmarks/claims.py --out runs/claims-rerun --compare-with benchmarks/results/claims.json  # run it again

Runs `tinyeval train-and-eval --model smollm2-135m --preset claims-cpu --workers 2 --out runs/claims` (resumable:
a re-run skips finished units), then reads its results.json alone and decides each claim with the rule written
next to it in `CLAIMS`. A gain is a cell's held-out accuracy minus the base model's, lenient (the right number: the
reward GRPO trains on) and strict (`#### N` format) reported side by side; its interval is the 95% Student-t
interval across seeds of the per-seed gains. Two cells are compared by Welch's t interval of their per-seed means
(both from `tinyeval.report.stats`).
Writes benchmarks/results/claims.json and benchmarks/results/claims.png (the paper's Fig. 1/2 shape: accuracy
vs trainable parameters, log x, GRPO and SFT as two series with seed intervals, base and the random-reward control
as lines). With --compare-with, the record gains `reproduction`: this run against an earlier record, cell by cell.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
TASK = "arith"  # held-out items the model learns under GRPO; "arith_twins" is scored beside it
RUN_FILE = "claims-run.json"  # beside results.json: the study's measured wall time, kept for --analyse-only
PAPER_RECOVERED = (90.7 - 75.6) / (97.0 - 75.6)  # Fig. 1: TinyLoRA-13's share of full fine-tuning's gain (0.71)


@dataclass(frozen=True)
class Est:
    """A mean with its 95% interval (fractions); k values went into it."""

    mean: float
    low: float
    high: float
    k: int

    def as_dict(self) -> dict:
        return {"mean": round(self.mean, 4), "low": round(self.low, 4), "high": round(self.high, 4), "k": self.k}

    def __str__(self) -> str:
        return f"{self.mean * 100:+.1f} [{self.low * 100:+.1f}, {self.high * 100:+.1f}]"

    @classmethod
    def of(cls, interval) -> Est | None:
        """From a `tinyeval.report.stats.Interval` (None stays None)."""
        return None if interval is None else cls(interval.value, interval.low, interval.high, interval.k)


def t_interval(xs: list[float]) -> Est | None:
    """The mean of per-seed values with its 95% Student-t interval (`stats.t_interval`)."""
    from tinyeval.report.stats import t_interval as interval

    return Est.of(interval(xs))


def welch(a: list[float], b: list[float]) -> Est | None:
    """mean(a) - mean(b) with Welch's 95% interval (`stats.welch`)."""
    from tinyeval.report.stats import welch as interval

    return Est.of(interval(a, b))


def seed_scores(results, cell: str, task: str = TASK, key: str = "lenient") -> list[float]:
    """Each finished seed's score of `cell` on `task` (`key`: lenient | strict)."""
    from tinyeval.errors import TinyevalError

    try:
        c = results.cell(cell)
    except TinyevalError:  # the cell is not in this run
        return []
    return [getattr(s.scores[task], key) for s in c.done_seeds if task in s.scores
            and getattr(s.scores[task], key) is not None]


def gains(results, cell: str, task: str = TASK, key: str = "lenient") -> list[float]:
    """Per-seed gain over the base model (one base evaluation: greedy decoding does not depend on the seed)."""
    base = seed_scores(results, "base", task, key)
    return [x - base[0] for x in seed_scores(results, cell, task, key)] if base else []


def _verdict(yes: bool, no: bool) -> str:
    return "reproduced" if yes else "not reproduced" if no else "inconclusive"


def claim_recovery(r) -> dict:
    """(1) GRPO + TinyLoRA-13 recovers most of full fine-tuning's gain. Rule: full FT's gain must be > 0 (interval
    above 0), else inconclusive; reproduced when TinyLoRA-13's gain is > 0 and at least half of full FT's mean gain;
    not reproduced when its interval lies below half of it."""
    tiny, full = t_interval(gains(r, "tinylora-13-grpo")), t_interval(gains(r, "full-grpo"))
    out = {"tinylora_13_gain": tiny and tiny.as_dict(), "full_gain": full and full.as_dict()}
    if tiny is None or full is None:
        return {**out, "verdict": "inconclusive", "why": "a cell has fewer than two finished seeds"}
    out["recovered"] = round(tiny.mean / full.mean, 3) if full.mean else None
    if full.low <= 0:
        return {**out, "verdict": "inconclusive", "why": "full fine-tuning's own gain is not above zero"}
    half = full.mean / 2
    return {**out, "verdict": _verdict(tiny.low > 0 and tiny.mean >= half, tiny.high < half),
            "why": f"TinyLoRA-13 gain {tiny} vs half of full FT's {full.mean * 100:+.1f}"}


def claim_sft(r) -> dict:
    """(2) At tiny budgets SFT does almost nothing while GRPO gains. Rule, at 13 parameters: reproduced when GRPO's
    gain is > 0 and exceeds SFT's (Welch interval of GRPO - SFT above 0); not reproduced when SFT's gain is at
    least GRPO's (interval of the difference at or below 0 and SFT's gain > 0)."""
    g, s = gains(r, "tinylora-13-grpo"), gains(r, "tinylora-13-sft")
    gi, si, diff = t_interval(g), t_interval(s), welch(g, s)
    out = {"grpo_13_gain": gi and gi.as_dict(), "sft_13_gain": si and si.as_dict(), "grpo_minus_sft": diff and
           diff.as_dict()}
    if gi is None or si is None or diff is None:
        return {**out, "verdict": "inconclusive", "why": "a cell has fewer than two finished seeds"}
    return {**out, "verdict": _verdict(gi.low > 0 and diff.low > 0, si.low > 0 and diff.high <= 0),
            "why": f"GRPO-13 {gi}, SFT-13 {si}, difference {diff}"}


GRPO_BUDGETS = ("tinylora-1-grpo", "tinylora-13-grpo", "tinylora-210-grpo", "lora-xs-r2-grpo", "lora-r1-grpo",
                "full-grpo")


def claim_scaling(r) -> dict:
    """(3) Accuracy rises smoothly with the trained parameters, 1 to full (GRPO). Rule: Spearman's rank correlation
    of log(trainable) and mean gain over the six budgets; reproduced when rho >= 0.8 and the largest budget's gain
    exceeds the 1-parameter gain (Welch interval above 0); not reproduced when rho <= 0."""
    from scipy.stats import spearmanr

    points = []
    for name in GRPO_BUDGETS:
        g = gains(r, name)
        if g:
            points.append((r.cell(name).trainable, statistics.fmean(g), name))
    if len(points) < 3:
        return {"verdict": "inconclusive", "why": "fewer than three budgets finished", "points": []}
    rho = float(spearmanr([p[0] for p in points], [p[1] for p in points]).statistic)
    ends = welch(gains(r, points[-1][2]), gains(r, points[0][2]))
    yes = rho >= 0.8 and ends is not None and ends.low > 0
    return {"spearman_rho": round(rho, 3), "largest_minus_smallest": ends and ends.as_dict(),
            "points": [{"cell": n, "trainable": t, "gain": round(g, 4)} for t, g, n in points],
            "verdict": _verdict(yes, rho <= 0), "why": f"rho {rho:.2f} over {len(points)} budgets"}


def _compare(r, a: str, b: str, claim: str) -> dict:
    """`a` beats `b`: reproduced when Welch's interval of a - b is above 0, not reproduced when below 0."""
    d = welch(seed_scores(r, a), seed_scores(r, b))
    if d is None:
        return {"verdict": "inconclusive", "why": "a cell has fewer than two finished seeds", claim: None}
    return {claim: d.as_dict(), "verdict": _verdict(d.low > 0, d.high < 0), "why": f"{a} - {b}: {d}"}


def claim_tying(r) -> dict:
    """(4) Tiled tying beats structured tying at ~13 parameters (Welch interval of tiled - structured above 0).
    Structured tying cannot spend exactly 13 on SmolLM2 (7 module types: 7 or 14 groups), so it gets 14: any bias
    favours structured."""
    return _compare(r, "tinylora-13-grpo", "tinylora-14-structured-grpo", "tiled_minus_structured")


def claim_rank(r) -> dict:
    """(5) Frozen rank r = 2 is best. Rule: reproduced when r = 2 beats r = 4 (Welch interval above 0) and r = 1 is
    not significantly better than r = 2; not reproduced when r = 1 or r = 4 is significantly better than r = 2."""
    vs4 = welch(seed_scores(r, "tinylora-13-grpo"), seed_scores(r, "tinylora-13-r4-grpo"))
    vs1 = welch(seed_scores(r, "tinylora-13-grpo"), seed_scores(r, "tinylora-13-r1-grpo"))
    if vs4 is None or vs1 is None:
        return {"verdict": "inconclusive", "why": "a cell has fewer than two finished seeds"}
    return {"r2_minus_r4": vs4.as_dict(), "r2_minus_r1": vs1.as_dict(),
            "verdict": _verdict(vs4.low > 0 and vs1.high >= 0, vs4.high < 0 or vs1.high < 0),
            "why": f"r2 - r4 {vs4}, r2 - r1 {vs1}"}


CLAIMS = {
    "1 TinyLoRA-13 GRPO recovers most of full FT's gain": claim_recovery,
    "2 SFT at 13 parameters does almost nothing (GRPO does)": claim_sft,
    "3 accuracy rises with trainable parameters": claim_scaling,
    "4 tiled tying beats structured": claim_tying,
    "5 frozen rank 2 is best": claim_rank,
}


def control(r) -> dict:
    """The random-reward control against the cell it controls: a gain it shares is not learning."""
    real, rand = gains(r, "tinylora-13-grpo"), gains(r, "tinylora-13-grpo-random")
    d = welch(real, rand)
    ri = t_interval(rand)
    return {"random_reward_gain": ri and ri.as_dict(), "real_minus_random": d and d.as_dict()}


def table(r) -> list[dict]:
    """Per cell: trainable parameters, lenient and strict accuracy (mean over seeds, seed interval), twins."""
    rows = []
    for c in r.cells:
        row = {"cell": c.name, "algo": c.algo or "-", "trainable": c.trainable, "lr": c.lr, "seeds": len(c.done_seeds)}
        for task in (TASK, f"{TASK}_twins"):
            for key in ("lenient", "strict"):
                xs = seed_scores(r, c.name, task, key)
                est = t_interval(xs)
                row[f"{task}_{key}"] = (None if not xs else {**(est.as_dict() if est else {"mean": round(xs[0], 4),
                                        "k": 1}), "values": [round(x, 4) for x in xs]})
        rows.append(row)
    return rows


def reproduction(first: dict, table_rows: list[dict], claims: dict) -> dict:
    """This run against an earlier claims record `first` (the same preset and seeds, run again): does the command
    reproduce its numbers within seed noise? Per cell, task (held-out and twins) and key (lenient, strict), the
    difference of the two runs' seed means with Welch's 95% interval from the two seed intervals
    (`stats.welch_of`: the first record may keep only mean, interval and k). A single evaluation (the base model:
    greedy decoding, no seed) has no seed interval: it must come out identical. Rule: reproduced within seed noise
    when every claim's verdict is the same and no lenient held-out difference (the number the claims read) has an
    interval excluding 0; the strict and twin comparisons are counted beside it."""
    from tinyeval.report.stats import Interval, welch_of

    def interval(e: dict) -> Interval:
        return Interval(e["mean"], e.get("low", e["mean"]), e.get("high", e["mean"]), e["k"])

    before = {row["cell"]: row for row in first.get("table", [])}
    rows, outside = [], []
    for row in table_rows:
        old = before.get(row["cell"])
        for task in (TASK, f"{TASK}_twins"):
            for key in ("lenient", "strict"):
                a, b = row.get(f"{task}_{key}"), old and old.get(f"{task}_{key}")
                if not a or not b:
                    continue
                d = welch_of(interval(a), interval(b))
                diff = (Est.of(d).as_dict() if d else {"mean": round(a["mean"] - b["mean"], 4), "k": 1})
                within = d.low <= 0 <= d.high if d else a["mean"] == b["mean"]
                rows.append({"cell": row["cell"], "task": task, "key": key, "first": b["mean"], "second": a["mean"],
                             "second_minus_first": diff, "within_noise": within})
                if not within:
                    outside.append(f"{row['cell']} {task} {key}")
    verdicts = {name: [first.get("claims", {}).get(name, {}).get("verdict"), c["verdict"]]
                for name, c in claims.items()}
    same = all(a == b for a, b in verdicts.values())
    headline = [x for x in rows if x["task"] == TASK and x["key"] == "lenient"]
    missing = sorted(set(before) ^ {row["cell"] for row in table_rows})
    return {
        "first": {k: first.get(k) for k in ("date", "command", "wall_s", "machine")},
        "verdicts": verdicts,
        "verdicts_same": same,
        "compared": len(rows),
        "outside_noise": outside,
        "identical": all(x["first"] == x["second"] for x in rows),
        "cells_in_one_run_only": missing,
        "reproduced": same and not missing and bool(headline) and all(x["within_noise"] for x in headline),
        "rows": rows,
    }


def plot(r, path: Path) -> None:
    """Accuracy vs trainable parameters (log x): GRPO and SFT series, seed intervals, base and control lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinyeval.io import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.4))
    for algo, style in (("grpo", {"marker": "o", "color": "tab:blue"}), ("sft", {"marker": "s", "color": "tab:orange"})):
        pts = []
        for c in r.cells:
            xs = seed_scores(r, c.name)
            if c.algo == algo and c.trainable and xs and c.name.count("-") <= 2 and not c.name.endswith("-random"):
                pts.append((c.trainable, xs, c.name))  # the budget series: no tying / rank / control variants
        pts.sort()
        if not pts:
            continue
        means = [100 * statistics.fmean(xs) for _, xs, _ in pts]
        errs = [[100 * (statistics.fmean(xs) - e.low) if (e := t_interval(xs)) else 0 for _, xs, _ in pts],
                [100 * (e.high - statistics.fmean(xs)) if (e := t_interval(xs)) else 0 for _, xs, _ in pts]]
        ax.errorbar([p[0] for p in pts], means, yerr=errs, capsize=3, label=f"{algo.upper()} (seed 95% CI)", **style)
        for (x, _, name), y in zip(pts, means):
            ax.annotate(name.rsplit("-", 1)[0], (x, y), textcoords="offset points", xytext=(3, 4), fontsize=7)
    base = seed_scores(r, "base")
    if base:
        ax.axhline(100 * base[0], color="gray", ls="--", label="base")
    rand = seed_scores(r, "tinylora-13-grpo-random")
    if rand:
        ax.axhline(100 * statistics.fmean(rand), color="tab:red", ls=":", label="random-reward control (13)")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log)")
    ax.set_ylabel(f"held-out {TASK} accuracy, lenient (%)")
    ax.set_title(f"{r.model}: GRPO vs SFT by update size ({TASK})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/claims", help="train-and-eval output directory (resumed if present)")
    ap.add_argument("--workers", default="2")
    ap.add_argument("--analyse-only", action="store_true", help="only read --out/results.json")
    ap.add_argument("--seeds", help="override the preset's 3 seeds (a smaller cut; recorded as such)")
    ap.add_argument("--lr-sweep", help="override the preset's sweep: off, or 5e-3,2e-2 (recorded)")
    ap.add_argument("--eval-limit", help="override the preset's 128 held-out items (recorded)")
    ap.add_argument("--methods", help="keep only these cells (train-and-eval --methods; recorded)")
    ap.add_argument("--compare-with", metavar="RECORD", help="an earlier claims record (e.g. the committed "
                    "benchmarks/results/claims.json): this run is checked against it (`reproduction`)")
    args = ap.parse_args()
    cut = {k: v for k, v in (("--seeds", args.seeds), ("--lr-sweep", args.lr_sweep), ("--eval-limit", args.eval_limit),
                                     ("--methods", args.methods))
           if v is not None}
    machine = describe()

    from tinyeval.io import write_json
    from tinyeval.report.results import load

    out = ROOT / args.out
    first = None
    if args.compare_with:
        try:
            first = json.loads(Path(args.compare_with).read_text())
        except (OSError, ValueError) as e:
            sys.exit(f"claims: --compare-with {args.compare_with}: cannot read it ({e})")
        if not isinstance(first, dict) or first.get("name") != "claims" or not {"table", "claims"} <= first.keys():
            sys.exit(f"claims: --compare-with {args.compare_with}: not a claims record (no name 'claims', table, claims)")
    wall = None
    cmd = ["tinyeval", "train-and-eval", "--model", "smollm2-135m", "--preset", "claims-cpu", "--workers",
           args.workers, "--out", args.out, *(x for kv in cut.items() for x in kv)]
    if not args.analyse_only:
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], cwd=ROOT, check=True)
        wall = round(time.perf_counter() - start, 1)
        write_json(out / RUN_FILE, {"wall_s": wall, "finished": _now()})
    elif (out / RUN_FILE).exists():  # re-analysing a finished run keeps its measured wall time
        wall = json.loads((out / RUN_FILE).read_text())["wall_s"]
    r = load(out / "results.json")
    claims = {name: fn(r) for name, fn in CLAIMS.items()}
    rec = claims["1 TinyLoRA-13 GRPO recovers most of full FT's gain"].get("recovered")
    rows = table(r)
    plot(r, ROOT / "benchmarks" / "results" / "claims.png")
    result = {
        "name": "claims",
        "metric": "share of full fine-tuning's GRPO gain recovered by TinyLoRA-13 (held-out arith, lenient, mean "
                  "over seeds)",
        "unit": "fraction",
        "tinyeval": rec,
        "anchor_name": "the paper's Fig. 1 (Qwen2.5-7B, GSM8K): (90.7 - 75.6) / (97.0 - 75.6)",
        "anchor": round(PAPER_RECOVERED, 3),
        "ratio": None if rec is None else round(rec / PAPER_RECOVERED, 3),
        "target": "each claim decided by its rule (reproduced / not reproduced / inconclusive); see `claims`",
        "claims": claims,
        "control": control(r),
        "table": rows,
        "seeds": r.seeds,
        "lr_sweep": r.lr_sweep,
        "full_study": not cut,  # false: a smaller cut than the claims-cpu preset (see `cut`)
        "cut": cut,
        "wall_s": wall,
        "command": "python benchmarks/claims.py" + "".join(f" {k} {v}" for k, v in cut.items()) + (
            f" --out {args.out}" if args.out != "runs/claims" else "") + (
            f" --compare-with {args.compare_with}" if args.compare_with else ""),
        "date": _now(),
        "machine": machine,
    }
    if first is not None:
        result["reproduction"] = reproduction(first, rows, claims)
    write_json(ROOT / "benchmarks" / "results" / "claims.json", result)
    for name, c in claims.items():
        print(f"{name}: {c['verdict']} ({c.get('why', '')})")
    if first is not None:
        rp = result["reproduction"]
        print(f"reproduction of {rp['first']['date']}: {'reproduced' if rp['reproduced'] else 'NOT reproduced'} "
              f"within seed noise (verdicts same: {rp['verdicts_same']}, identical: {rp['identical']}, "
              f"outside noise: {', '.join(rp['outside_noise']) or 'none'})")


if __name__ == "__main__":
    main()
