"""The training loop skeleton shared by every objective (GRPO, SFT).

An objective prepares a batch (GRPO: rollouts, rewards, advantages; SFT: tokenised targets) as a list of
micro-batches, returns each micro-batch's already-weighted loss, and hears about every optimizer update
(GRPO: weight sync to the rollout engine). The loop owns everything else: data order, optimizer and
schedule, gradient accumulation and clipping, per-step JSONL records, a progress bar, checkpoints, a
bit-for-bit `resume`, and a Ctrl-C that finishes the current step, leaves a usable checkpoint and reports
the run as interrupted.

Checkpoints are safetensors (every tensor) plus JSON (everything else, RNG states included), never a pickle:
a checkpoint directory handed to `--resume` is data, and loading it cannot run code.

Data order is a pure function of (seed, step): step s takes positions s*B .. s*B+B-1 of an endless
sequence of per-epoch permutations, so resuming needs no data-loader state, only the step.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NotRequired, Protocol, TypedDict

import numpy as np
import torch

from tinyeval.errors import TinyevalError
from tinyeval.io import append_jsonl, atomic_dir, dumps_json, read_jsonl, write_jsonl
from tinyeval.train import distributed
from tinyeval.train.config import LoopConfig
from tinyeval.train.fsdp import gathered, shard_like, shard_optimizer_state
from tinyeval.train.memory import peak_memory


class StepRecord(TypedDict):
    """One row of records.jsonl: what the loop records for every step; objectives extend it with their stats
    (`grpo.GRPORecord`, `sft.SFTRecord`)."""

    step: int  # steps completed, 1-based
    lr: float  # the learning rate this step used
    loss: float | None  # the step's loss (summed over micro-batches; null when not finite)
    grad_norm: NotRequired[float | None]  # before clipping; absent when clipping is off
    step_s: float
    peak_mem_bytes: int  # the process's memory high-water mark so far (`memory.peak_memory`)
    peak_mem_kind: str  # cuda_max_allocated | rss


class Objective(Protocol):
    name: str
    inner_epochs: int  # optimizer updates per prepared batch (GRPO's mu; 1 for SFT)

    def prepare(self, examples: Sequence[Any]) -> tuple[list[Any], dict]:
        """Micro-batches for these examples, plus statistics for the step record. Sharded over ranks, it gets
        this rank's slice of the step's batch, and every rank must return as many micro-batches."""

    def loss(self, micro: Any) -> tuple[torch.Tensor, dict]:
        """The micro-batch's loss, weighted so that the micro-batch losses sum to the batch loss (sharded: the
        losses of every rank's micro-batches sum to it, and the ranks' gradients are summed)."""

    def after_update(self, step: int) -> dict:
        """Called after each step's updates (e.g. push the new policy to a rollout engine)."""


# ---- data order ---------------------------------------------------------------------------------------

def batch_indices(n: int, step: int, batch: int, seed: int) -> list[int]:
    """Example indices for `step`: consecutive slices of seeded per-epoch permutations of range(n)."""
    out = []
    for pos in range(step * batch, step * batch + batch):
        epoch, i = divmod(pos, n)
        out.append(_permutation(n, seed, epoch)[i])
    return out


_PERMS: dict[tuple[int, int, int], list[int]] = {}


def _permutation(n: int, seed: int, epoch: int) -> list[int]:
    key = (n, seed, epoch)
    if key not in _PERMS:
        _PERMS[key] = random.Random(seed * 1_000_003 + epoch).sample(range(n), n)
    return _PERMS[key]


def total_steps(cfg: LoopConfig, n_examples: int) -> int:
    return cfg.steps or max(1, math.ceil(cfg.epochs * n_examples / cfg.prompts_per_step))


# ---- checkpoints --------------------------------------------------------------------------------------

CHECKPOINT_FORMAT = 1  # state.json's "format": raise it when the layout changes

@dataclass
class TrainState:
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step: int = 0  # completed steps
    extra: dict = field(default_factory=dict)


def _rng_state() -> dict:
    """Every RNG the run draws from; numpy's and Python's as JSON values, torch's as uint8 tensors."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss_next],
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]}
    if torch.cuda.is_available():  # HF generate samples on the model's device
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))


def _split(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """`obj` as JSON values, its tensors moved to `tensors` and named; dict keys and tuples keep their types
    (an optimizer's state is keyed by int, AdamW's betas are a tuple)."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().contiguous()
        return {"tensor": name}
    if isinstance(obj, dict):
        return {"dict": [[k, _split(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"tuple": [_split(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_split(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"a checkpoint holds tensors and JSON values, not {type(obj).__name__}")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of `_split`."""
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "tensor" in obj:
            return tensors[obj["tensor"]]
        if "tuple" in obj:
            return tuple(_join(v, tensors) for v in obj["tuple"])
        return {k: _join(v, tensors) for k, v in obj["dict"]}
    return obj


def save_checkpoint(out: Path, state: TrainState, keep: int = 2) -> Path:
    """Everything a bit-for-bit resume needs, written atomically; keeps the newest `keep` checkpoints.

    checkpoints/step-NNNNNN/ holds tensors.safetensors and state.json (the structure, naming its tensors).
    Sharded training (several ranks) writes the same checkpoint one process would: every rank takes part in
    gathering the full parameters and optimizer moments, rank 0 writes them (`fsdp.gathered`), so a run resumes
    with any number of ranks, one included."""
    from safetensors.torch import save_file

    path = out / "checkpoints" / f"step-{state.step:06d}"
    payload = {"step": state.step, "params": list(state.params), "optimizer": state.optimizer.state_dict(),
               "scheduler": state.scheduler.state_dict(), "rng": _rng_state()}
    if distributed.world_size() > 1:
        payload = gathered(payload, keep=distributed.is_main())
        if not distributed.is_main():
            return path
    tensors: dict[str, torch.Tensor] = {}
    blob = _split(payload, tensors)
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / "tensors.safetensors"))
        (tmp / "state.json").write_text(dumps_json({"format": CHECKPOINT_FORMAT, "state": blob}, indent=None))
    for old in _checkpoints(out)[:-keep]:
        shutil.rmtree(old)
    return path


def _checkpoints(out: Path) -> list[Path]:
    folder = out / "checkpoints"
    pickled = sorted(folder.glob("*.pt")) + sorted(folder.glob("*.pkl")) if folder.is_dir() else []
    if pickled:
        raise TinyevalError(f"{pickled[0]} is a pickled checkpoint (written by an older tinyeval, or planted): "
                            "it is not loaded, since unpickling can run code; start a new run with another --out")
    return sorted(p for p in folder.glob("step-*") if p.is_dir()) if folder.is_dir() else []


def latest_checkpoint(out: Path) -> Path | None:
    found = _checkpoints(out)
    return found[-1] if found else None


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents (step, params, optimizer, scheduler, rng); tensors on the CPU. Reads safetensors
    and JSON only; anything else in their place is refused with a TinyevalError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        raw = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if raw.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unknown checkpoint format {raw.get('format')!r}")
        return _join(raw["state"], load_file(str(path / "tensors.safetensors")))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, SafetensorError) as e:
        raise TinyevalError(f"checkpoint {path} is unreadable ({type(e).__name__}: {str(e)[:200]}); "
                            "delete it to resume from an earlier one") from None


def load_checkpoint(path: Path, state: TrainState) -> None:
    """Restore `state` from a checkpoint; sharded parameters (every rank reads the files) take their shards."""
    blob = read_checkpoint(path)
    if len(blob["params"]) != len(state.params) or any(
            a.shape != b.shape for a, b in zip(blob["params"], state.params)):
        raise TinyevalError(f"checkpoint {path} does not match this adapter's trainable parameters")
    with torch.no_grad():
        for p, saved in zip(state.params, blob["params"]):
            p.copy_(shard_like(saved, p))
    state.optimizer.load_state_dict(shard_optimizer_state(blob["optimizer"], state.params))
    state.scheduler.load_state_dict(blob["scheduler"])
    _set_rng_state(blob["rng"])
    state.step = blob["step"]


# ---- Ctrl-C -------------------------------------------------------------------------------------------

class StopFlag:
    requested = False


@contextmanager
def graceful_interrupt() -> Iterator[StopFlag]:
    """First Ctrl-C: finish the step, checkpoint, stop. Second Ctrl-C: the usual KeyboardInterrupt."""
    flag = StopFlag()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
        previous = None
    try:
        yield flag
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


# ---- the loop -----------------------------------------------------------------------------------------

def _mean_stats(rows: list[dict]) -> dict:
    keys = {k for r in rows for k in r}
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in sorted(keys)}


def _records(out: Path, upto: int) -> list[dict]:
    """The records of steps up to the checkpoint being resumed (a torn last line is dropped with a warning)."""
    path = out / "records.jsonl"
    if not path.is_file():
        return []
    rows = read_jsonl(path, warn=lambda message: warnings.warn(message, RuntimeWarning, stacklevel=3))
    return [r for r in rows if r["step"] <= upto]


@dataclass
class LoopResult:
    records: list[dict]  # this run's step records, resumed ones included
    total_steps: int  # the steps the run is configured for
    interrupted: bool  # Ctrl-C stopped it before `total_steps`


def run_loop(objective: Objective, params: list[torch.nn.Parameter], examples: Sequence[Any], cfg: LoopConfig,
             out: Path, resume: bool = False, progress: bool = True,
             on_step: Callable[[dict], None] = lambda record: None) -> LoopResult:
    """Train until `cfg.steps` (or `cfg.epochs`) or a Ctrl-C; a checkpoint is written either way. `on_step`
    hears every new step record.

    Sharded over several ranks (`fsdp.py`), each rank trains on its slice of every step's batch, the records
    hold the whole step's loss, and only rank 0 writes records.jsonl and checkpoints."""
    main = distributed.is_main()
    steps = total_steps(cfg, len(examples))
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, int(cfg.warmup_ratio * steps)) if cfg.warmup_ratio > 0 else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    state = TrainState(params, optimizer, scheduler)
    if resume and (ckpt := latest_checkpoint(out)) is not None:
        load_checkpoint(ckpt, state)
    elif resume:
        raise TinyevalError(f"--resume: no checkpoint under {out / 'checkpoints'}")
    else:
        torch.manual_seed(cfg.seed), random.seed(cfg.seed), np.random.seed(cfg.seed)
    records = _records(out, state.step) if resume else []
    if main:
        write_jsonl(out / "records.jsonl", records)  # drops records of steps after the checkpoint
    stopped = False
    with graceful_interrupt() as stop, _progress(progress and main, steps, state.step) as bar:
        while state.step < steps and not stopped:
            record = _one_step(objective, state, examples, cfg)
            records.append(record)
            if main:
                append_jsonl(out / "records.jsonl", record)  # one whole, flushed line per step
            bar(record)
            on_step(record)
            stopped = distributed.any_rank(stop.requested)  # every rank stops after the same step
            if state.step % cfg.checkpoint_every == 0 or state.step == steps or stopped:
                save_checkpoint(out, state)
    return LoopResult(records, steps, state.step < steps)


def _one_step(objective: Objective, state: TrainState, examples: Sequence[Any], cfg: LoopConfig) -> dict:
    start = time.perf_counter()
    batch = [examples[i] for i in batch_indices(len(examples), state.step, cfg.prompts_per_step, cfg.seed)]
    micro, stats = objective.prepare(distributed.my_slice(batch))
    loss_stats, grad_norms = [], []
    for _ in range(objective.inner_epochs):
        state.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for mb in micro:
            loss, s = objective.loss(mb)
            loss.backward()
            total += float(loss.detach())
            loss_stats.append(s)
        total = distributed.sum_over_ranks(total)  # each rank's loss is its share of the batch's
        if cfg.max_grad_norm > 0:
            grad_norms.append(float(torch.nn.utils.clip_grad_norm_(state.params, cfg.max_grad_norm)))
        state.optimizer.step()
        loss_stats.append({"loss": total})
    lr = state.scheduler.get_last_lr()[0]
    state.scheduler.step()
    state.step += 1
    stats.update(objective.after_update(state.step))
    stats.update(_mean_stats(loss_stats))
    if grad_norms:
        stats["grad_norm"] = float(np.mean(grad_norms))
    peak, kind = peak_memory(state.params[0].device)
    return {"step": state.step, "lr": lr, **stats, "step_s": time.perf_counter() - start,
            "peak_mem_bytes": peak, "peak_mem_kind": kind}


@contextmanager
def _progress(enabled: bool, steps: int, done: int):
    """A rich progress bar showing the latest reward; a no-op callback when disabled."""
    if not enabled:
        yield lambda record: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tinyeval.console import err_console  # stays on the terminal while third-party output goes to log.txt

    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), console=err_console) as bar:
        task = bar.add_task("", total=steps, completed=done)

        def update(record: dict) -> None:
            desc = " ".join(f"{k} {record[k]:.3g}" for k in ("reward_mean", "strict", "lenient", "step_s")
                            if k in record)
            bar.update(task, advance=1, description=desc)

        yield update
