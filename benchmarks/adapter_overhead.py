"""Adapter overhead on SmolLM2-135M: forward + backward of unmerged TinyLoRA vs the base model, and merged
inference vs the base model.

    .venv/bin/python benchmarks/adapter_overhead.py                 # batch 8 x 256 tokens, fp32, 3 repeats
    .venv/bin/python benchmarks/adapter_overhead.py --dtype bfloat16

One run, one model object: the base is the same model inside `handle.disabled()` (hooks return early), so
both sides share weights, memory layout and threads, and runs alternate base / adapter to spread load drift.
Forward + backward: both sides take the same `inputs_embeds` with requires_grad, so the base pays the same
activation backward through every layer that TinyLoRA needs to reach v; frozen weights get no gradient on
either side. TinyLoRA: 13 parameters (u = 1, tiled n_tie = 16), v set non-zero. Merged inference: forward
under no_grad after `handle.merge()` vs the base forward. Times are medians of `--repeats`; the machine is a
shared 2-core CPU (load ~15), so wall seconds swing by 2x between rounds: the headline ratio uses process CPU
seconds, which with one thread count the work of this process only; wall ratios are recorded beside them. Default one torch
thread (`--threads`): with 2 threads at load ~15 the rank-2 products wait on OpenMP barriers (measured: 1.8x
overhead with 2 threads vs 1.1x on one module with 1 thread, where the base itself was also faster).
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import describe  # noqa: E402  (benchmarks/machine.py)

from tinyeval.adapters import AdapterConfig, attach  # noqa: E402
from tinyeval.io import write_json  # noqa: E402
from tinyeval.models import load_model  # noqa: E402


def step(model, embeds: torch.Tensor, labels: torch.Tensor, train: bool) -> tuple[float, float]:
    """(wall, process CPU) seconds of one forward (+ backward)."""
    w, c = time.perf_counter(), time.process_time()
    if train:
        x = embeds.detach().requires_grad_(True)
        model(inputs_embeds=x, labels=labels).loss.backward()
    else:
        with torch.no_grad():
            model(inputs_embeds=embeds)
    return time.perf_counter() - w, time.process_time() - c


def alternate(base_ctx, adapted_ctx, fn, repeats: int) -> dict:
    """Median wall and CPU seconds of fn() under each context, alternating base / adapted, after a warm-up."""
    runs: dict[str, list] = {"base": [], "adapted": []}
    for i in range(repeats + 1):
        with base_ctx():
            tb = fn()
        with adapted_ctx():
            ta = fn()
        if i:  # first round is warm-up
            runs["base"].append(tb)
            runs["adapted"].append(ta)
        print(f"  round {i}: base {tb[0]:.2f}s wall {tb[1]:.2f}s cpu   adapted {ta[0]:.2f}s wall {ta[1]:.2f}s cpu",
              flush=True)
    return {f"{side}_{kind}_s": round(statistics.median(t[j] for t in runs[side]), 3)
            for side in runs for j, kind in enumerate(("wall", "cpu"))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on the shared 2-core machine, 2 OpenMP threads make each "
                         "skinny rank-2 product ~30 ms of barrier waiting, which measures the load, not the adapter)")
    args = ap.parse_args()
    machine = describe()  # taken before the run: the load it started under
    torch.set_num_threads(args.threads)

    model, _ = load_model("smollm2-135m", dtype=args.dtype)
    h = attach(model, AdapterConfig(params=13))
    with torch.no_grad():
        h.state.v.fill_(0.01)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.tokens), generator=g)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
    from contextlib import nullcontext

    print("forward + backward (unmerged TinyLoRA vs base):")
    train = alternate(h.disabled, nullcontext, lambda: step(model, embeds, ids, True), args.repeats)
    model.zero_grad(set_to_none=True)
    h.merge()
    print("merged inference (forward, no grad):")
    infer = alternate(h.disabled, nullcontext, lambda: step(model, embeds, ids, False), args.repeats)
    h.unmerge()

    ratio = train["adapted_cpu_s"] / train["base_cpu_s"]
    result = {
        "name": "adapter_overhead",
        "metric": f"forward+backward CPU time, unmerged TinyLoRA / base, SmolLM2-135M, batch {args.batch} x "
                  f"{args.tokens} tokens, {args.dtype}, {args.threads} thread(s)",
        "unit": "x (time relative to base)",
        "tinyeval": round(ratio, 3),
        "anchor_name": "base model (same weights, adapter disabled)",
        "anchor": 1.0,
        "ratio": round(1 / ratio, 3),
        "target": "unmerged forward+backward <= 1.15x base; merged inference: no overhead",
        "command": f"python benchmarks/adapter_overhead.py --batch {args.batch} --tokens {args.tokens} "
                   f"--repeats {args.repeats} --dtype {args.dtype} --threads {args.threads}",
        "machine": machine, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "details": {"fwd_bwd": train, "fwd_bwd_overhead_cpu": round(ratio, 3),
                    "fwd_bwd_overhead_wall": round(train["adapted_wall_s"] / train["base_wall_s"], 3),
                    "merged_forward": infer,
                    "merged_overhead_cpu": round(infer["adapted_cpu_s"] / infer["base_cpu_s"], 3),
                    "merged_overhead_wall": round(infer["adapted_wall_s"] / infer["base_wall_s"], 3),
                    "trainable": h.num_trainable, "threads": torch.get_num_threads(),
                    "adapted_modules": len(h.targets)},
    }
    write_json(REPO / "benchmarks" / "results" / "adapter_overhead.json", result)
    print(result["details"])


if __name__ == "__main__":
    main()
