"""Training recipes: `RECIPES` holds what differs per algorithm, `run` does everything around the loop, once.

    tinyeval train --algo sft --preset cpu --out runs/sft      # = run("sft", *build("sft", "cpu"), "runs/sft")

A recipe names its objective's config dataclass, its presets, a `setup` that builds the objective and its
training examples from the loaded model, and the schemas of its step records and summary. `run` does the rest,
the same for every algorithm: read the settings (on `--resume` from the run's config.json, so a resumed run
continues with exactly the settings it started with), load the model, attach the adapter, load the data, and
only then create the run directory (a run refused for a bad model or data root leaves nothing behind), run the
loop, save the adapter and summary.json.

Run directory: config.json (`config_schema`), records.jsonl (one `Recipe.record` per step), checkpoints/,
adapter/ (`handle.save`), summary.json (`Recipe.summary`; `interrupted` is true after a Ctrl-C).

Full fine-tuning beyond one device (`--nproc K`, or K ranks started by torchrun; `distributed.py`): SFT with
`--method full` only (`shardable`). Every rank loads the model to the CPU, attaches, shards it with FSDP2
(`fsdp.shard_full_model`) and trains on its slice of each step's batch; gradients are summed over the ranks, the
micro-batch weights being shares of the whole step, so the update is the one-process update. Rank 0 writes
every file, and they are the files one process writes: the checkpoints and the adapter are gathered to it
(`loop.save_checkpoint`, `fsdp.save_gathered`), so such a run resumes with any number of ranks.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, get_origin, get_type_hints

import torch

from tinyeval import schema
from tinyeval.adapters import AdapterConfig
from tinyeval.errors import TinyevalError
from tinyeval.eval.liveness import LivenessJson
from tinyeval.io import write_json
from tinyeval.train import distributed, fsdp
from tinyeval.train.config import (
    DEFAULT_ADAPTER,
    GRPO_PRESETS,
    SFT_PRESETS,
    GRPOConfig,
    LoopConfig,
    SFTConfig,
)
from tinyeval.train.grpo import GRPORecord
from tinyeval.train.loop import Objective
from tinyeval.train.sft import SFTRecord

# ---- what a recipe provides ---------------------------------------------------------------------------

@dataclass
class Context:
    """What a recipe's setup is handed: the settings, the model with its adapter attached, the tokenizer."""

    loop: LoopConfig
    objective: Any  # the recipe's config dataclass (GRPOConfig, SFTConfig)
    handle: Any  # the attached adapter (`tinyeval.adapters.AdapterHandle`); handle.model is the model
    tokenizer: Any
    resume: bool


@dataclass
class Prepared:
    """A recipe's objective and training examples, plus its own summary fields and clean-up."""

    objective: Objective
    examples: Sequence[Any]
    finish: Callable[[], dict] = dict  # summary fields of this recipe, computed once training stopped
    close: Callable[[], None] = lambda: None


class Startup(TypedDict):
    """Where the time before training went, in this process (summary.json's `startup`; printed after step 1)."""

    load_s: float  # load_model: tokenizer, weights, move to the device
    attach_s: float  # attach the adapter: targets, plan, base fingerprint, SVD factors
    attach_phases: dict[str, float]  # the handle's own breakdown (`handle.timings`: fingerprint_s, svd_s, ...)
    setup_s: float  # the recipe's setup: training data, rollout engine (a vLLM engine starts here)
    first_step_s: float | None  # this process's first step (null when it ran none)


class Summary(TypedDict):
    """summary.json: written when a run stops, finished or interrupted."""

    out: str
    algo: str
    steps: int  # steps completed
    total_steps: int  # steps the run is configured for
    interrupted: bool  # stopped by Ctrl-C before total_steps: `--resume` continues it
    trainable: int  # trainable parameters, counted as the paper counts them
    seconds: float  # the training loop's wall time in this process
    final: dict[str, Any] | None  # the last records.jsonl row (the recipe's `record` schema)
    startup: Startup
    peak_mem_bytes: int  # the process's memory high-water mark at the end (`memory.peak_memory`)
    peak_mem_kind: str  # cuda_max_allocated | rss


class GRPOSummary(Summary):
    engine: str  # the rollout engine that ran (hf | vllm)
    random_p: float | None  # reward "random": the Bernoulli p its draws used (calibrated or given); else null
    liveness: LivenessJson | None  # vllm: the rollout engine's last adapter liveness check; hf: null (no copy)


class SFTSummary(Summary):
    examples: int  # training examples read
    skipped_empty: int
    skipped_too_long: int
    heldout_loss_before: float | None  # the base model's held-out loss (null on --resume or without held-out)
    heldout_loss_after: float | None


@dataclass(frozen=True)
class Recipe:
    config: type  # the objective's config dataclass; its section in config.json is the recipe's name
    presets: dict[str, dict]
    setup: Callable[[Context], Prepared]
    record: type  # TypedDict of a records.jsonl row
    summary: type  # TypedDict of summary.json


def _grpo(ctx: Context) -> Prepared:
    from tinyeval.train.grpo import GRPO, load_examples
    from tinyeval.train.rollout.engines import make_engine
    from tinyeval.train.tasks import get_task

    task = get_task(ctx.loop.task)
    examples = load_examples(task, ctx.tokenizer, ctx.loop, ctx.objective.max_prompt_tokens)
    engine = make_engine(ctx.objective, ctx.handle, ctx.tokenizer, ctx.loop.model,
                         ctx.loop.prompts_per_step * ctx.objective.group_size)
    cfg = ctx.objective
    try:
        if cfg.reward == "random" and cfg.random_p is None:
            # Measured once, into the run's own settings: config.json is written after setup, so a resumed run reads
            # the same p instead of measuring it again (on another machine or engine it might come out different).
            cfg.random_p = _calibrate(engine, task, examples, cfg, ctx.loop.seed)
        objective = GRPO(ctx.handle, ctx.tokenizer, engine, task, cfg, ctx.loop.micro_batch, ctx.loop.seed)
    except BaseException:
        engine.close()  # a vLLM engine left running would outlive the run (orphan engine-core processes)
        raise
    return Prepared(objective, examples, lambda: {"engine": engine.name, "random_p": cfg.random_p,
                                                  "liveness": getattr(engine, "liveness", None)}, engine.close)


def _calibrate(engine, task, examples, cfg, seed: int) -> float:
    """The random-reward control's p, from the policy before training (the adapter's no-op start) on a seeded sample
    of training prompts; seeded apart from the run's own RNG, so a resumed run measures the same p."""
    import random

    import torch

    from tinyeval.train.rewards import calibrate

    picked = random.Random(seed).sample(range(len(examples)), min(cfg.calibration_prompts, len(examples)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return calibrate(lambda ps: engine.generate(ps, cfg.max_new_tokens, cfg.temperature, cfg.top_p).texts,
                         [examples[i].prompt for i in picked], [examples[i].gold for i in picked], task.grade,
                         cfg.random_p_from, cfg.group_size)


def _sft(ctx: Context) -> Prepared:
    from tinyeval.train.sft import SFT, load_sft_examples

    loop, cfg = ctx.loop, ctx.objective
    train, counts = load_sft_examples(loop.task, ctx.tokenizer, "train", cfg, loop.data_root, loop.limit)
    heldout = load_sft_examples(loop.task, ctx.tokenizer, "test", cfg, loop.data_root, cfg.eval_examples)[0] \
        if cfg.eval_examples else []
    objective = SFT(ctx.handle, ctx.tokenizer, loop.micro_batch, heldout, cfg.eval_every)
    before = objective.heldout_loss() if heldout and not ctx.resume else None  # the base model's loss

    def finish() -> dict:
        return {**counts, "heldout_loss_before": before,
                "heldout_loss_after": objective.heldout_loss() if heldout else None}

    return Prepared(objective, train, finish)


RECIPES: dict[str, Recipe] = {
    "grpo": Recipe(GRPOConfig, GRPO_PRESETS, _grpo, GRPORecord, GRPOSummary),
    "sft": Recipe(SFTConfig, SFT_PRESETS, _sft, SFTRecord, SFTSummary),
}


def recipe(algo: str) -> Recipe:
    if algo not in RECIPES:
        raise TinyevalError(f"--algo must be one of {', '.join(RECIPES)}, got '{algo}'")
    return RECIPES[algo]


# ---- settings: options -> dataclasses -> config.json and back ------------------------------------------

def build(algo: str, preset: str | None = None, **options) -> tuple[LoopConfig, Any]:
    """(LoopConfig, the recipe's config): preset values, then the non-None `options`, each routed to the
    dataclass that owns the field; adapter fields (method, params, rank, tying, ...) go to `LoopConfig.adapter`
    unchanged, and are validated there."""
    r = recipe(algo)
    if preset is not None and preset not in r.presets:
        raise TinyevalError(f"unknown {algo} preset '{preset}'; known: {', '.join(r.presets)}")
    values = {**(r.presets[preset] if preset else {}), **{k: v for k, v in options.items() if v is not None}}
    owners = {f.name: "adapter" for f in dataclasses.fields(AdapterConfig) if f.name not in ("seed", "extra")}
    owners |= {f.name: "loop" for f in dataclasses.fields(LoopConfig) if f.name != "adapter"}
    owners |= {f.name: "objective" for f in dataclasses.fields(r.config)}
    unknown = set(values) - set(owners)
    if unknown:
        raise TinyevalError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    routed: dict[str, dict] = {"adapter": {}, "loop": {}, "objective": {}}
    for key, value in values.items():
        routed[owners[key]][key] = value
    adapter = AdapterConfig(**{**DEFAULT_ADAPTER, **routed["adapter"]})
    return LoopConfig(**routed["loop"], adapter=adapter), r.config(**routed["objective"])


def config_schema(algo: str) -> type:
    """The TypedDict of a run's config.json: {"algo", "loop": LoopConfig, <algo>: the recipe's config}."""
    return TypedDict("ConfigFile", {"algo": str, "loop": schema.typed_dict(LoopConfig), algo: schema.typed_dict(recipe(algo).config)})


def _from_json(cls: type, raw: dict) -> Any:
    """Rebuild config dataclass `cls` from its JSON form (the inverse of `dataclasses.asdict` + JSON)."""
    hints = get_type_hints(cls)

    def value(name: str, v: Any) -> Any:
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            return _from_json(tp, v)
        return tuple(v) if get_origin(tp) is tuple else v

    return cls(**{k: value(k, v) for k, v in raw.items()})


def _config_json(algo: str, loop: LoopConfig, objective: Any) -> dict:
    return {"algo": algo, "loop": dataclasses.asdict(loop), algo: dataclasses.asdict(objective)}


def saved_algo(out: str | Path) -> str | None:
    """The algorithm of the run in `out` (its config.json's "algo"), or None when there is none to read."""
    try:
        raw = json.loads((Path(out) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw.get("algo") if isinstance(raw, dict) and isinstance(raw.get("algo"), str) else None


def _settings(out: Path, algo: str, loop: LoopConfig, objective: Any, resume: bool) -> tuple[LoopConfig, Any]:
    """The run's settings: on `resume` the saved ones (only the step budget may grow, so "train 20 more steps"
    works); otherwise the given ones, after checking that `out` holds no run yet."""
    path = out / "config.json"
    if not resume:
        if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()):
            raise TinyevalError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
        return loop, objective
    if not path.is_file():
        raise TinyevalError(f"--resume: {path} not found; start a run with --out {out} first")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and raw.get("algo") not in (None, algo):
            raise TinyevalError(f"--resume: the run in {out} trains with --algo {raw['algo']}, not {algo}")
        schema.check(raw, config_schema(algo))
        saved = _from_json(LoopConfig, raw["loop"]), _from_json(recipe(algo).config, raw[algo])
    except (OSError, ValueError) as e:  # JSONDecodeError and SchemaError are ValueErrors
        raise TinyevalError(f"--resume: {path} is not a tinyeval {algo} config ({str(e)[:200]})") from None
    if loop.steps and loop.steps != saved[0].steps:
        saved[0].steps = loop.steps
    return saved


# ---- the run ------------------------------------------------------------------------------------------

SHARDED_ALGOS = ("sft",)  # GRPO's rollouts would need every rank to generate in lock-step: not sharded


def shardable(algo: str, method: str) -> bool:
    """Whether a run may be sharded over several processes (`nproc` > 1, FSDP2): full fine-tuning with SFT. An
    adapter is a few parameters to millions: sharding it buys nothing (the matrix scheduler asks this before
    giving a unit more than one GPU)."""
    return method == "full" and algo in SHARDED_ALGOS


def _check_sharded(algo: str, loop: LoopConfig, nproc: int) -> None:
    method = loop.adapter.method
    if method != "full":
        raise TinyevalError(f"--nproc {nproc}: only --method full is sharded over processes (FSDP2); --method "
                            f"{method} trains a small adapter, which one process holds: use --nproc 1")
    if algo not in SHARDED_ALGOS:
        raise TinyevalError(f"--nproc {nproc}: sharded full fine-tuning trains --algo {' | '.join(SHARDED_ALGOS)}; "
                            f"{algo} rollouts are not sharded: train {algo} with --nproc 1")
    if loop.prompts_per_step % nproc:
        raise TinyevalError(f"--nproc {nproc}: --prompts-per-step {loop.prompts_per_step} must be a multiple of it "
                            "(each rank trains on an equal slice of every step)")


def run(algo: str, loop: LoopConfig, objective: Any, out: str | Path, resume: bool = False,
        progress: bool = True, nproc: int = 1) -> dict:
    """Train with recipe `algo` into `out` (or continue the run there); returns the run summary.

    `nproc` > 1 shards a full fine-tune over that many new processes (`distributed.launch`, one per GPU; on a CPU
    over gloo) and returns rank 0's summary; a process that torchrun started as one of K ranks shards itself."""
    r, out = recipe(algo), Path(out)
    if not isinstance(objective, r.config):
        raise TypeError(f"recipe '{algo}' takes a {r.config.__name__}, got {type(objective).__name__}")
    loop, objective = _settings(out, algo, loop, objective, resume)
    world = max(nproc, distributed.launched_world())
    if world > 1:
        _check_sharded(algo, loop, world)
    if nproc > 1:
        if distributed.launched_world() > 1:
            raise TinyevalError(f"--nproc {nproc} inside a job of {distributed.launched_world()} ranks: "
                                "start the ranks once, with --nproc or with torchrun")
        return distributed.launch(nproc, run, algo, loop, objective, str(out), resume, progress)
    if loop.threads:
        torch.set_num_threads(loop.threads)
    try:
        return _run(r, algo, loop, objective, out, resume, progress and distributed.is_main(), world > 1)
    finally:
        if world > 1:
            distributed.end()


def _load(loop: LoopConfig, sharded: bool) -> tuple[Any, Any, dict]:
    """(handle, tokenizer, start-up times): the model loaded and its adapter attached; sharded, the model is read
    to the CPU (every rank reads it), the handle attached there, then each decoder layer and the root sharded."""
    from tinyeval.adapters import attach
    from tinyeval.models import default_device, default_dtype, load_model
    from tinyeval.train.memory import enable_gradient_checkpointing

    mesh = fsdp.init_mesh() if sharded else None
    device = "cpu" if sharded else default_device()
    dtype = default_dtype(default_device()) if sharded and loop.dtype == "auto" else loop.dtype
    clock = time.perf_counter()
    model, tokenizer = load_model(loop.model, dtype=dtype, device=device)
    startup = {"load_s": time.perf_counter() - clock}
    clock = time.perf_counter()
    torch.manual_seed(loop.seed)  # adapter init (e.g. LoRA's A) is a function of the seed, not of RNG history
    handle = attach(model, loop.adapter)
    if loop.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    phases = {k: float(v) for k, v in getattr(handle, "timings", {}).items() if isinstance(v, (int, float))}
    if sharded:
        shard_clock = time.perf_counter()
        fsdp.sum_gradients(fsdp.shard_full_model(model, mesh))  # before anything collects the parameters
        phases["shard_s"] = time.perf_counter() - shard_clock
    return handle, tokenizer, startup | {"attach_s": time.perf_counter() - clock, "attach_phases": phases}


def _run(r: Recipe, algo: str, loop: LoopConfig, objective: Any, out: Path, resume: bool, progress: bool,
         sharded: bool) -> dict:
    from tinyeval.train.loop import run_loop
    from tinyeval.train.memory import peak_memory

    main = distributed.is_main()
    handle, tokenizer, startup = _load(loop, sharded)
    clock = time.perf_counter()
    prepared = r.setup(Context(loop, objective, handle, tokenizer, resume))
    startup |= {"setup_s": time.perf_counter() - clock, "first_step_s": None}

    def first_step(record: dict) -> None:
        if startup["first_step_s"] is None:
            startup["first_step_s"] = record["step_s"]
            if progress:
                from tinyeval.console import err_console

                err_console.print(startup_line(startup), highlight=False)

    try:
        if main:
            write_json(out / "config.json", _config_json(algo, loop, objective))  # the run directory starts here
        start = time.perf_counter()
        result = run_loop(prepared.objective, handle.trainable_parameters(), prepared.examples, loop, out, resume,
                          progress, on_step=first_step)
        seconds = time.perf_counter() - start
        extra = prepared.finish()
    finally:
        prepared.close()
    if sharded:
        fsdp.save_gathered(handle, out / "adapter")  # gathered to rank 0: the artifact one process writes
    else:
        handle.save(out / "adapter")
    records = result.records
    peak, kind = peak_memory(handle.trainable_parameters()[0].device)
    summary = {"out": str(out), "algo": algo, "steps": records[-1]["step"] if records else 0,
               "total_steps": result.total_steps, "interrupted": result.interrupted,
               "trainable": handle.num_trainable, "seconds": seconds, **extra,
               "final": records[-1] if records else None, "startup": startup, "peak_mem_bytes": peak,
               "peak_mem_kind": kind}
    if main:
        write_json(out / "summary.json", summary)
    return summary


def startup_line(startup: dict) -> str:
    """The start-up phases in one line, e.g.
    `start-up: load 3.1 s · attach 1.2 s (fingerprint 0.3 s, svd 0.8 s) · setup 0.4 s · first step 6.4 s`."""
    phases = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in startup["attach_phases"].items())
    first = startup["first_step_s"]
    attach = f"attach {startup['attach_s']:.1f} s" + (f" ({phases})" if phases else "")
    parts = [f"load {startup['load_s']:.1f} s", attach, f"setup {startup['setup_s']:.1f} s"]
    parts += [f"first step {first:.1f} s"] if first is not None else []
    return "start-up: " + " · ".join(parts)
