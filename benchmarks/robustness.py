"""Is the demo's gain real? Twins, the random-reward control and the liveness proof, read off one cpu-preset run.

    python benchmarks/robustness.py [--run runs/demo-bench]     # after `python benchmarks/demo.py` (its output dir)
    python benchmarks/robustness.py --fresh --out runs/robust    # or run the cpu preset here first

Reads the run's results.json alone (the same file `tinyeval report` renders) and records, for every trained cell,
its held-out gain over the base model on the original items and on their twins with the paired intervals and the
verdict of `tinyeval.report.verdict`, and the GRPO cell against its random-reward control: item-paired (each item's
lenient correctness averaged over seeds; the same items), so the interval is over items, plus each seed's score.
The headline: the GRPO cell's held-out accuracy (tinyeval) against the random-reward control's (anchor); ratio > 1
means the real reward beat random rewards on the mean; whether that is beyond noise is `grpo_minus_random`.
Writes benchmarks/results/robustness.json.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
GRPO, CONTROL, TASK = "tinylora-210-grpo", "tinylora-210-grpo-random", "arith"


def paired(a: list[float], b: list[float]) -> dict:
    """mean(a - b) over items with its 95% interval (the report's paired Δ, `stats.paired_delta`)."""
    from tinyeval.report.stats import paired_delta

    d = paired_delta([x - y for x, y in zip(a, b)])
    return {"value": round(d.value, 4), "low": round(d.low, 4), "high": round(d.high, 4), "n": d.k}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/demo-bench", help="a finished cpu-preset train-and-eval directory")
    ap.add_argument("--fresh", action="store_true", help="run `train-and-eval --preset cpu` into --out first")
    ap.add_argument("--out", default="runs/robust")
    args = ap.parse_args()
    machine = describe()
    sys.path.insert(0, str(ROOT))
    from tinyeval.io import write_json
    from tinyeval.report.render import twin_checks
    from tinyeval.report.results import load
    from tinyeval.report.stats import mean_score

    run = ROOT / (args.out if args.fresh else args.run)
    if args.fresh:
        subprocess.run([str(Path(sys.executable).parent / "tinyeval"), "train-and-eval", "--model", "smollm2-135m",
                        "--preset", "cpu", "--out", str(run)], cwd=ROOT, check=True)
    r = load(run)
    checks = {cell: c.as_dict() for (cell, task), c in twin_checks(r).items() if task == TASK}
    grpo, control = mean_score(r.cell(GRPO).seeds, TASK), mean_score(r.cell(CONTROL).seeds, TASK)
    base = mean_score(r.cell("base").seeds, TASK)
    cells = {}
    for c in r.cells:
        m = mean_score(c.seeds, TASK)
        cells[c.name] = {
            "lenient": m and round(m.lenient, 4), "strict": m and round(m.strict, 4),
            "per_seed_lenient": [round(s.scores[TASK].lenient, 4) for s in c.done_seeds if TASK in s.scores],
            "twins_lenient": (t := mean_score(c.seeds, f"{TASK}_twins")) and round(t.lenient, 4),
            "twin_check": checks.get(c.name),
            "liveness": [s.liveness["verdict"] if s.liveness else None for s in c.done_seeds],
        }
    result = {
        "name": "robustness",
        "metric": f"held-out {TASK} accuracy (lenient, mean over seeds) of GRPO vs its random-reward control",
        "unit": "fraction correct",
        "tinyeval": round(grpo.lenient, 4),
        "anchor_name": f"{CONTROL}: same adapter, budget and learning rate, rewards drawn Bernoulli(p) at random",
        "anchor": round(control.lenient, 4),
        "ratio": round(grpo.lenient / control.lenient, 3) if control.lenient else None,
        "target": "the GRPO gain beyond the control's (paired interval above 0) and a verdict other than 'drops on "
                  "twins'; reported as it comes out",
        "base": round(base.lenient, 4),
        "grpo_minus_random": paired(grpo.lenient_correct, control.lenient_correct),
        "grpo_minus_base": paired(grpo.lenient_correct, base.lenient_correct),
        "random_minus_base": paired(control.lenient_correct, base.lenient_correct),
        "cells": cells,
        "run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run),
        "seeds": r.seeds,
        "command": "python benchmarks/robustness.py" + (" --fresh" if args.fresh else f" --run {args.run}"),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
    }
    write_json(ROOT / "benchmarks" / "results" / "robustness.json", result)
    print({k: result[k] for k in ("tinyeval", "anchor", "ratio", "grpo_minus_random")})
    for name, c in cells.items():
        print(name, c["lenient"], c["twins_lenient"], (c["twin_check"] or {}).get("verdict"))


if __name__ == "__main__":
    main()
