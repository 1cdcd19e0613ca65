"""Unmerged TinyLoRA in bf16: aten ops (≈ GPU kernel launches) per forward + backward against the base model.

    .venv/bin/python benchmarks/adapter_dispatch.py                           # Qwen2.5-1.5B layout, ops + CPU time
    .venv/bin/python benchmarks/adapter_dispatch.py --no-time --out /tmp/x.json

Why ops: on the H200 (2026-12-04, Qwen2.5-1.5B shape, bf16, 8 × 256 tokens, 13 parameters on all 196 linear
modules) an unmerged fwd+bwd took 216.9 ms against the base's 86.7 ms, although the GPU was busy for only 56 ms
of it: the step launched 8,279 kernels against the base's 3,239 and was bound by the CPU dispatching them. What
bounds such a step is the number of ops per module, not their arithmetic, and that number does not depend on
the width, the device or the load of the machine: it is counted here on CPU, exactly, with a
`TorchDispatchMode` that sees every aten op autograd dispatches in forward and backward. "kernel ops" leaves out
views and bare allocations (they launch nothing on a GPU); "all ops" counts them too (they still cost CPU).

The model is random-init with the registry's bundled architecture (`tinyeval.models.ALIASES`: the same modules,
biases and attention layout) at a tiny width (`--width`, vocabulary 1,024) and depth 1 and 2: decoder layers
are identical, so ops(L) = fixed + L × per_layer, extrapolated to the real depth. Per adapted module:
(adapted − base) per layer / the layer's adapted modules; per pass: what the adapter adds outside the layers.
Both sides take the same `inputs_embeds` with requires_grad (benchmarks/adapter_overhead_bf16.py's protocol);
the base is the same model inside `handle.disabled()`. TinyLoRA: u = 1, n_tie = 16, rank 2, v non-zero.

`projected_h200`: the H200's milliseconds per extra op, calibrated on a3da480 (130.2 ms for its 3,919 extra
kernel ops as counted here, `BEFORE`), applied to this run's extra ops; a rough guide (it lumps each module's
Python overhead into its ops), not a measurement. CPU wall time (`--no-time` skips it): median of
`--repeats` fwd+bwd at the tiny width, one thread, where dispatch is all there is; a loaded machine inflates
both sides.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypedDict

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapter_overhead_bf16 import build, fwd_bwd  # the same model and step, at another width
from anchors import BenchRecord  # benchmarks/anchors.py
from machine import describe  # benchmarks/machine.py

from tinyeval.io import write_json
from tinyeval.models import ALIASES

# The H200 check of 2026-12-04 (commit a3da480, torch 2.11 + CUDA 13): fwd+bwd ms and CUDA kernels per step (torch
# profiler), base and adapted. BEFORE: what this script counted and timed at a3da480 (same layout and protocol).
H200 = {"base_ms": 86.7, "adapted_ms": 216.9, "kernels_base": 3239, "kernels_adapted": 8279}
BEFORE = {"commit": "a3da480", "extra_kernel_ops_per_module": 20.0, "extra_all_ops_per_module": 35.0,
          "extra_kernel_ops_per_pass": -1, "kernel_ops_full_depth": {"base": 2900, "adapted": 6819},
          "all_ops_full_depth": {"base": 5160, "adapted": 12020},
          "cpu_time": {"base_ms": 3.951, "adapted_ms": 8.116, "overhead": 2.054}}
NO_KERNEL = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "detach", "alias",
             "_unsafe_view", "lift_fresh"}


class Sides(TypedDict):
    base: int
    adapted: int


class Counts(TypedDict):
    kernels: Sides
    all: Sides


class Projection(TypedDict):
    ms_per_extra_op: float
    base_ms: float
    adapted_ms: float
    overhead: float


class CpuTime(TypedDict):
    base_ms: float
    adapted_ms: float
    overhead: float
    repeats: int
    threads: int


class Details(TypedDict):
    shape: str
    layers: int
    width: int
    batch: int
    tokens: int
    adapted_modules_per_layer: int
    depth_1: Counts
    depth_2: Counts
    per_layer: Counts
    per_pass_extra_kernel_ops: int
    per_module_extra_kernel_ops: float
    per_module_extra_all_ops: float
    per_module_extra_by_op: dict[str, float]  # depth 2's extra ops by name / its adapted modules (per-pass incl.)
    full_depth: Counts
    before: dict[str, Any]
    projected_h200: Projection
    cpu_time: CpuTime | None


class Record(BenchRecord):
    details: Details


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched below autograd, by name (`aten.mm`, ...)."""

    def __init__(self):
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.launches = 0  # ops that launch work on a GPU: not views, not bare allocations

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops[name] += 1
        self.launches += not func.is_view and name not in NO_KERNEL
        return func(*args, **(kwargs or {}))


def tiny(shape: str, width: int) -> dict:
    """Overrides of `shape`'s architecture for hidden size `width` (rounded to the heads; the same heads)."""
    arch = ALIASES[shape].arch
    heads = arch["num_attention_heads"]
    hidden = max(width // heads, 2) * heads
    small = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "vocab_size": 1024}
    return {**small, "head_dim": hidden // heads} if "head_dim" in arch else small


def sides(model, h):
    return (("base", h.disabled), ("adapted", nullcontext))


def count_at_depth(shape: str, layers: int, width: int, batch: int, tokens: int):
    """(Counts, {side: op Counter}, adapted modules per layer) of one fwd+bwd after a warm-up one."""
    model, h = build(shape, layers, "cpu", **tiny(shape, width))
    ids = torch.randint(0, 1024, (batch, tokens), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
    ops, launches = {}, {}
    for side, ctx in sides(model, h):
        with ctx():
            fwd_bwd(model, embeds, ids)  # warm-up: lazy buffers and caches
            with torch.no_grad():
                h.state.v.add_(0.001)  # as an optimizer step would: v changes between steps
            with OpCounter() as counter:
                fwd_bwd(model, embeds, ids)
        ops[side], launches[side] = counter.ops, counter.launches
    counts = Counts(kernels=Sides(**launches),
                    all=Sides(**{s: sum(c.values()) for s, c in ops.items()}))
    return counts, ops, len(h.targets) // layers


def cpu_time(shape: str, width: int, batch: int, tokens: int, repeats: int) -> CpuTime:
    """Median fwd+bwd wall time, base and adapted alternating, at depth 2 and the tiny width, one thread."""
    model, h = build(shape, 2, "cpu", **tiny(shape, width))
    ids = torch.randint(0, 1024, (batch, tokens), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
    runs: dict[str, list[float]] = {"base": [], "adapted": []}
    for i in range(repeats + 2):
        for side, ctx in sides(model, h):
            with ctx():
                t0 = time.perf_counter()
                fwd_bwd(model, embeds, ids)
                if i >= 2:
                    runs[side].append(time.perf_counter() - t0)
    med = {s: statistics.median(v) * 1e3 for s, v in runs.items()}
    return CpuTime(base_ms=round(med["base"], 3), adapted_ms=round(med["adapted"], 3), repeats=repeats,
                   overhead=round(med["adapted"] / med["base"], 3), threads=torch.get_num_threads())


def measure(shape: str, width: int, batch: int, tokens: int, repeats: int, timed: bool) -> Details:
    one, _, per = count_at_depth(shape, 1, width, batch, tokens)
    two, ops, _ = count_at_depth(shape, 2, width, batch, tokens)
    depth = ALIASES[shape].arch["num_hidden_layers"]
    layer = Counts(**{k: Sides(**{s: two[k][s] - one[k][s] for s in ("base", "adapted")}) for k in two})
    full = Counts(**{k: Sides(**{s: one[k][s] + (depth - 1) * layer[k][s] for s in ("base", "adapted")})
                     for k in two})
    extra_layer_ops = ops["adapted"].copy()
    extra_layer_ops.subtract(ops["base"])  # two layers' extra ops, by name, plus the per-pass ones
    by_op = {k: round(n / (2 * per), 2) for k, n in sorted(extra_layer_ops.items()) if n}
    extra_pass = (one["kernels"]["adapted"] - one["kernels"]["base"]) - (layer["kernels"]["adapted"]
                                                                          - layer["kernels"]["base"])
    extra_full = full["kernels"]["adapted"] - full["kernels"]["base"]
    before = BEFORE["kernel_ops_full_depth"]
    ms_per_op = (H200["adapted_ms"] - H200["base_ms"]) / (before["adapted"] - before["base"])
    projected = H200["base_ms"] + ms_per_op * extra_full
    return Details(
        shape=shape, layers=depth, width=tiny(shape, width)["hidden_size"], batch=batch, tokens=tokens,
        adapted_modules_per_layer=per, depth_1=one, depth_2=two, per_layer=layer,
        per_pass_extra_kernel_ops=extra_pass,
        per_module_extra_kernel_ops=round((layer["kernels"]["adapted"] - layer["kernels"]["base"]) / per, 2),
        per_module_extra_all_ops=round((layer["all"]["adapted"] - layer["all"]["base"]) / per, 2),
        per_module_extra_by_op=by_op, full_depth=full, before=BEFORE,
        projected_h200=Projection(ms_per_extra_op=round(ms_per_op, 5), base_ms=H200["base_ms"],
                                  adapted_ms=round(projected, 1), overhead=round(projected / H200["base_ms"], 3)),
        cpu_time=cpu_time(shape, width, batch, tokens, repeats) if timed else None)


def main(argv: list[str] | None = None) -> Record:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="qwen2.5-1.5b", choices=sorted(ALIASES))
    ap.add_argument("--width", type=int, default=96, help="hidden size of the tiny model (rounded to the heads)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=21, help="CPU timing rounds (after two warm-ups)")
    ap.add_argument("--no-time", action="store_true", help="count ops only (they are exact; time is not)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "adapter_dispatch.json")
    args = ap.parse_args(argv)
    machine = describe()
    torch.set_num_threads(1)
    d = measure(args.shape, args.width, args.batch, args.tokens, args.repeats, timed=not args.no_time)
    full = d["full_depth"]["kernels"]
    record = Record(
        name="adapter_dispatch",
        metric=f"aten kernel ops per forward+backward (CPU dispatch count, bf16), unmerged TinyLoRA vs base, "
               f"{args.shape} layout ({d['layers']} layers, extrapolated from depth 1 and 2)",
        unit="kernel ops per forward+backward (ratio = base / adapted)",
        tinyeval=full["adapted"], anchor_name="base model (same weights, adapter disabled)", anchor=full["base"],
        ratio=round(full["base"] / full["adapted"], 4), target=">= 0.87 (adapted <= 1.15x the base's ops)",
        command=f"python benchmarks/adapter_dispatch.py --shape {args.shape} --width {args.width} --batch "
                f"{args.batch} --tokens {args.tokens}" + (" --no-time" if args.no_time else ""),
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), machine=machine, skipped={},
        details=d)
    write_json(args.out, record)
    print(f"kernel ops per fwd+bwd: base {full['base']}, adapted {full['adapted']} (ratio {record['ratio']}); "
          f"per module +{d['per_module_extra_kernel_ops']} kernel ops, +{d['per_module_extra_all_ops']} all; "
          f"per pass +{d['per_pass_extra_kernel_ops']}; projected H200 {d['projected_h200']}; "
          f"cpu {d['cpu_time']}")
    return record


if __name__ == "__main__":
    main()
