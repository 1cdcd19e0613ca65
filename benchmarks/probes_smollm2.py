"""Leakage probes on the embedded SmolLM2-135M-Instruct: GSM8K (accuracy on twins, prefix, membership) and
MATH500 (prefix, membership), plus a side-by-side timing of the membership scorer.

    TINYEVAL_DATA=../shared/data .venv/bin/python benchmarks/probes_smollm2.py \
        --n-membership 600 --n-generate 60 --max-new-tokens 128 --math-n 100

Anchor: Min-K%++ computed the way the method's reference code does it, one text per forward pass with
softmax and log-softmax taken separately; tinyeval scores the same texts in length-sorted batches. The
ratio is tinyeval texts/s over anchor texts/s, and both must give the same scores (max |diff| printed).
The probe tables go to the results JSON under "probes" and to stdout as markdown.

GPU run for Qwen2.5-7B-Instruct (bf16, vLLM for generation when installed; see BENCHMARKS.md):

    TINYEVAL_DATA=../shared/data python benchmarks/probes_smollm2.py --model qwen2.5-7b \
        --n-membership 0 --n-generate 500 --max-new-tokens 512 --math-n 500 --batch-size 32
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe

from tinyeval.audit.probes.config import ProbeConfig
from tinyeval.audit.probes.membership import MIN_K, score_texts
from tinyeval.audit.probes.run import load_probe_model, run_probes
from tinyeval.audit.scan.report import probes_markdown as markdown
from tinyeval.data import load
from tinyeval.io import write_json

OUT = Path(__file__).parent / "results" / "probes_smollm2.json"


@torch.inference_mode()
def anchor_min_k_pp(model, tokenizer, texts: list[str], k: float = MIN_K) -> np.ndarray:
    """Reference-style Min-K%++: one unpadded text per forward pass."""
    out = []
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"].to(model.device)  # (1, T)
        logits = model(ids).logits[0, :-1].float()  # (T-1, V)
        probs, log_probs = torch.softmax(logits, -1), torch.log_softmax(logits, -1)
        token = log_probs.gather(-1, ids[0, 1:, None])[:, 0]  # (T-1,)
        mu = (probs * log_probs).sum(-1)
        sigma = ((probs * log_probs.square()).sum(-1) - mu.square()).sqrt()
        z = ((token - mu) / sigma).cpu().numpy()
        out.append(float(np.sort(z)[: max(1, int(len(z) * k))].mean()))
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-membership", type=int, default=600, help="GSM8K items (and twins) scored; 0 = all")
    ap.add_argument("--n-generate", type=int, default=60, help="items per generation probe")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--math-n", type=int, default=100, help="MATH500 items for prefix and membership")
    ap.add_argument("--anchor-texts", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="smollm2-135m", help="another model (a GPU run) writes probes_<model>.json")
    args = ap.parse_args()
    machine = describe()  # taken before the run: the load it started under
    # Set OMP_NUM_THREADS=1 beside other jobs (a 2-thread OpenMP barrier waits for the shared core); recorded.
    threads_env = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    torch.manual_seed(0)
    out = OUT if args.model == "smollm2-135m" else OUT.with_name(f"probes_{Path(args.model).name}.json")
    model = load_probe_model(ProbeConfig(model=args.model, batch_size=args.batch_size))  # vLLM when installed
    hf, tok = model.hf, model.tokenizer
    result = {"name": out.stem, "model": args.model, "metric": "Min-K%++ membership scoring throughput", "unit": "texts/s",
              "anchor_name": "reference-style Min-K%++ (one text per forward pass)",
              "target": 1.0, "command": threads_env + "TINYEVAL_DATA=../shared/data .venv/bin/python benchmarks/probes_smollm2.py "
              + " ".join(sys.argv[1:]), "machine": machine, "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "generation_backend": model.backend, "torch_threads": torch.get_num_threads(),
              "complete": False}

    texts = [r["question"] for r in load("gsm8k", "test").rows[: args.anchor_texts]]
    t0 = time.time()
    ref = anchor_min_k_pp(hf, tok, texts)
    t_anchor = time.time() - t0
    t0 = time.time()
    ours = score_texts(hf, tok, texts, batch_size=args.batch_size)["min_k_pp"]
    t_ours = time.time() - t0
    result |= {"anchor": round(len(texts) / t_anchor, 3), "tinyeval": round(len(texts) / t_ours, 3),
               "ratio": round(t_anchor / t_ours, 3), "max_abs_score_diff": float(np.abs(ref - ours).max())}
    print(f"membership scoring: tinyeval {result['tinyeval']} texts/s, anchor {result['anchor']} texts/s, "
          f"ratio {result['ratio']}, max |diff| {result['max_abs_score_diff']:.2e}", flush=True)
    write_json(out, result)

    runs = {
        "gsm8k": ProbeConfig(model=args.model, benchmark="gsm8k", n_generate=args.n_generate, n_membership=args.n_membership or None,
                             max_new_tokens=args.max_new_tokens, prefix_new_tokens=32, batch_size=args.batch_size),
        "math500": ProbeConfig(model=args.model, benchmark="math500", probes=("prefix", "membership"), n_generate=args.math_n,
                               n_membership=args.math_n, prefix_new_tokens=40, batch_size=args.batch_size),
    }
    result["probes"] = {}
    for name, config in runs.items():
        report = run_probes(config, model=model)
        result["probes"][name] = report
        print(markdown(report), flush=True)
        write_json(out, result)
    result["complete"] = True
    write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "probes"}, indent=2))


if __name__ == "__main__":
    main()
