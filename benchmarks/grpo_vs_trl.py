"""tinyeval GRPO vs TRL's GRPOTrainer on SmolLM2-135M, in one run: optimizer steps per minute, peak RSS,
weight-sync bytes per step.

    nice -n 10 .venv/bin/python benchmarks/grpo_vs_trl.py [--steps 4]

Both sides get the same model (fp32 on CPU), the same adapter (TinyLoRA, PEFT's implementation on TRL's
side), the same task and reward (arith, strict `#### N` via tinyeval's grader), G, prompts per step,
max new tokens, learning rate, temperature, no KL, one inner epoch, token-mean loss. Each configuration
runs in its own process (clean peak RSS); the first step (warm-up) is excluded from the rate.

Modes: (1) like for like, both on HF generate; (2) tinyeval on vLLM (its default sync for the device: merge
on CPU, a LoRARequest on GPUs) against TRL's best mode that runs here: TRL's vLLM colocate mode is attempted
and, if it fails on this machine, its error is recorded and TRL's HF-generate result stands as its best mode.
TRL and vLLM are anchors (`make bench`, benchmarks/anchors.py): a configuration whose package is not
installed is skipped in one line, and the record keeps what ran (without TRL: tinyeval's figures, `anchor`
and `ratio` null, the reason under `skipped`). Writes benchmarks/results/grpo_vs_trl.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from anchors import Anchors
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SETTINGS = dict(prompts_per_step=2, group_size=4, max_new_tokens=32, lr=2e-3, params=210, temperature=1.0)
# torch threads, both sides (--threads): 1 on a shared machine, where 2 OpenMP threads wait on each other's
# barrier; every core on an idle one. vLLM's CPU worker (both sides) gets core 0, or every core.
THREADS = 1


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kb / 1024


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (vLLM's engine core): robust to a shared machine."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _rate(step_seconds: list[float]) -> float:
    """Optimizer steps per minute over the steps after the first (warm-up excluded)."""
    timed = step_seconds[1:] or step_seconds
    return 60.0 / statistics.fmean(timed)


def worker_tinyeval(engine: str, steps: int, out: Path) -> dict:
    from tinyeval.train import recipes

    loop, grpo = recipes.build("grpo", "cpu", steps=steps, engine=engine, checkpoint_every=1000, threads=THREADS,
                               **SETTINGS)
    cpu = _cpu_s()
    recipes.run("grpo", loop, grpo, out, progress=False)  # includes model load and adapter setup, as TRL's run does
    cpu = _cpu_s() - cpu
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    return {"step_s": [r["step_s"] for r in recs], "cpu_s_per_step_incl_setup": cpu / steps, "sync_bytes_per_step": statistics.fmean(r["sync_bytes"] for r in recs),
            "sync_s_per_step": statistics.fmean(r["sync_s"] for r in recs),
            "gen_tok_per_s": statistics.fmean(r["gen_tok_per_s"] for r in recs)}


def worker_trl(use_vllm: bool, steps: int, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import TinyLoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from tinyeval.adapters import DEFAULT_TARGETS as ALL_LINEAR
    from tinyeval.grading import grade_gsm8k
    from tinyeval.models import load_model
    from tinyeval.train.tasks import get_task

    torch.set_num_threads(THREADS)
    model, tok = load_model("smollm2-135m", dtype="float32")
    examples = get_task("arith").examples(tok, "train")[:64]
    data = Dataset.from_list([{"prompt": e.prompt, "gold": e.gold} for e in examples])

    def strict(completions, gold, **kw):
        return [float(grade_gsm8k(c, g).strict) for c, g in zip(completions, gold)]

    n_modules = sum(1 for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in ALL_LINEAR)
    peft_cfg = TinyLoraConfig(r=2, u=1, weight_tying=1.0 - SETTINGS["params"] / n_modules,
                              target_modules=list(ALL_LINEAR))
    n = SETTINGS["prompts_per_step"] * SETTINGS["group_size"]
    args = GRPOConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=n,
                      num_generations=SETTINGS["group_size"], generation_batch_size=n,
                      max_completion_length=SETTINGS["max_new_tokens"], learning_rate=SETTINGS["lr"],
                      temperature=SETTINGS["temperature"], beta=0.0, loss_type="dapo", num_iterations=1,
                      use_cpu=True, bf16=False, report_to="none", save_strategy="no", logging_steps=1,
                      use_vllm=use_vllm, vllm_mode="colocate", dataloader_num_workers=0, seed=0)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            times.append(time.perf_counter()) if not times else None

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())

    cpu = _cpu_s()
    model, tok = load_model("smollm2-135m", dtype="float32")  # loaded inside the CPU window, like tinyeval's
    trainer = GRPOTrainer(model=model, reward_funcs=[strict], args=args, train_dataset=data,
                          processing_class=tok, peft_config=peft_cfg, callbacks=[Clock()])
    trainer.train()
    cpu = _cpu_s() - cpu
    merged_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"step_s": [b - a for a, b in zip(times, times[1:])], "cpu_s_per_step_incl_setup": cpu / steps,
            # HF generate runs on the trained model itself (0 bytes); vLLM mode pushes every merged weight
            "sync_bytes_per_step": merged_bytes if use_vllm else 0}


# configuration -> the anchors it needs (tinyeval's vLLM engine needs the vllm package like TRL's vLLM mode)
NEEDS = {"tinyeval-hf": (), "trl-hf": ("TRL",), "tinyeval-vllm": ("vLLM",), "trl-vllm": ("TRL", "vLLM")}
WORKERS = {  # like-for-like pair first and adjacent, so load drift on a shared machine hits both alike
    "tinyeval-hf": lambda steps, out: worker_tinyeval("hf", steps, out),
    "trl-hf": lambda steps, out: worker_trl(False, steps, out),
    "tinyeval-vllm": lambda steps, out: worker_tinyeval("vllm", steps, out),
    "trl-vllm": lambda steps, out: worker_trl(True, steps, out),
}


def run_worker(name: str, steps: int, scratch: Path) -> dict:
    """One configuration in a fresh process; its JSON result, or the error that stopped it."""
    out = scratch / name
    cmd = [sys.executable, __file__, "--worker", name, "--steps", str(steps), "--scratch", str(scratch),
           "--threads", str(THREADS)]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        err = [x for x in proc.stderr.strip().splitlines() if x.strip()][-3:]
        return {"error": " | ".join(err) or f"exit {proc.returncode}", "wall_s": time.time() - start}
    result = json.loads(lines[-1][len("RESULT "):])
    result["steps_per_min"] = _rate(result["step_s"])
    result["wall_s"] = time.time() - start
    print(f"{name}: {result['steps_per_min']:.3f} steps/min, peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    del out
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--scratch", default="/tmp/tinyeval-grpo-vs-trl")
    p.add_argument("--worker", choices=list(WORKERS))
    p.add_argument("--threads", type=int, default=1, help="torch threads per side (default 1)")
    p.add_argument("--only", nargs="+", choices=list(WORKERS),
                   help="rerun these configurations; the others are kept from the existing results file")
    args = p.parse_args()
    os.environ.setdefault("TINYEVAL_DATA", str(ROOT.parent / "shared" / "data"))
    global THREADS
    THREADS = args.threads  # passed on to each worker process by run_worker
    scratch = Path(args.scratch)
    if args.worker:
        import shutil

        shutil.rmtree(scratch / args.worker, ignore_errors=True)
        if THREADS == 1:  # vLLM's CPU worker, either side: one thread, on core 0
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0")
        else:  # every core (vLLM would keep one back for its scheduler)
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        result = WORKERS[args.worker](args.steps, scratch / args.worker)
        print("RESULT " + json.dumps({**result, "peak_rss_mb": _peak_rss_mb()}), flush=True)
        return
    machine = describe()  # before the run: the load it started under
    anchors = Anchors()
    previous = RESULTS / "grpo_vs_trl.json"
    runs = json.loads(previous.read_text())["runs"] if args.only and previous.is_file() else {}
    for name in args.only or WORKERS:
        lacking = [a for a in NEEDS[name] if not anchors.available(a)]
        runs[name] = {"skipped": anchors.skipped[lacking[0]]} if lacking else run_worker(name, args.steps, scratch)
    write_results(args, runs, machine, anchors, RESULTS / "grpo_vs_trl.json")


def write_results(args, runs: dict, machine: dict, anchors: Anchors, out: Path) -> None:
    from importlib.metadata import PackageNotFoundError, version

    from tinyeval.io import write_json

    try:
        trl_name = f"TRL {version('trl')} GRPOTrainer (HF generate)"
    except PackageNotFoundError:
        trl_name = "TRL GRPOTrainer (HF generate)"
    ok = {k: v for k, v in runs.items() if "steps_per_min" in v}
    like = ok["tinyeval-hf"]["steps_per_min"] / ok["trl-hf"]["steps_per_min"] if {"tinyeval-hf", "trl-hf"} <= ok.keys() \
        else None
    trl_best = max((k for k in ("trl-hf", "trl-vllm") if k in ok), key=lambda k: ok[k]["steps_per_min"], default=None)
    te_best = max((k for k in ("tinyeval-hf", "tinyeval-vllm") if k in ok), key=lambda k: ok[k]["steps_per_min"],
                  default=None)
    best = ok[te_best]["steps_per_min"] / ok[trl_best]["steps_per_min"] if te_best and trl_best else None
    vllm = ok["tinyeval-vllm"]["steps_per_min"] / ok[trl_best]["steps_per_min"] \
        if "tinyeval-vllm" in ok and trl_best else None
    cpu_like = ok["trl-hf"]["cpu_s_per_step_incl_setup"] / ok["tinyeval-hf"]["cpu_s_per_step_incl_setup"] \
        if all("cpu_s_per_step_incl_setup" in ok.get(k, {}) for k in ("tinyeval-hf", "trl-hf")) else None
    result = {
        "name": "grpo_vs_trl", "metric": "GRPO optimizer steps per minute, like for like (both on HF generate)",
        "unit": "steps/min", "tinyeval": ok.get("tinyeval-hf", {}).get("steps_per_min"),
        "anchor_name": trl_name,
        "anchor": ok.get("trl-hf", {}).get("steps_per_min"), "ratio": like, "target": 1.5,
        "tinyeval_vllm_vs_trl_best": vllm,
        "cpu_ratio_like_for_like": cpu_like,  # TRL CPU-s per step / tinyeval's (> 1: tinyeval cheaper)
        "best_vs_best": best, "trl_best_mode": trl_best,
        "tinyeval_best_mode": te_best, "runs": runs, "settings": {**SETTINGS, "steps": args.steps, "threads": THREADS},
        "command": ".venv/bin/python benchmarks/grpo_vs_trl.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine, **anchors.fields(),
    }
    write_json(out, result)
    print(json.dumps({k: result[k] for k in ("tinyeval", "anchor", "ratio", "tinyeval_vllm_vs_trl_best")}))


if __name__ == "__main__":
    main()
