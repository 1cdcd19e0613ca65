"""Print a fixed random sample of verified GSM8K twins beside their originals, to read by eye.

    TINYEVAL_DATA=../shared/data .venv/bin/python benchmarks/twin_sample.py --seed 0 --sample-seed 19 --n 100

The twins are those of `tinyeval perturb gsm8k --seed SEED` (all 1,319 test items are perturbed, then
`--n` of the verified twins are drawn with `random.Random(SAMPLE_SEED)`), printed in dataset order with the
numbers that changed and the ties among question numbers that were kept (`perturb.relations`). BENCHMARKS.md
"twin_quality" records what reading the default sample found.
"""

from __future__ import annotations

import argparse
import random

from tinyeval.audit.perturb.twins import PerturbConfig, perturb_rows
from tinyeval.data import load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="perturbation seed (as `tinyeval perturb --seed`)")
    ap.add_argument("--sample-seed", type=int, default=19, help="seed of the sample of twins")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()

    rows = load("gsm8k", "test", args.data_root).rows
    twins, cov = perturb_rows(rows, PerturbConfig(seed=args.seed))
    print(f"{cov.perturbed} of {cov.total} items have a verified twin ({cov.rate:.2%}, seed {args.seed}); "
          f"{args.n} drawn with sample seed {args.sample_seed}\n")
    sample = sorted(random.Random(args.sample_seed).sample(twins, min(args.n, len(twins))), key=lambda t: t.index)
    for k, twin in enumerate(sample, 1):
        print(f"[{k}] gsm8k test item {twin.index}; changed {twin.changes}"
              + (f"; ties {list(twin.relations)}" if twin.relations else ""))
        print(f"  original: {' '.join(rows[twin.index]['question'].split())}")
        print(f"  twin:     {' '.join(twin.question.split())}")
        print(f"  answers:  {twin.original_answer} -> {twin.new_answer}\n")


if __name__ == "__main__":
    main()
