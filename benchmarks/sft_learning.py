"""Evidence that SFT learns: SmolLM2 + LoRA r1 on GSM8K train (the `cpu` SFT preset), in one run.

    python benchmarks/sft_learning.py [--steps 30] [--eval-limit 200] [--backend auto]

Measures, for the base model and the SFT-trained adapter, on the same items:
  * held-out loss: token-mean NLL of GSM8K *test* gold solutions (first `--heldout` items), the metric
    recorded (ratio = base loss / trained loss, > 1 means SFT lowered it);
  * strict and lenient accuracy under lm-eval (`tinyeval eval`, gsm8k task, first `--eval-limit` items):
    SFT on `#### N`-formatted gold should move strict (format) more than lenient (correctness). The gain in
    strict accuracy comes with a paired 95% bootstrap interval over the items (SmolLM2 is near 1% strict on
    GSM8K, so tens of items cannot show a rise: 200 is the default).
Writes benchmarks/results/sft_learning.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--heldout", type=int, default=64)
    ap.add_argument("--eval-limit", type=int, default=200)
    ap.add_argument("--backend", default="auto", help="eval backend (auto: the faster one for this device)")
    ap.add_argument("--max-gen-toks", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    machine = describe()  # taken before the run: the load it started under

    from tinyeval.audit.probes.stats import paired_diff_ci
    from tinyeval.eval.run import EvalConfig, evaluate
    from tinyeval.io import write_json
    from tinyeval.train import recipes

    work = Path(tempfile.mkdtemp(prefix="sft-learning-"))
    start = time.perf_counter()
    loop, cfg = recipes.build("sft", "cpu", steps=args.steps, eval_examples=args.heldout,
                              eval_every=max(args.steps // 4, 1), seed=args.seed)
    summary = recipes.run("sft", loop, cfg, work / "train", progress=False)
    train_s = time.perf_counter() - start

    def accuracy(adapter: Path | None) -> dict:
        out = work / ("eval-" + ("sft" if adapter else "base"))
        rec = evaluate(EvalConfig(model=loop.model, tasks=["gsm8k"], out=out, adapter=adapter, backend=args.backend,
                                  limit=args.eval_limit, max_gen_toks=args.max_gen_toks, seed=args.seed))
        t = rec["tasks"]["gsm8k"]
        samples = [json.loads(x) for x in (out / "samples" / "gsm8k.jsonl").read_text().splitlines()]
        strict = {s["doc_id"]: int(s["exact_match"]) for s in samples if s["filter"] == "strict-match"}
        return {"strict": t["strict"], "lenient": t["lenient"], "format_rate": t.get("format_rate"), "n": t["n"],
                "backend": rec["backend"], "strict_per_item": [strict[i] for i in sorted(strict)]}

    base, trained = accuracy(None), accuracy(work / "train" / "adapter")
    gain = paired_diff_ci(trained.pop("strict_per_item"), base.pop("strict_per_item"))
    before, after = summary["heldout_loss_before"], summary["heldout_loss_after"]
    curve = [json.loads(line) for line in (work / "train" / "records.jsonl").read_text().splitlines()]
    result = {
        "name": "sft_learning",
        "metric": f"held-out GSM8K gold-solution loss (token-mean NLL, first {args.heldout} test items)",
        "unit": "nats/token",
        "tinyeval": round(after, 4),
        "anchor_name": "base SmolLM2-135M-Instruct (no training)",
        "anchor": round(before, 4),
        "ratio": round(before / after, 4),
        "target": "ratio > 1 (SFT lowers held-out loss) and strict accuracy rises",
        "command": "python benchmarks/sft_learning.py " + " ".join(sys.argv[1:]),
        "machine": machine, "date": datetime.date.today().isoformat(),
        "details": {"steps": summary["steps"], "trainable": summary["trainable"], "train_seconds": round(train_s, 1),
                    "accuracy_base": base, "accuracy_sft": trained,
                    "strict_gain": {"value": gain.value, "ci95": [gain.lo, gain.hi]},
                    "heldout_curve": [(r["step"], r["heldout_loss"]) for r in curve if "heldout_loss" in r],
                    "skipped_too_long": summary["skipped_too_long"]},
    }
    write_json(ROOT / "benchmarks" / "results" / "sft_learning.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
