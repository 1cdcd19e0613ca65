"""Unmerged TinyLoRA in bf16: bytes allocated per forward + backward against the base model (CPU, torch profiler),
and on a GPU, when there is one, wall time and peak memory of the same comparison.

    .venv/bin/python benchmarks/adapter_overhead_bf16.py                       # Qwen2.5-1.5B shape, batch 8 x 256
    .venv/bin/python benchmarks/adapter_overhead_bf16.py --shape smollm2-135m --out /tmp/x.json

Why bytes: on a CPU without native bf16 the matmuls are emulated and dwarf everything else (SmolLM2's base
forward + backward at 8 x 256 tokens took 517 s on an AVX2 EPYC, and the adapter added ~1%), so CPU time says
nothing about a GPU, where a bf16 step is bound by memory traffic. What the adapter allocates is what it writes:
the former fp32 side branch allocated x.float(), an fp32 delta and sum and their gradients in every adapted
module. Bytes are counted from the profiler's own allocation events (`profile_memory=True`; the same event tree
torch's memory profiler reads), every allocation of one forward + backward after a warm-up one, temporaries
inside kernels included; the count is deterministic, so one pass per side suffices.

The model is random-init with the registry's bundled architecture (`tinyeval.models.ALIASES`), in bf16, built
at depth 1 and 2: decoder layers are identical, so bytes(L) = fixed + L x per_layer, and the record extrapolates
both sides to the shape's real depth (28 layers for Qwen2.5-1.5B) instead of letting a 2-layer model's
embedding, LM head and loss (the same on both sides) dilute the ratio. Both sides take the same
`inputs_embeds` with requires_grad (benchmarks/adapter_overhead.py's protocol): the base pays the activation
backward through every layer that the adapter needs; the base is the same model inside `handle.disabled()`.
TinyLoRA: u = 1, n_tie = 16 (the real model's plan at 13 parameters), rank 2, v set non-zero.

GPU part (`torch.cuda.is_available()`): the full-depth model on the GPU, forward + backward alternating base /
adapted after two warm-ups, median of `--repeats`, and each side's peak allocated memory; stored under "gpu".
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypedDict

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import describe  # benchmarks/machine.py

from tinyeval.adapters import AdapterConfig, attach
from tinyeval.io import write_json
from tinyeval.models import ALIASES

GIB = 2**30


class Sides(TypedDict):
    base: int
    adapted: int


class GpuTiming(TypedDict):
    device: str
    layers: int
    base_ms: float
    adapted_ms: float
    overhead: float
    base_peak_gib: float
    adapted_peak_gib: float
    repeats: int


class Details(TypedDict):
    shape: str
    layers: int
    batch: int
    tokens: int
    adapted_modules_per_layer: int
    bytes_depth_1: Sides
    bytes_depth_2: Sides
    bytes_per_layer: Sides
    bytes_fixed: Sides
    bytes_full_depth: Sides
    per_layer_ratio: float
    peak_bytes_depth_2: Sides
    threads: int
    gpu: GpuTiming | None


class Record(TypedDict):
    name: str
    metric: str
    unit: str
    tinyeval: float
    anchor_name: str
    anchor: float
    ratio: float
    target: str
    command: str
    date: str
    machine: dict[str, Any]
    details: Details


def build(shape: str, layers: int, device: str, **arch):
    """A random-init bf16 model with `shape`'s bundled architecture (fields in `arch` overridden) at `layers`
    depth, TinyLoRA attached."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**{**ALIASES[shape].arch, "num_hidden_layers": layers, **arch})
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).eval()
    h = attach(model, AdapterConfig(u=1, n_tie=16, rank=2, svd_cache=False))
    with torch.no_grad():
        h.state.v.fill_(0.01)
    return model, h


def fwd_bwd(model, embeds: torch.Tensor, labels: torch.Tensor) -> None:
    x = embeds.detach().requires_grad_(True)
    model(inputs_embeds=x, labels=labels).loss.backward()
    model.zero_grad(set_to_none=True)


def allocations(fn) -> tuple[int, int]:
    """(bytes allocated, peak bytes above the start) of one fn() call, from the profiler's allocation events."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()

    def walk(nodes):
        for n in nodes:
            yield n
            yield from walk(n.children)

    events = [n for n in walk(prof.profiler.kineto_results.experimental_event_tree())
              if n.tag == _EventType.Allocation]
    total = live = peak = 0
    for n in sorted(events, key=lambda n: n.start_time_ns):
        size = n.extra_fields.alloc_size
        total += max(size, 0)
        live += size
        peak = max(peak, live)
    return total, peak


def bytes_at_depth(shape: str, layers: int, batch: int, tokens: int) -> tuple[Sides, Sides, int]:
    """Bytes allocated and peak bytes of one forward + backward, base and adapted, at this depth (CPU)."""
    model, h = build(shape, layers, "cpu")
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
    total, peak = {}, {}
    for side, ctx in (("base", h.disabled), ("adapted", nullcontext)):
        with ctx():
            fwd_bwd(model, embeds, ids)  # warm-up: lazy buffers, allocator caches
            with torch.no_grad():
                h.state.v.add_(0.001)  # as an optimizer step would: the adapter prepares its operands again
            total[side], peak[side] = allocations(lambda: fwd_bwd(model, embeds, ids))
        print(f"  depth {layers} {side}: {total[side] / GIB:.3f} GiB allocated, peak {peak[side] / GIB:.3f} GiB",
              flush=True)
    return Sides(**total), Sides(**peak), len(h.targets) // layers


def gpu_timing(shape: str, batch: int, tokens: int, repeats: int) -> GpuTiming:
    """Median fwd+bwd wall time and peak memory, base vs adapted, full depth on the GPU."""
    layers = ALIASES[shape].arch["num_hidden_layers"]
    model, h = build(shape, layers, "cuda")
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(0))
    ids = ids.cuda()
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
    runs: dict[str, list[float]] = {"base": [], "adapted": []}
    peaks = {}
    for i in range(repeats + 2):  # two warm-up rounds
        for side, ctx in (("base", h.disabled), ("adapted", nullcontext)):
            with ctx():
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                fwd_bwd(model, embeds, ids)
                torch.cuda.synchronize()
                if i >= 2:
                    runs[side].append(time.perf_counter() - t0)
                    peaks[side] = torch.cuda.max_memory_allocated() / GIB
        print(f"  gpu round {i}: " + "  ".join(f"{s} {v[-1] * 1e3:.1f} ms" for s, v in runs.items() if v), flush=True)
    med = {s: statistics.median(v) * 1e3 for s, v in runs.items()}
    return GpuTiming(device=torch.cuda.get_device_name(0), layers=layers, base_ms=round(med["base"], 2),
                     adapted_ms=round(med["adapted"], 2), overhead=round(med["adapted"] / med["base"], 3),
                     base_peak_gib=round(peaks["base"], 3), adapted_peak_gib=round(peaks["adapted"], 3),
                     repeats=repeats)


def measure(shape: str, batch: int, tokens: int, repeats: int, gpu: bool) -> Details:
    one, _, per = bytes_at_depth(shape, 1, batch, tokens)
    two, peak_two, _ = bytes_at_depth(shape, 2, batch, tokens)
    depth = ALIASES[shape].arch["num_hidden_layers"]
    layer = Sides(**{s: two[s] - one[s] for s in two})
    fixed = Sides(**{s: one[s] - layer[s] for s in two})
    full = Sides(**{s: fixed[s] + depth * layer[s] for s in two})
    timing = gpu_timing(shape, batch, tokens, repeats) if gpu and torch.cuda.is_available() else None
    return Details(shape=shape, layers=depth, batch=batch, tokens=tokens, adapted_modules_per_layer=per,
                   bytes_depth_1=one, bytes_depth_2=two, bytes_per_layer=layer, bytes_fixed=fixed,
                   bytes_full_depth=full, per_layer_ratio=round(layer["base"] / layer["adapted"], 4),
                   peak_bytes_depth_2=peak_two, threads=torch.get_num_threads(), gpu=timing)


def main(argv: list[str] | None = None) -> Record:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="qwen2.5-1.5b", choices=sorted(ALIASES))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5, help="GPU timing rounds (after two warm-ups)")
    ap.add_argument("--no-gpu", action="store_true", help="skip the GPU timing even where a GPU is present")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (bytes do not depend on it)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "adapter_overhead_bf16.json")
    args = ap.parse_args(argv)
    machine = describe()
    torch.set_num_threads(args.threads)
    d = measure(args.shape, args.batch, args.tokens, args.repeats, gpu=not args.no_gpu)
    full = d["bytes_full_depth"]
    record = Record(
        name="adapter_overhead_bf16",
        metric=f"bytes allocated per forward+backward (torch profiler, CPU, bf16), unmerged TinyLoRA vs base, "
               f"{args.shape} shape ({d['layers']} layers, extrapolated from depth 1 and 2), batch {args.batch} x "
               f"{args.tokens} tokens",
        unit="GiB allocated per forward+backward (ratio = base / adapted)",
        tinyeval=round(full["adapted"] / GIB, 3), anchor_name="base model (same weights, adapter disabled)",
        anchor=round(full["base"] / GIB, 3), ratio=round(full["base"] / full["adapted"], 4),
        target=">= 0.87 (adapted <= 1.15x the base's bytes)",
        command=f"python benchmarks/adapter_overhead_bf16.py --shape {args.shape} --batch {args.batch} "
                f"--tokens {args.tokens} --repeats {args.repeats}" + (" --no-gpu" if args.no_gpu else ""),
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), machine=machine,
        details=d)
    write_json(args.out, record)
    print(f"ratio (base / adapted bytes, full depth) {record['ratio']}; per layer {d['per_layer_ratio']}; "
          f"gpu {d['gpu']}")
    return record


if __name__ == "__main__":
    main()
