"""Training memory: what one GRPO loss forward + backward holds at its peak, before and after the memory work of
the GPU issue, measured on the CPU, plus the budget of the GPU check's Qwen2.5-1.5B step computed from its config.

    nice -n 19 .venv/bin/python benchmarks/train_memory.py            # ~1 min, writes results/train_memory.json

Measured: the peak resident set size of a child process over its resident size just before the step (the peak
is reset there through /proc/self/clear_refs; large allocations go through mmap, so freed memory leaves the RSS
at once). Each variant runs in its own process, on a random Qwen2-architecture model with TinyLoRA (13
parameters) attached, no rollouts: only the trainer's forward + backward, where the GPU check found the peak.

    naive        log_softmax(logits.float()).gather: tinyeval's log-probs until this change
    selected     `train.logprobs.selected_logprobs` (no fp32 copy of the full-vocabulary logits)
    selected+gc  the same with `--gradient-checkpointing` (`train.memory`)

Shapes: "vocab" has Qwen2.5's vocabulary on a narrow model in bf16 (the logits dominate), "activations" a
deeper, wider fp32 model with a small vocabulary (the activations dominate). Loss and v's gradient must agree
across the variants (recorded). Memory, not time: the 2-core machine's timings say nothing about a GPU.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import describe  # noqa: E402  (benchmarks/machine.py)

SHAPES = {
    "vocab": dict(model=dict(vocab_size=151936, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1), dtype="bfloat16", n=16, p=40, t=64),
    "activations": dict(model=dict(vocab_size=2048, hidden_size=256, intermediate_size=1024, num_hidden_layers=8,
                                   num_attention_heads=4, num_key_value_heads=2), dtype="float32", n=16, p=192, t=64),
}
VARIANTS = ("naive", "selected", "selected+gc")
MiB = 1 << 20


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def naive_logprobs(model, input_ids, attention_mask, n_completion):
    """tinyeval's `token_logprobs` before this change (the reference the new one is measured against)."""
    import torch

    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask.long(), position_ids=positions,
                   logits_to_keep=n_completion + 1).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, input_ids[:, -n_completion:].unsqueeze(-1)).squeeze(-1)


def worker(variant: str, shape: dict) -> dict:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.train.logprobs import token_logprobs
    from tinyeval.train.memory import checkpointing, enable_gradient_checkpointing

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = Qwen2ForCausalLM(Qwen2Config(**shape["model"], tie_word_embeddings=True)).to(getattr(torch, shape["dtype"]))
    handle = attach(model.eval(), AdapterConfig(method="tinylora", params=13, rank=2))
    with torch.no_grad():
        handle.trainable_parameters()[0].normal_(0, 1e-3)
    n, p, t = shape["n"], shape["p"], shape["t"]
    ids = torch.randint(0, model.config.vocab_size, (n, p + t))
    mask = torch.ones(n, p + t, dtype=torch.bool)
    if variant == "selected+gc":
        enable_gradient_checkpointing(model)
    logprobs = naive_logprobs if variant == "naive" else token_logprobs
    base = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) restarts from the current RSS
    with checkpointing(model):
        logp = logprobs(model, ids, mask, t)
    loss = -(logp * torch.linspace(-1, 1, n)[:, None]).mean()
    loss.backward()
    return {"peak_over_start_mib": round((_status_kib("VmHWM") - base) / 1024, 1), "loss": float(loss.detach()),
            "v_grad": [round(x, 9) for x in handle.trainable_parameters()[0].grad.flatten().tolist()]}


def qwen15_budget() -> dict:
    """The GPU check's step (Qwen2.5-1.5B, bf16, 8 prompts x 4 samples x 64 new tokens) from the config alone."""
    from tinyeval.adapters import DEFAULT_TARGETS
    from tinyeval.models import load_config, meta_model
    from tinyeval.vllm import kv_bytes_per_token

    config = load_config("qwen2.5-1.5b")
    model = meta_model(config)
    weights = sum(p.numel() for p in model.parameters()) * 2
    adapted = sum(m.weight.numel() for name, m in model.named_modules()
                  if name.rsplit(".", 1)[-1] in DEFAULT_TARGETS) * 2
    n, t, vocab = 32, 64, config.vocab_size
    return {"weights_gib": round(weights / 2**30, 2),
            "for_generation_copy_gib": round(adapted / 2**30, 2),  # TinyLoRA's kept copy of the adapted weights
            "logits_bf16_gib": round(n * (t + 1) * vocab * 2 / 2**30, 2),  # the model's output [32, 65, V]
            "logsoftmax_fp32_gib": round(n * t * vocab * 4 / 2**30, 2),  # one fp32 [32, 64, V] tensor
            "kv_cache_kib_per_token": kv_bytes_per_token(config, 2) / 1024}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        print(json.dumps(worker(sys.argv[2], json.loads(sys.argv[3]))))
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    results: dict = {}
    for name, shape in SHAPES.items():
        results[name] = {"shape": shape}
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "worker", variant, json.dumps(shape)], env=env,
                                 capture_output=True, text=True, check=True)
            results[name][variant] = json.loads(out.stdout.strip().splitlines()[-1])
            print(name, variant, results[name][variant]["peak_over_start_mib"], "MiB", flush=True)
    record = {"date": datetime.date.today().isoformat(), "machine": describe(), "shapes": results,
              "qwen2.5-1.5b_step_budget": qwen15_budget()}
    from tinyeval.io import write_json

    write_json(REPO / "benchmarks" / "results" / "train_memory.json", record)
    print(json.dumps(record["qwen2.5-1.5b_step_budget"]))


if __name__ == "__main__":
    main()
