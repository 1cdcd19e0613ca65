"""Is tinyeval's default (backend, dtype) the fastest way to generate on this device? One run, every choice.

    .venv/bin/python benchmarks/generation_speed.py [--prompts 20] [--new-tokens 128]

`tinyeval eval`, the probes and the GRPO rollouts pick `--backend auto` (`eval.backends.default_backend`) and
`--dtype auto` (`models.default_dtype`) per device. Those rules were set from one-off measurements on an AVX2
EPYC; this machine kind has since also been an AMX Xeon, where bf16 is native. This script measures every
(backend, dtype) pair on the same GSM8K prompts (chat template, greedy, exactly `--new-tokens` per prompt: EOS
ignored, so every pair does the same work), each in a fresh process with torch's default threads, and reports
generation tokens/s (model load and vLLM engine start are timed separately, not counted).

Record: tinyeval = tokens/s of the default pair; anchor = the fastest other pair; ratio > 1 (or = 1) means the
default is the right choice here. Without vLLM (an anchor: `make bench`, benchmarks/anchors.py) the HF pairs
run alone and the record names the skip under `skipped`. Writes benchmarks/results/generation_speed.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from anchors import Anchors
from machine import describe

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def prompts(n: int) -> list[str]:
    from transformers import AutoTokenizer

    from tinyeval.data import load
    from tinyeval.models import embedded_model_dir

    tok = AutoTokenizer.from_pretrained(embedded_model_dir())
    return [tok.apply_chat_template([{"role": "user", "content": r["question"]}], tokenize=False,
                                    add_generation_prompt=True) for r in load("gsm8k", "test").rows[:n]]


def hf_worker(dtype: str, texts: list[str], new_tokens: int) -> dict:
    import torch

    from tinyeval.models import default_device, load_model

    t0 = time.perf_counter()
    model, tok = load_model("smollm2-135m", dtype=dtype, device=default_device())
    load_s = time.perf_counter() - t0
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    kw = {"do_sample": False, "pad_token_id": tok.pad_token_id}
    with torch.inference_mode():
        model.generate(**enc, max_new_tokens=2, **kw)  # warm-up: first-call allocations and kernel choices
        t0 = time.perf_counter()
        out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
        gen_s = time.perf_counter() - t0
    tokens = (out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0]
    return {"load_s": load_s, "gen_s": gen_s, "tokens": tokens, "threads": torch.get_num_threads()}


def vllm_worker(dtype: str, texts: list[str], new_tokens: int) -> dict:
    from vllm import SamplingParams

    from tinyeval.models import embedded_model_dir
    from tinyeval.vllm import make_llm

    t0 = time.perf_counter()
    llm = make_llm(embedded_model_dir(), dtype, seed=0, eager=True)  # as tinyeval eval
    load_s = time.perf_counter() - t0
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True)
    llm.generate(texts[:1], SamplingParams(max_tokens=2), use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate(texts, params, use_tqdm=False)
    gen_s = time.perf_counter() - t0
    return {"load_s": load_s, "gen_s": gen_s, "tokens": sum(len(o.outputs[0].token_ids) for o in outs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: "backend:dtype", prints one JSON line
    args = ap.parse_args()
    os.environ.setdefault("TINYEVAL_DATA", str(REPO.parent / "shared" / "data"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        backend, dtype = args.worker.split(":")
        fn = hf_worker if backend == "hf" else vllm_worker
        print("RESULT " + json.dumps(fn(dtype, prompts(args.prompts), args.new_tokens)), flush=True)
        return

    from tinyeval.eval.backends import default_backend
    from tinyeval.io import write_json
    from tinyeval.models import default_dtype

    machine = describe()
    anchors = Anchors()
    backends = ["hf"] + (["vllm"] if anchors.available("vLLM") else [])
    runs: dict[str, dict] = {}
    dtypes = sorted({"float32", "bfloat16", default_dtype()})  # float16 on GPUs without bf16
    for pair in [f"{b}:{d}" for b in backends for d in dtypes]:
        cmd = [sys.executable, __file__, "--worker", pair, "--prompts", str(args.prompts),
               "--new-tokens", str(args.new_tokens)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            runs[pair] = {"error": (proc.stderr or proc.stdout)[-800:]}
            print(f"{pair:16s} failed", flush=True)
            continue
        r = json.loads(line[len("RESULT "):])
        r["tokens_per_s"] = round(r["tokens"] / r["gen_s"], 1)
        runs[pair] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}
        print(f"{pair:16s} {r['tokens_per_s']:8.1f} tok/s  (load {r['load_s']:.1f} s)", flush=True)

    default = f"{default_backend()}:{default_dtype()}"
    ok = {p: r["tokens_per_s"] for p, r in runs.items() if "tokens_per_s" in r}
    others = {p: v for p, v in ok.items() if p != default}
    best_other = max(others, key=others.get) if others else None
    ratio = ok[default] / others[best_other] if default in ok and best_other else None
    print(f"default {default}: {ok.get(default)} tok/s; fastest other {best_other}: {others.get(best_other)} tok/s"
          + (f"; ratio {ratio:.2f}" if ratio else ""))
    write_json(REPO / "benchmarks" / "results" / "generation_speed.json", {
        "name": "generation_speed",
        "metric": f"generation tokens/s, SmolLM2-135M-Instruct, {args.prompts} GSM8K chat prompts in one batch x "
                  f"{args.new_tokens} new tokens, greedy, torch default threads",
        "unit": "tokens/s",
        "tinyeval": ok.get(default), "default": default,
        "anchor_name": f"fastest other (backend, dtype): {best_other}", "anchor": others.get(best_other),
        "ratio": round(ratio, 3) if ratio else None,
        "target": ">= 1.0 (tinyeval's default backend and dtype are the fastest measured on this device)",
        "runs": runs,
        "command": "python benchmarks/generation_speed.py " + " ".join(sys.argv[1:]),
        "machine": machine, "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **anchors.fields(),
    })


if __name__ == "__main__":
    main()
