"""Units of the train-and-eval matrix per hour on this CPU: 2 local workers against 1, one thread per unit each.

    python benchmarks/matrix_scaling.py                  # the record (run it on an idle machine: ~20-25 min here)
    python benchmarks/matrix_scaling.py --smoke          # does it run? (~2 min, smallest cells, no record)

Runs the same small matrix twice with `tinyeval train-and-eval` into fresh output directories: SmolLM2-135M, the
cpu preset's GRPO and SFT cells with `--steps`, `--seeds` and a short HF evaluation (`--eval-limit` items,
`--max-gen-toks`), once with `--workers 1` (units one after another in the CLI's process) and once with
`--workers 2` (two spawned workers, one per core). Every CPU unit runs on one thread whatever the worker count, so
both runs must write the same results.json bytes (checked). Units per hour are counted over the scheduler's own
wall time (run.json's `wall_s`: both rounds, worker start-up included; the CLI's import and report rendering,
the same in both runs, are recorded beside it). The anchor is the 1-worker run; the issue's target is >= 1.8x.
`--backend vllm` times the same matrix with vLLM evaluation instead (one engine kept per worker, adapters switched
by merged reload: `tinyeval.eval.engine_pool`). Writes benchmarks/results/matrix_scaling.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.8


def run_matrix(out: Path, workers: int, args: argparse.Namespace) -> dict:
    """One `tinyeval train-and-eval` run into a fresh `out`; its wall time, run.json and results.json bytes."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "tinyeval.cli", "train-and-eval", "--model", args.model, "--preset", "cpu",
           "--methods", args.methods, "--tasks", "gsm8k", "--steps", str(args.steps), "--seeds", str(args.seeds),
           "--eval-limit", str(args.eval_limit), "--max-gen-toks", str(args.max_gen_toks), "--backend", args.backend,
           "--workers", str(workers), "--out", str(out), "--json"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    report = json.loads((out / "run.json").read_text())
    units = [u for u in report["units"] if u["status"] == "done"]
    return {"workers": workers, "units": len(units), "scheduler_s": report["wall_s"], "cli_s": round(wall, 1),
            "units_per_hour": round(3600 * len(units) / report["wall_s"], 1),
            "unit_s": sorted(u["seconds"] for u in units), "results": (out / "results.json").read_bytes()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default="tinylora-13-grpo,lora-r1-grpo,lora-r1-sft")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--eval-limit", type=int, default=8)
    ap.add_argument("--max-gen-toks", type=int, default=96)
    ap.add_argument("--backend", default="hf", help="eval backend (vllm: one kept engine per worker)")
    ap.add_argument("--out", default="runs/matrix-scaling", help="parent of the two fresh run directories")
    ap.add_argument("--smoke", action="store_true", help="smallest settings (2 units), no record written")
    args = ap.parse_args()
    if args.smoke:
        args.methods, args.steps, args.seeds, args.eval_limit, args.max_gen_toks = "tinylora-13-grpo", 1, 1, 1, 8
    machine = describe()  # taken before the runs: the load they started under
    load_before = os.getloadavg()

    one = run_matrix(ROOT / args.out / "workers-1", 1, args)
    two = run_matrix(ROOT / args.out / "workers-2", 2, args)
    identical = one.pop("results") == two.pop("results")
    ratio = round(two["units_per_hour"] / one["units_per_hour"], 3)
    result = {
        "name": "matrix_scaling",
        "metric": f"train-and-eval units per hour, 2 local workers vs 1 (one thread per unit, {args.backend} eval)",
        "unit": "units/h",
        "tinyeval": two["units_per_hour"],
        "anchor_name": "the same matrix on 1 worker",
        "anchor": one["units_per_hour"],
        "ratio": ratio,
        "target": f">= {TARGET} (2 workers on this 2-core CPU), results.json byte-identical",
        "identical_results": identical,
        "settings": {k: getattr(args, k) for k in ("model", "methods", "steps", "seeds", "eval_limit", "max_gen_toks",
                                                      "backend")},
        "runs": [one, two],
        "command": "python benchmarks/matrix_scaling.py" + (" --smoke" if args.smoke else "")
                   + (f" --backend {args.backend}" if args.backend != "hf" else ""),
        "machine": machine, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_at_start": [round(x, 2) for x in load_before],
    }
    print(json.dumps({k: result[k] for k in ("tinyeval", "anchor", "ratio", "identical_results")}))
    if not identical:
        raise SystemExit("results.json differs between 1 and 2 workers")
    if not args.smoke:
        sys.path.insert(0, str(ROOT))
        from tinyeval.io import write_json

        write_json(ROOT / "benchmarks" / "results" / "matrix_scaling.json", result)


if __name__ == "__main__":
    main()
