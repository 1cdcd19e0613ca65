"""tinyeval GPU check: one subcommand per step of run.sh, each run in its own process.

    python gpucheck.py env|prep|grpo|trl|svd|overhead|summarize

Every subcommand writes its result to $WORK/<name>.json (the GRPO ones also after every step, so a step killed
by its time box still leaves what it measured) and prints a RESULT line. SMALL=1 shrinks every model and matrix
so that a CPU-only dry run takes a minute or two. Timings on the GPU use torch.cuda.synchronize around timers.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("WORK", "/tmp/gpucheck"))
OUT = Path(os.environ.get("OUT", str(HERE / "out")))
SMALL = os.environ.get("SMALL", "0") == "1"
RAND = Path(os.environ.get("RAND_MODEL", "/tmp/rand_model"))
TOK = WORK / "smollm2-tok"  # the carried SmolLM2 tokenizer, unpacked
STEPS = int(os.environ.get("GRPO_STEPS", "3" if SMALL else "8"))
# GRPO settings (benchmarks/grpo_vs_trl.py's kind, bigger batch on a GPU); both sides get the same ones
SETTINGS = (dict(prompts_per_step=2, group_size=4, max_new_tokens=16, lr=2e-3, temperature=1.0) if SMALL else
            dict(prompts_per_step=8, group_size=4, max_new_tokens=64, lr=2e-3, temperature=1.0))
PARAMS = 13
QWEN7B_LAYER = {"q_proj": (3584, 3584), "k_proj": (512, 3584), "v_proj": (512, 3584), "o_proj": (3584, 3584),
                "gate_proj": (18944, 3584), "up_proj": (18944, 3584), "down_proj": (3584, 18944)}


def save(name: str, obj: dict, quiet: bool = False) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    tmp = WORK / f".{name}.json.tmp"
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(WORK / f"{name}.json")
    if not quiet:
        print(f"RESULT {name} {json.dumps(obj, default=str)[:3000]}", flush=True)


def dev() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_name() -> str:
    return "bfloat16" if dev() == "cuda" else "float32"  # bf16 is emulated (slow) on an AVX2 CPU


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def gpu_mem() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)}


def mean_after_first(xs: list[float]) -> float | None:
    timed = xs[1:] or xs
    return round(statistics.fmean(timed), 4) if timed else None


# ---- env ----------------------------------------------------------------------------------------------

def cmd_env() -> None:
    import importlib.metadata as md
    import platform

    out: dict = {"python": platform.python_version(), "executable": sys.executable, "small": SMALL}
    for name in ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "lm_eval", "numpy", "numba",
                 "pyarrow", "huggingface_hub", "tokenizers", "safetensors", "pytest", "pytest-xdist",
                 "pytest-timeout", "rapidfuzz", "platformdirs", "math-verify", "zstandard", "fsspec", "pandas"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    import torch

    out["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(device=p.name, capability=f"{p.major}.{p.minor}", gpu_mem_gib=round(p.total_memory / 2**30, 1),
                   torch_cuda=torch.version.cuda, bf16=torch.cuda.is_bf16_supported())
    try:
        from peft import TinyLoraConfig  # noqa: F401

        out["peft_tinylora"] = True
    except ImportError as e:
        out["peft_tinylora"] = f"missing: {e}"
    import tinyeval
    import tinyeval.cli  # noqa: F401
    from tinyeval.models import default_device, default_dtype

    out["tinyeval_from"] = str(Path(tinyeval.__file__).parent)
    out["tinyeval_default_device"] = default_device()
    out["tinyeval_default_dtype"] = default_dtype()
    from tinyeval.adapters import METHODS

    out["tinyeval_adapter_methods"] = sorted(METHODS)
    save("env", out)


# ---- prep: tokenizer, SmolLM2 stand-in, random Qwen2.5-1.5B-shaped model -------------------------------

def unpack_tokenizer() -> Path:
    if (TOK / "tokenizer.json").is_file():
        return TOK
    TOK.mkdir(parents=True, exist_ok=True)
    for f in (HERE / "smollm2").iterdir():
        if f.name == "tokenizer.json.gz":
            (TOK / "tokenizer.json").write_bytes(gzip.decompress(f.read_bytes()))
        else:
            shutil.copy(f, TOK / f.name)
    return TOK


def _tokenizer_files(dst: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(TOK / name, dst / name)


def cmd_prep() -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from tinyeval.models import ALIASES, EMBEDDED_ALIAS, cache_dir

    res: dict = {}
    unpack_tokenizer()
    tok = AutoTokenizer.from_pretrained(TOK)
    res["tokenizer"] = {"vocab": len(tok), "eos": tok.eos_token, "pad": tok.pad_token,
                        "chat_template": bool(tok.chat_template)}
    d = dev()
    # 1) SmolLM2 stand-in for the tests' `smollm2_dir` fixture: the real tokenizer and config, RANDOM weights
    #    (the 270 MB of real weights do not travel). Only the non-slow tests run, which use it for the tokenizer.
    standin = cache_dir() / "models" / f"{EMBEDDED_ALIAS}-bf16"
    t0 = time.perf_counter()
    if not (standin / "model.safetensors").is_file():
        cfg = AutoConfig.from_pretrained(TOK)
        torch.manual_seed(0)
        with torch.device(d):
            m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        tmp = standin.with_name(standin.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        m.save_pretrained(tmp)
        _tokenizer_files(tmp)
        shutil.copy(TOK / "generation_config.json", tmp / "generation_config.json")
        tmp.rename(standin)
        del m
    res["smollm2_standin"] = {"dir": str(standin), "seconds": round(time.perf_counter() - t0, 1),
                              "weights": "random (stand-in; tokenizer and config are SmolLM2's)"}
    # 2) the random model: Qwen2.5-1.5B-Instruct's shape (tinyeval.models.ALIASES), SmolLM2's vocab and ids
    t0 = time.perf_counter()
    arch = dict(ALIASES[os.environ.get("SHAPE", "qwen2.5-1.5b")].arch)
    arch.update(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    if SMALL:
        arch.update(num_hidden_layers=2, hidden_size=256, intermediate_size=512, num_attention_heads=4,
                    num_key_value_heads=2)
    cfg = AutoConfig.for_model(**arch)
    torch.manual_seed(0)
    with torch.device(d):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    n = sum(p.numel() for p in model.parameters())
    shutil.rmtree(RAND, ignore_errors=True)
    model.save_pretrained(RAND)
    tok.save_pretrained(RAND)
    res["rand_model"] = {"dir": str(RAND), "params": n, "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
                         "intermediate": cfg.intermediate_size, "heads": cfg.num_attention_heads,
                         "kv_heads": cfg.num_key_value_heads, "vocab": cfg.vocab_size, "dtype": "bfloat16",
                         "tie_word_embeddings": cfg.tie_word_embeddings,
                         "seconds": round(time.perf_counter() - t0, 1)}
    save("prep", res)


# ---- GRPO: tinyeval ---------------------------------------------------------------------------------------

def cmd_grpo() -> None:

    from tinyeval.train.recipes import build, run

    gc = os.environ.get("GRPO_GC", "0") == "1"  # the same run with --gradient-checkpointing
    tag = "grpo_tinyeval_gc" if gc else "grpo_tinyeval"
    out = WORK / tag.replace("_", "-")
    shutil.rmtree(out, ignore_errors=True)
    n = SETTINGS["prompts_per_step"] * SETTINGS["group_size"]
    threads = 1 if SMALL else min(16, os.cpu_count() or 1)
    # like grpo_vs_trl.py's worker_tinyeval: the "cpu" preset (arith task, engine hf, no KL, mu = 1, token-mean)
    # with the shared SETTINGS; here on the random model, TinyLoRA 13 parameters, one micro-batch of all n
    # sequences and one generate batch (TRL: per_device_train_batch_size = generation_batch_size = n)
    loop, grpo = build("grpo", "cpu", model=str(RAND), method="tinylora", params=PARAMS, rank=2, steps=STEPS, engine="hf",
                       checkpoint_every=1000, threads=threads, dtype=dtype_name(), micro_batch=n, gen_batch=n,
                       gradient_checkpointing=gc, **SETTINGS)
    res: dict = {"settings": {**SETTINGS, "steps": STEPS, "params": PARAMS, "engine": "hf", "dtype": loop.dtype,
                              "micro_batch": n, "device": dev(), "task": loop.task, "reward": grpo.reward}}
    t0 = time.perf_counter()
    try:
        summary = run("grpo", loop, grpo, out, progress=False)
        res["summary"] = {k: summary.get(k) for k in ("steps", "engine", "trainable", "seconds", "startup",
                                                       "peak_mem_bytes", "peak_mem_kind")}
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    res["wall_incl_setup_s"] = round(time.perf_counter() - t0, 1)
    res.update(grpo_records(out))
    meta = out / "adapter" / "adapter.json"
    if meta.is_file():
        m = json.loads(meta.read_text())
        res["adapter"] = {"svd": m.get("svd"), "plan": m.get("plan")}
    res["gpu"] = gpu_mem()
    res["gradient_checkpointing"] = gc
    save(tag, res)


def grpo_records(out: Path) -> dict:
    path = out / "records.jsonl"
    if not path.is_file():
        return {}
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if not recs:
        return {}
    step_s = [r["step_s"] for r in recs]
    pick = lambda k: [round(r[k], 4) for r in recs if k in r]  # noqa: E731
    return {"step_s": [round(x, 3) for x in step_s], "s_per_step_excl_first": mean_after_first(step_s),
            "gen_s": pick("gen_s"), "gen_tok_per_s": pick("gen_tok_per_s"), "gen_tokens": pick("gen_tokens"),
            "response_len": pick("response_len"), "reward_mean": pick("reward_mean"), "loss": pick("loss"),
            "grad_norm": pick("grad_norm")}


# ---- GRPO: TRL, like for like (benchmarks/grpo_vs_trl.py worker_trl) ----------------------------------------

def cmd_trl() -> None:
    import torch

    res: dict = {"settings": {**SETTINGS, "steps": STEPS, "params": PARAMS, "device": dev()}}
    try:
        import trl
        from datasets import Dataset
        from peft import TinyLoraConfig
        from transformers import TrainerCallback
        from trl import GRPOConfig, GRPOTrainer
    except Exception as e:
        res["error"] = f"import: {type(e).__name__}: {e}"
        save("grpo_trl", res)
        return
    from tinyeval.grading import grade_gsm8k
    from tinyeval.models import load_model
    from tinyeval.adapters import DEFAULT_TARGETS as ALL_LINEAR
    from tinyeval.train.tasks import get_task

    res["trl"] = trl.__version__
    if SMALL:
        torch.set_num_threads(1)
    t0 = time.perf_counter()
    # loaded straight onto the device, so PEFT's TinyLoRA init (full SVD per module) runs where tinyeval's does
    model, tok = load_model(str(RAND), dtype=dtype_name(), device=dev())
    examples = get_task("arith").examples(tok, "train")[:64]
    data = Dataset.from_list([{"prompt": e.prompt, "gold": e.gold} for e in examples])

    def strict(completions, gold, **kw):
        return [float(grade_gsm8k(c, g).strict) for c, g in zip(completions, gold)]

    n_modules = sum(1 for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in ALL_LINEAR)
    peft_cfg = TinyLoraConfig(r=2, u=1, weight_tying=1.0 - PARAMS / n_modules, target_modules=list(ALL_LINEAR))
    n = SETTINGS["prompts_per_step"] * SETTINGS["group_size"]
    gpu = dev() == "cuda"
    args = GRPOConfig(output_dir=str(WORK / "grpo-trl"), max_steps=STEPS, per_device_train_batch_size=n,
                      num_generations=SETTINGS["group_size"], generation_batch_size=n,
                      max_completion_length=SETTINGS["max_new_tokens"], learning_rate=SETTINGS["lr"],
                      temperature=SETTINGS["temperature"], beta=0.0, loss_type="dapo", num_iterations=1,
                      use_cpu=not gpu, bf16=gpu, report_to="none", save_strategy="no", logging_steps=1,
                      use_vllm=False, dataloader_num_workers=0, seed=0,
                      gradient_checkpointing=os.environ.get("TRL_GC", "1") == "1")
    res["settings"].update(gradient_checkpointing=args.gradient_checkpointing, bf16=args.bf16,
                           per_device_train_batch_size=n, note="TRL defaults otherwise, as worker_trl")
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if not times:
                sync()
                times.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            sync()
            times.append(time.perf_counter())
            step_s = [b - a for a, b in zip(times, times[1:])]
            res.update(step_s=[round(x, 3) for x in step_s], s_per_step_excl_first=mean_after_first(step_s),
                       gpu=gpu_mem())
            save("grpo_trl", res, quiet=True)  # partial result survives a time-out
            print(f"trl step {len(step_s)}: {step_s[-1]:.3f}s", flush=True)

    try:
        t1 = time.perf_counter()
        trainer = GRPOTrainer(model=model, reward_funcs=[strict], args=args, train_dataset=data,
                              processing_class=tok, peft_config=peft_cfg, callbacks=[Clock()])
        res["trainer_init_s"] = round(time.perf_counter() - t1, 1)  # includes PEFT's full-SVD TinyLoRA init
        res["trainable"] = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        save("grpo_trl", res, quiet=True)
        trainer.train()
        logs = [h for h in trainer.state.log_history if "reward" in h]
        res["reward"] = [round(h["reward"], 4) for h in logs]
        res["completion_len"] = [round(h.get("completions/mean_length", 0), 1) for h in logs]
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    res["wall_incl_setup_s"] = round(time.perf_counter() - t0, 1)
    res["gpu"] = gpu_mem()
    save("grpo_trl", res)


# ---- SVD init: tinyeval's top_svd vs torch.linalg.svd (PEFT's way) on one Qwen2.5-7B layer ----------------

def qwen7b_like(shape: tuple[int, int], seed: int, device: str):
    """benchmarks/svd_init.py's matrices, in fp32 on `device`: a Gaussian bulk (spectrum edge ~1 + sqrt(m/n))
    plus a rank-8 decaying spike with sigma2/sigma3 ~ 1.03, the hard case of real weights."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    m, n = shape
    W = torch.randn(m, n, generator=g, device=device) / max(m, n) ** 0.5
    edge = 1 + (min(m, n) / max(m, n)) ** 0.5
    spike = edge * torch.tensor([4.0, 2.0, 1.94, 1.9, 1.8, 1.7, 1.6, 1.5], device=device)
    U = torch.linalg.qr(torch.randn(m, 8, generator=g, device=device))[0]
    V = torch.linalg.qr(torch.randn(n, 8, generator=g, device=device))[0]
    return (W + U @ torch.diag(spike) @ V.T).contiguous()


def cmd_svd() -> None:
    import tempfile

    import torch

    from tinyeval.adapters import svd as S
    from tinyeval.adapters import svd_kernels as K
    from tinyeval.adapters.svd import SvdSettings, cached_top_svd, top_svd

    d = dev()
    shapes = {k: ((m // 8, n // 8) if SMALL else (m, n)) for k, (m, n) in QWEN7B_LAYER.items()}
    mats = {k: qwen7b_like(s, i, d) for i, (k, s) in enumerate(shapes.items())}
    # warm-up matrix: the smallest shape that takes tinyeval's Krylov path (min side > SvdSettings.exact_below)
    warm = qwen7b_like(min((s for s in shapes.values() if min(s) > 64), key=lambda s: s[0] * s[1]), 99, d)
    sync()
    # instrument: does tinyeval's path use the compiled numba CPU kernels, or the exact SVD, on this device?
    calls = {"numba_kernels": 0, "exact": 0}
    for name in ("tall4", "wide4", "project", "orthonormalize"):
        f = getattr(K, name)
        setattr(K, name, (lambda f: lambda *a, **k: (calls.__setitem__("numba_kernels", calls["numba_kernels"] + 1),
                                                     f(*a, **k))[1])(f))
    exact = S._exact

    def counted_exact(W, r):
        calls["exact"] += 1
        return exact(W, r)

    S._exact = counted_exact

    def peft(W):  # what PEFT's TinyLoraLayer._init_svd computes per module
        U, Sv, Vh = torch.linalg.svd(W.float(), full_matrices=False)
        return Sv[:2]

    def loop(fn, progress: str | None = None):
        fn(warm)  # one untimed warm-up call (library set-up) on a matrix outside the timed set (no cache hit)
        sync()
        outs, per = [], []
        t0 = time.perf_counter()
        for name, W in mats.items():
            t = time.perf_counter()
            outs.append(fn(W))
            sync()
            per.append(time.perf_counter() - t)
            if progress:
                print(f"  {progress} {name} {tuple(W.shape)}: {per[-1]:.3f}s", flush=True)
        return outs, per, time.perf_counter() - t0

    res: dict = {"device": d, "dtype": "float32", "rank": 2, "shapes": {k: list(s) for k, s in shapes.items()},
                 "matrices": "benchmarks/svd_init.py qwen7b_like (Gaussian bulk + decaying rank-8 spike), fp32"}
    # tinyeval first: if torch.linalg.svd is slow here, a time-out still leaves tinyeval's side measured
    t_out, t_per, t_tot = loop(lambda W: top_svd(W, 2))
    res["tinyeval_top_svd"] = {"total_s": round(t_tot, 4), "per_matrix_s": [round(x, 4) for x in t_per],
                               "methods": [o.method for o in t_out], "passes": [o.passes for o in t_out],
                               "out_devices": sorted({str(o.U.device) for o in t_out} | {str(o.S.device) for o in t_out}),
                               "numba_kernel_calls": calls["numba_kernels"], "exact_svd_calls": calls["exact"]}
    ran_on = "gpu" if d == "cuda" and calls["numba_kernels"] == 0 and res["tinyeval_top_svd"]["out_devices"] == [
        "cuda:0"] else ("cpu-numba" if calls["numba_kernels"] else d)
    res["tinyeval_ran_on"] = ran_on
    save("svd", res, quiet=True)
    with tempfile.TemporaryDirectory() as tmp:  # the adapter-init path: fingerprint (bytes to host, xxh3) + cache write
        c_out, c_per, c_tot = loop(lambda W: cached_top_svd(W, 2, SvdSettings(), cache=Path(tmp) / "c"))
    res["tinyeval_cached_top_svd_cold"] = {"total_s": round(c_tot, 4), "per_matrix_s": [round(x, 4) for x in c_per]}
    save("svd", res, quiet=True)
    print("tinyeval done:", json.dumps(res["tinyeval_top_svd"]), flush=True)
    a_out, a_per, a_tot = loop(peft, progress="torch.linalg.svd")
    res["torch_linalg_svd"] = {"total_s": round(a_tot, 3), "per_matrix_s": [round(x, 4) for x in a_per]}
    res["tinyeval_top_svd"]["sigma_ratio_min"] = [round(float((o.S / e).min()), 6) for o, e in zip(t_out, a_out)]
    res["speedup_top_svd_vs_linalg_svd"] = round(a_tot / t_tot, 1) if t_tot else None
    res["speedup_init_path_vs_linalg_svd"] = round(a_tot / c_tot, 1) if c_tot else None
    res["all_within_1pct"] = min(res["tinyeval_top_svd"]["sigma_ratio_min"]) >= 0.99
    res["gpu"] = gpu_mem()
    save("svd", res)


# ---- adapter overhead: unmerged TinyLoRA forward+backward vs base (benchmarks/adapter_overhead.py) ----------

def cmd_overhead() -> None:
    import torch

    from tinyeval.adapters import AdapterConfig, attach
    from tinyeval.models import load_model

    batch, tokens, repeats = (2, 64, 2) if SMALL else (8, 256, 5)
    if SMALL:
        torch.set_num_threads(1)
    d = dev()
    model, _ = load_model(str(RAND), dtype=dtype_name(), device=d)
    sync()
    t0 = time.perf_counter()
    h = attach(model, AdapterConfig(params=PARAMS, svd_cache=False))  # fresh SVD: times the whole init on this device
    sync()
    init_s = time.perf_counter() - t0
    with torch.no_grad():
        h.state.v.fill_(0.01)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens), generator=g).to(d)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)

    def step(train: bool) -> float:
        sync()
        w = time.perf_counter()
        if train:
            x = embeds.detach().requires_grad_(True)
            model(inputs_embeds=x, labels=ids).loss.backward()
        else:
            with torch.no_grad():
                model(inputs_embeds=embeds)
        sync()
        return time.perf_counter() - w

    def alternate(train: bool) -> dict:
        runs: dict[str, list] = {"base": [], "adapted": []}
        for i in range(repeats + 2):  # two warm-up rounds
            with h.disabled():
                tb = step(train)
            ta = step(train)
            if i >= 2:
                runs["base"].append(tb)
                runs["adapted"].append(ta)
            print(f"  {'fwd+bwd' if train else 'merged fwd'} round {i}: base {tb * 1e3:.1f} ms  adapted "
                  f"{ta * 1e3:.1f} ms", flush=True)
        med = {k: statistics.median(v) for k, v in runs.items()}
        return {"base_ms": round(med["base"] * 1e3, 2), "adapted_ms": round(med["adapted"] * 1e3, 2),
                "overhead": round(med["adapted"] / med["base"], 3),
                "base_all_ms": [round(x * 1e3, 2) for x in runs["base"]],
                "adapted_all_ms": [round(x * 1e3, 2) for x in runs["adapted"]]}

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    res: dict = {"device": d, "dtype": dtype_name(), "batch": batch, "tokens": tokens, "repeats": repeats,
                 "trainable": h.num_trainable, "adapted_modules": len(h.targets), "attach_s": round(init_s, 2),
                 "svd_info": h.svd_info}
    res["fwd_bwd_unmerged"] = alternate(True)
    v_grad = h.state.v.grad
    res["v_grad_nonzero"] = bool(v_grad is not None and bool((v_grad != 0).any()))
    model.zero_grad(set_to_none=True)
    res["gpu_fwd_bwd"] = gpu_mem()
    h.merge()
    res["merged_forward"] = alternate(False)
    h.unmerge()
    save("overhead", res)


# ---- summary ------------------------------------------------------------------------------------------------

def cmd_summarize() -> None:
    summary: dict = {"small": SMALL}
    steps = WORK / "steps.tsv"
    if steps.is_file():
        summary["steps"] = {}
        for line in steps.read_text().splitlines():
            name, status, rc, secs = line.split("\t")
            summary["steps"][name] = {"status": status, "rc": int(rc), "seconds": float(secs)}
    if not (WORK / "pytest.json").is_file() and (OUT / "pytest.txt").is_file():
        cmd_pytest_parse(str(OUT / "pytest.txt"), "-1")
    for name in ("env", "prep", "pytest", "grpo_tinyeval", "grpo_tinyeval_gc", "grpo_trl", "svd", "overhead"):
        p = WORK / f"{name}.json"
        if p.is_file():
            summary[name] = json.loads(p.read_text())
    if "grpo_tinyeval" not in summary:  # killed mid-run: the per-step records are still there
        recs = grpo_records(WORK / "grpo-tinyeval")
        if recs:
            summary["grpo_tinyeval"] = {"partial": True, **recs}
    te, tr = summary.get("grpo_tinyeval", {}), summary.get("grpo_trl", {})
    env = summary.get("env", {})
    summary["where"] = {k: env.get(k) for k in ("device", "torch", "torch_cuda", "transformers", "peft", "trl",
                                                 "datasets", "lm_eval", "pyarrow", "peft_tinylora")}
    a, b = te.get("s_per_step_excl_first"), tr.get("s_per_step_excl_first")
    summary["headline"] = {
        "grpo_s_per_step_tinyeval": a, "grpo_s_per_step_trl": b,
        "grpo_trl_over_tinyeval": round(b / a, 2) if a and b else None,
        "grpo_peak_gpu_gib_tinyeval": te.get("gpu", {}).get("peak_allocated_gib"),
        "grpo_peak_gpu_gib_trl": tr.get("gpu", {}).get("peak_allocated_gib"),
        "grpo_gc_s_per_step_tinyeval": summary.get("grpo_tinyeval_gc", {}).get("s_per_step_excl_first"),
        "grpo_gc_peak_gpu_gib_tinyeval": summary.get("grpo_tinyeval_gc", {}).get("gpu", {}).get("peak_allocated_gib"),
        "startup_tinyeval": te.get("summary", {}).get("startup"),
        "first_step_s_tinyeval": (te.get("step_s") or [None])[0],
        "svd_tinyeval_s": summary.get("svd", {}).get("tinyeval_top_svd", {}).get("total_s"),
        "svd_linalg_s": summary.get("svd", {}).get("torch_linalg_svd", {}).get("total_s"),
        "svd_tinyeval_ran_on": summary.get("svd", {}).get("tinyeval_ran_on"),
        "svd_speedup": summary.get("svd", {}).get("speedup_top_svd_vs_linalg_svd"),
        "svd_all_within_1pct": summary.get("svd", {}).get("all_within_1pct"),
        "overhead_fwd_bwd": summary.get("overhead", {}).get("fwd_bwd_unmerged", {}).get("overhead"),
        "overhead_merged_fwd": summary.get("overhead", {}).get("merged_forward", {}).get("overhead"),
        "pytest": {k: summary.get("pytest", {}).get(k) for k in ("passed", "failed", "errors", "skipped")},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary["headline"], indent=1))


# ---- pytest output -> counts ----------------------------------------------------------------------------------

def cmd_pytest_parse(path: str, rc: str) -> None:
    import re

    text = Path(path).read_text(errors="replace") if Path(path).is_file() else ""
    res: dict = {"rc": int(rc)}
    tail = [ln for ln in text.splitlines() if re.search(r"\b(passed|failed|error|errors|skipped|no tests ran)\b", ln)
            and " in " in ln]
    if tail:
        res["final_line"] = tail[-1].strip("= ")
        for n, kind in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)",
                                  tail[-1]):
            kind = {"error": "errors", "warning": "warnings"}.get(kind, kind)
            res[kind] = int(n)
    else:  # cut off before its summary: count the progress characters instead
        prog = "".join(ln.split("[")[0].strip() for ln in text.splitlines()
                       if re.fullmatch(r"[.FEsxX]+(\s+\[\s*\d+%\])?", ln.strip()))
        res.update(partial=True, passed=prog.count("."), failed=prog.count("F"), errors=prog.count("E"),
                   skipped=prog.count("s"))
    res["failed_tests"] = [ln.split(" ", 1)[1][:300] for ln in text.splitlines()
                           if ln.startswith(("FAILED ", "ERROR "))][:60]
    save("pytest", res)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("cmd")
    p.add_argument("rest", nargs="*")
    a = p.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    fn = {"env": cmd_env, "prep": cmd_prep, "grpo": cmd_grpo, "trl": cmd_trl, "svd": cmd_svd,
          "overhead": cmd_overhead, "summarize": cmd_summarize}.get(a.cmd)
    if a.cmd == "pytest_parse":
        cmd_pytest_parse(*a.rest)
    elif fn is None:
        sys.exit(f"unknown subcommand {a.cmd}")
    else:
        fn()


if __name__ == "__main__":
    main()
