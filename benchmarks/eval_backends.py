"""Benchmark: GSM8K on SmolLM2-135M-Instruct, lm-eval out of the box vs tinyeval's backends, in one run.

    .venv/bin/python benchmarks/eval_backends.py --limit 200

Variants (same task YAML, same prompts: chat template, zero-shot CoT, 512 new tokens at most):
  anchor        `lm_eval run --model hf --model_args pretrained=DIR --device cpu` as a user runs it: lm-eval's
                default batch size (1) and dtype ("auto"), our gsm8k task via --include_path
  hf            `tinyeval eval --backend hf`: dtype auto (fp32 on an AVX2 CPU, bf16 where the hardware has
                it), batch 20, adapter merged in memory
  vllm          `tinyeval eval --backend vllm`: eager engine, engine seed, dtype auto
  vllm-lora     the same serving a rank-2 LoRA with `--no-merge` (zero-initialised B, so scores must equal
                `vllm`'s; the speed is the LoRA kernels' cost, which is why CPU defaults to a merged checkpoint)
"tinyeval" in the result is tinyeval's default backend for this device (`--backend auto`). Every variant is
a fresh CLI process, so each wall time includes imports and model load, as a user would see. A variant whose
anchor package is missing (lm-eval's CLI for `anchor`, vLLM for the vllm ones; `make bench`,
benchmarks/anchors.py) is skipped in one line kept under `skipped`; the others are still measured. Flips count
the items whose greedy answer (correct or not) differs from the anchor's: bf16 vs fp32 rounding and
batched padding may change a few.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from anchors import Anchors
from machine import describe

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))


def run(cmd: list[str]) -> float:
    """Run one variant as its own process; returns its wall-clock seconds."""
    print("$", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"variant failed ({proc.returncode}):\n{proc.stdout[-3000:]}")
    return seconds


def anchor(model_dir: Path, limit: int, out: Path, max_gen_toks: int | None) -> dict:
    gen = ["--gen_kwargs", f"max_gen_toks={max_gen_toks}"] if max_gen_toks else []
    seconds = run([str(BIN / "lm_eval"), "run", "--model", "hf", "--model_args", f"pretrained={model_dir}",
                   "--device", "cpu", "--tasks", "gsm8k", "--include_path", str(REPO / "tasks"),
                   "--apply_chat_template", "--fewshot_as_multiturn", "true", "--limit", str(limit),
                   "--log_samples", "--output_path", str(out), "--seed", "0", *gen])
    result = json.loads(next(out.rglob("results_*.json")).read_text())["results"]["gsm8k"]
    samples = [json.loads(x) for x in next(out.rglob("samples_gsm8k_*.jsonl")).read_text().splitlines()]
    return {"seconds": seconds, "value": result["exact_match,flexible-extract"],
            "stderr": result["exact_match_stderr,flexible-extract"],
            "strict": result["exact_match,strict-match"], "responses": _responses(samples)}


def tinyeval(model: str, limit: int, out: Path, backend: str, max_gen_toks: int | None,
             adapter: Path | None = None) -> dict:
    cmd = [str(BIN / "tinyeval"), "eval", "--model", model, "--tasks", "gsm8k", "--limit", str(limit),
           "--backend", backend, "--out", str(out), "--json"]
    cmd += ["--max-gen-toks", str(max_gen_toks)] if max_gen_toks else []
    seconds = run(cmd + (["--adapter", str(adapter), "--no-merge"] if adapter else []))  # LoRA kernels, not merged
    record = json.loads((out / "results.json").read_text())
    task = record["tasks"]["gsm8k"]
    samples = [json.loads(x) for x in (out / "samples" / "gsm8k.jsonl").read_text().splitlines()]
    return {"seconds": seconds, "backend": record["backend"], "value": task["value"], "stderr": task["stderr"],
            "strict": task["strict"], "format_rate": task["format_rate"], "responses": _responses(samples)}


def _responses(samples: list[dict]) -> dict[int, tuple[str, int]]:
    """doc_id -> (greedy completion, lenient correctness)."""
    return {s["doc_id"]: (s["resps"][0][0], int(s["exact_match"])) for s in samples
            if s["filter"] == "flexible-extract"}


def zero_lora(model_dir: Path, out: Path) -> Path:
    """A rank-2 PEFT LoRA on every linear layer with B = 0: served for real, changes nothing."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    cfg = LoraConfig(r=2, lora_alpha=2, target_modules="all-linear")
    get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), cfg).save_pretrained(out)
    return out


def tokens_per_second(variant: dict, tokenizer) -> float:
    tokens = sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r, _ in variant["responses"].values())
    return tokens / variant["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--max-gen-toks", type=int, default=None, help="override the task's 512 (all variants)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "eval_backends.json")
    parser.add_argument("--skip", default="", help="comma-separated variants to skip (anchor,hf,vllm,vllm-lora)")
    args = parser.parse_args()
    machine = describe()  # taken before the run: the load it started under
    os.environ.setdefault("TINYEVAL_DATA", str(REPO.parent / "shared" / "data"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from transformers import AutoTokenizer

    from tinyeval.eval.backends import default_backend
    from tinyeval.io import write_json
    from tinyeval.models import embedded_model_dir

    model_dir, skip = embedded_model_dir(), set(args.skip.split(","))
    anchors = Anchors()
    tok = AutoTokenizer.from_pretrained(model_dir)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        work = Path(tmp)
        if "anchor" not in skip and anchors.available("lm-eval"):
            results["anchor"] = anchor(model_dir, args.limit, work / "anchor", args.max_gen_toks)
        for name, backend, adapter in (("hf", "hf", None), ("vllm", "vllm", None),
                                       ("vllm-lora", "vllm", "lora")):
            if name not in skip and (backend != "vllm" or anchors.available("vLLM")):
                lora = zero_lora(model_dir, work / "lora") if adapter else None
                results[name] = tinyeval("smollm2-135m", args.limit, work / name, backend, args.max_gen_toks, lora)
    default = default_backend()
    ours, base = results.get(default), results.get("anchor")
    for name, v in results.items():
        v["tokens_per_s"] = round(tokens_per_second(v, tok), 1)
        if base is not None and name != "anchor":
            other = {i: base["responses"].get(i, ("", -1)) for i in v["responses"]}
            v["changed_completions_vs_anchor"] = sum(v["responses"][i][0] != other[i][0] for i in other)
            v["flips_vs_anchor"] = sum(v["responses"][i][1] != other[i][1] for i in other)
            v["within_one_stderr"] = abs(v["value"] - base["value"]) <= max(base["stderr"], v["stderr"])
        print(f"{name:10s} {v['seconds']:8.1f} s  exact_match {v['value']:.3f} ± {v['stderr']:.3f}  "
              f"{v['tokens_per_s']:6.1f} tok/s" + (f"  flips {v['flips_vs_anchor']}" if "flips_vs_anchor" in v else ""))
    ratio = base["seconds"] / ours["seconds"] if ours and base else None
    if ratio:
        print(f"tinyeval default ({default}) is {ratio:.2f}x lm-eval out of the box (target >= 5x)")
    record = {
        "name": "eval_backends",
        "metric": f"wall-clock seconds for GSM8K zero-shot CoT, SmolLM2-135M-Instruct, limit {args.limit}, "
                  f"max_gen_toks {args.max_gen_toks or 512}",
        "unit": "s",
        "tinyeval": round(ours["seconds"], 1) if ours else None,
        "anchor_name": "lm-eval 0.4.13 `lm_eval run --model hf` out of the box (batch 1, dtype auto), same task",
        "anchor": round(base["seconds"], 1) if base else None,
        "ratio": round(ratio, 2) if ratio else None,
        "target": 5.0,
        "default_backend": default,
        "limit": args.limit,
        "max_gen_toks": args.max_gen_toks or 512,
        "variants": {n: {k: (round(x, 4) if isinstance(x, float) else x) for k, x in v.items() if k != "responses"}
                     for n, v in results.items()},
        "command": shlex.join(["python", "benchmarks/eval_backends.py", *sys.argv[1:]]),
        "machine": machine, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **anchors.fields(),
    }
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
