"""Evidence that tinyeval's GRPO learns: TinyLoRA on SmolLM2-135M, 3 seeds, per-step strict and lenient.

    .venv/bin/python benchmarks/grpo_learning.py            # ~45 min on an idle 2-core CPU (seeds in parallel)

Task: `arith`, procedurally generated one-step single-digit word problems asking for the answer after
`####` (graded by the GSM8K grader). Why not GSM8K itself: SmolLM2-135M scores ~1% strict / ~3% lenient on
it, so almost every GRPO group would be all-zero (no advantage, no gradient). This script measures the base
model on held-out arith problems first and records that number next to the curves, so the choice is
checked, not assumed. Sampling temperature 0.7, not the paper's 1.0: at 1.0 this 135M model's samples are
mostly noise (measured on 96 training prompts: lenient reward 0.08 at T = 1.0, 0.18 at 0.7, 0.46 greedy), so
most groups would be all-zero; at 0.7 a group of 8 usually holds a right answer to reinforce.

Reward (the `cpu` preset): lenient, i.e. the right number, wherever it is. Reported separately every step:
strict accuracy (right number after `####`, the format asked for) and lenient accuracy. A gain in strict
alone would be format compliance; a gain in lenient is the answers themselves. Held-out greedy accuracy
before and after training is reported for each seed. Writes benchmarks/results/grpo_learning.json and
grpo_learning.png. `--analyse` rebuilds both from the run directories and the previous JSON's base numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def held_out_accuracy(model, tokenizer, n: int, max_new_tokens: int) -> dict:
    """Greedy strict/lenient accuracy on the first `n` held-out arith problems (split 'test')."""
    from tinyeval.generation import generate
    from tinyeval.train.tasks import get_task

    task = get_task("arith")
    examples = task.examples(tokenizer, "test")[:n]
    texts = generate(model, tokenizer, [e.prompt for e in examples], max_new_tokens=max_new_tokens, batch_size=16)
    grades = [task.grade(t, e.gold) for t, e in zip(texts, examples)]
    return {"strict": sum(g.strict for g in grades) / n, "lenient": sum(g.lenient for g in grades) / n, "n": n,
            "sample": texts[0][:200]}


def window(records: list[dict], key: str, first: bool, k: int) -> float:
    rows = records[:k] if first else records[-k:]
    return statistics.fmean(r[key] for r in rows)


def plot(runs: dict[int, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, key, title in zip(axes, ("strict", "lenient"), ("strict (answer after ####)", "lenient (right number: the reward)")):
        for seed, recs in runs.items():
            steps = [r["step"] for r in recs]
            ax.plot(steps, [r[key] for r in recs], alpha=0.35, label=f"seed {seed}")
            smooth = [statistics.fmean(r[key] for r in recs[max(0, i - 4): i + 1]) for i in range(len(recs))]
            ax.plot(steps, smooth, color=ax.lines[-1].get_color(), linewidth=2)
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
    axes[0].set_ylabel("accuracy of sampled completions")
    axes[0].legend(fontsize=7)
    fig.suptitle("tinyeval GRPO, TinyLoRA on SmolLM2-135M, arith (thin: per step, thick: 5-step mean)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--params", type=int, default=210)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--prompts-per-step", type=int, default=4)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--eval-n", type=int, default=100)
    p.add_argument("--runs", default="/tmp/tinyeval-grpo-learning")
    p.add_argument("--seed-worker", type=int, help=argparse.SUPPRESS)  # internal: train one seed
    p.add_argument("--analyse", action="store_true", help="only rebuild the JSON and PNG from finished runs")
    args = p.parse_args()
    os.environ.setdefault("TINYEVAL_DATA", str(ROOT.parent / "shared" / "data"))
    if args.seed_worker is not None:
        return train_seed(args, args.seed_worker)
    if args.analyse:
        previous = json.loads((RESULTS / "grpo_learning.json").read_text())
        return write_results(args, previous["base_held_out_greedy"], *collect(args), previous["seconds"],
                             previous["machine"])
    t0 = time.time()
    # seeds train in parallel processes (one thread each): the wall clock of one run on a shared CPU
    procs = {s: subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--seed-worker", str(s)])
             for s in args.seeds}
    import torch

    from tinyeval.models import load_model

    torch.set_num_threads(1)
    machine = describe()  # before the run: the load it started under
    base_model, tok = load_model("smollm2-135m", dtype=args.dtype)
    base = held_out_accuracy(base_model, tok, args.eval_n, args.max_new_tokens)
    print(f"base model, held-out greedy: {base}", flush=True)
    failed = [s for s, proc in procs.items() if proc.wait() != 0]
    if failed:
        sys.exit(f"seed worker(s) {failed} failed")
    write_results(args, base, *collect(args), time.time() - t0, machine)


def collect(args) -> tuple[dict, dict]:
    """Each seed's step records and held-out accuracy after training, from its run directory."""
    runs, after = {}, {}
    for s in args.seeds:
        out = Path(args.runs) / f"seed{s}"
        runs[s] = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
        after[s] = json.loads((out / "held_out_after.json").read_text())
    return runs, after


def train_seed(args, seed: int) -> None:
    """One seed: GRPO for `args.steps` steps (resuming if the run exists), then held-out greedy accuracy."""
    from tinyeval.io import write_json
    from tinyeval.train import recipes

    loop, grpo = recipes.build("grpo", "cpu", steps=args.steps, seed=seed, params=args.params, lr=args.lr,
                       prompts_per_step=args.prompts_per_step, group_size=args.group_size,
                       max_new_tokens=args.max_new_tokens, temperature=args.temperature, dtype=args.dtype,
                       checkpoint_every=5, threads=1)
    out = Path(args.runs) / f"seed{seed}"
    summary = recipes.run("grpo", loop, grpo, out, resume=(out / "checkpoints").is_dir(), progress=False)
    result = held_out_after(out, args)
    write_json(out / "held_out_after.json", result)
    print(f"seed {seed}: {summary['steps']} steps, {summary['seconds']:.0f}s, held-out after: {result}", flush=True)


def held_out_after(run_dir: Path, args) -> dict:
    """Greedy accuracy of the trained adapter, reloaded from the run's saved adapter directory."""
    from tinyeval.adapters import load_adapter
    from tinyeval.models import load_model

    model, tok = load_model("smollm2-135m", dtype=args.dtype)
    model = load_adapter(model, run_dir / "adapter").model
    return held_out_accuracy(model, tok, args.eval_n, args.max_new_tokens)


def slope_ci(runs: dict[int, list[dict]], key: str = "reward_mean", n_boot: int = 4000) -> dict:
    """OLS slope of `key` per step in each seed, their mean, and a 95% bootstrap interval of that mean.

    Uses every step, not only the first and last five: resampling steps within each seed (seeds stay
    separate, so the interval covers within-run noise), then averaging the seeds' slopes.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    per_seed, boots = {}, []
    for seed, recs in runs.items():
        x = np.array([r["step"] for r in recs], float)
        y = np.array([r[key] for r in recs], float)
        per_seed[seed] = float(np.polyfit(x, y, 1)[0])
        idx = rng.integers(0, len(x), (n_boot, len(x)))
        xb, yb = x[idx], y[idx]
        xc = xb - xb.mean(1, keepdims=True)
        boots.append((xc * (yb - yb.mean(1, keepdims=True))).sum(1) / np.maximum((xc ** 2).sum(1), 1e-12))
    mean_boot = np.mean(boots, axis=0)
    lo, hi = np.quantile(mean_boot, [0.025, 0.975])
    return {"per_seed": per_seed, "mean": float(np.mean(list(per_seed.values()))), "ci95": [float(lo), float(hi)],
            "steps": len(next(iter(runs.values())))}


def write_results(args, base: dict, runs: dict[int, list[dict]], after: dict, seconds: float,
                  machine: dict) -> None:
    from tinyeval.io import write_json

    k = 5
    per_seed = {s: {key: {"first5": window(r, key, True, k), "last5": window(r, key, False, k)}
                    for key in ("reward_mean", "strict", "lenient", "response_len")} for s, r in runs.items()}
    first = [v["reward_mean"]["first5"] for v in per_seed.values()]
    last = [v["reward_mean"]["last5"] for v in per_seed.values()]
    gains = [b - a for a, b in zip(first, last)]
    # seed noise: spread of the 5-step reward mean across seeds at the start, and step-to-step within runs
    noise = statistics.stdev(first) if len(first) > 1 else float("nan")
    step_sd = statistics.fmean(statistics.stdev([r["reward_mean"] for r in recs[:k]]) for recs in runs.values())
    plot(runs, RESULTS / "grpo_learning.png")
    result = {
        "name": "grpo_learning", "metric": "mean reward (lenient: right number) of sampled completions, last 5 steps",
        "unit": "reward (0-1)", "tinyeval": statistics.fmean(last),
        "anchor_name": "same runs, first 5 steps (base policy: TinyLoRA starts at v = 0)",
        "anchor": statistics.fmean(first), "ratio": statistics.fmean(last) / max(statistics.fmean(first), 1e-9),
        "target": "gain > 2 x seed noise (sd of first-5-step means across seeds) in every seed",
        "gain_per_seed": gains, "seed_noise_sd": noise, "within_run_step_sd": step_sd,
        "passes": all(g > 2 * max(noise, 1e-9) for g in gains),
        # supplementary: trend over all steps (reward per step), for the reward and its two parts
        "slope_per_step": {key: slope_ci(runs, key) for key in ("reward_mean", "strict", "lenient", "response_len")},
        "base_held_out_greedy": base, "held_out_greedy_after": after, "per_seed": per_seed,
        "config": {"task": "arith", "method": "tinylora", "adapters": "tinyeval.adapters", **{k2: v for k2, v in vars(args).items() if k2 != "runs"}},
        "curves": {s: [{k2: r[k2] for k2 in ("step", "reward_mean", "strict", "lenient", "response_len", "step_s")}
                       for r in recs] for s, recs in runs.items()},
        "seconds": seconds, "command": ".venv/bin/python benchmarks/grpo_learning.py " + " ".join(a for a in sys.argv[1:] if a != "--analyse"),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine,
    }
    write_json(RESULTS / "grpo_learning.json", result)
    print(json.dumps({k2: result[k2] for k2 in ("tinyeval", "anchor", "gain_per_seed", "seed_noise_sd", "passes")}))


if __name__ == "__main__":
    main()
