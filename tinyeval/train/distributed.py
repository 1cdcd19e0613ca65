"""The processes of one training job: which one this is, the few values they agree on, and a launcher.

A sharded full fine-tune (`train/fsdp.py`) runs K processes ("ranks"), one per device. Two ways to start them:

    tinyeval train --algo sft --method full --nproc K ...                            # spawns K ranks itself
    torchrun --nproc-per-node K -m tinyeval.cli train --algo sft --method full ...   # the same, started by torchrun

`--nproc K` (`recipes.run(..., nproc=K)`) calls `launch`: torchrun's own launcher API (`elastic_launch`, a
local rendezvous on a free port) runs `recipes.run` in K fresh processes and returns rank 0's summary; torchrun
itself is the way across several nodes (or under SLURM). Either way each rank finds RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT in its environment (`launched_world`). Rank 0 writes every file of the run and prints;
the others compute and stay silent. On GPUs rank r uses GPU LOCAL_RANK of those CUDA_VISIBLE_DEVICES shows;
on a CPU the ranks talk over gloo (how the tests run it).

A user error in a rank (a `TinyevalError`: a model or data root that is not there) stops every rank and is
raised again, as the same one line, in the launching process; anything else stops them with its traceback.
Ctrl-C: the launcher leaves SIGINT to the ranks, which finish the step, checkpoint and stop together
(`any_rank` in the loop), so `--resume` continues the run as after a single-process Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from tinyeval.errors import TinyevalError

_ERROR_PREFIX = f"{TinyevalError.__name__}: "
T = TypeVar("T")


def launched_world() -> int:
    """How many ranks the environment says this job has (WORLD_SIZE, as torchrun and `launch` set it); 1 when
    this process was started on its own."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _group():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def rank() -> int:
    """This process's rank: in the started process group, else as the environment says (RANK; 0 when this
    process was started on its own)."""
    dist = _group()
    return dist.get_rank() if dist else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Ranks in the started process group (1 without one)."""
    dist = _group()
    return dist.get_world_size() if dist else 1


def end() -> None:
    """Leave the process group, if one was started (every rank calls it when its run ends)."""
    dist = _group()
    if dist is not None:
        dist.destroy_process_group()


def is_main() -> bool:
    """Whether this process writes the run's files (rank 0, or the only process)."""
    return rank() == 0


def my_slice(batch: Sequence[T]) -> list[T]:
    """This rank's contiguous share of a step's batch (rank r of K: items r·B/K .. (r+1)·B/K - 1); the whole batch
    in one process. B must be a multiple of K (`recipes` refuses other settings before training)."""
    k = world_size()
    if k == 1:
        return list(batch)
    if len(batch) % k:
        raise ValueError(f"a batch of {len(batch)} does not split evenly over {k} ranks")
    rows, r = len(batch) // k, rank()
    return list(batch[r * rows:(r + 1) * rows])


def sum_over_ranks(value: float) -> float:
    """`value` summed over every rank (a collective: every rank calls it); `value` itself in one process."""
    dist = _group()
    if dist is None or dist.get_world_size() == 1:
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t)


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one (e.g. a Ctrl-C seen by one rank stops them all together)."""
    return sum_over_ranks(float(flag)) > 0


def gpus_for(nproc: int) -> None:
    """Refuse `nproc` ranks on a GPU machine that shows fewer GPUs (on a CPU any count runs, over gloo)."""
    if nproc < 1:
        raise TinyevalError(f"--nproc must be >= 1, got {nproc}")
    if torch.cuda.is_available() and torch.cuda.device_count() < nproc:
        raise TinyevalError(f"--nproc {nproc}: only {torch.cuda.device_count()} GPU(s) visible "
                            "(one rank per GPU; CUDA_VISIBLE_DEVICES chooses them)")


@contextmanager
def _quiet_launcher():
    """The launcher's own log lines (per-rank tracebacks, 'Terminating process ...') stay out of the console:
    `launch` raises the failure itself. SIGINT is left to the ranks (they share the terminal's process group)."""
    names = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    except ValueError:  # not the main thread: Ctrl-C is not ours to route
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def launch(nproc: int, fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn(*args)` in `nproc` new processes on this machine, as ranks 0..nproc-1 of one job (torchrun's
    launcher API, spawn start method: `fn` and `args` must pickle); returns rank 0's return value."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    gpus_for(nproc)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          signals_to_handle="SIGTERM,SIGHUP,SIGQUIT")
    try:
        with _quiet_launcher():
            return elastic_launch(config, fn)(*args)[0]
    except ChildFailedError as e:
        failed_rank, message, stack = _root_cause(e.failures)
        if message.startswith(_ERROR_PREFIX):
            raise TinyevalError(message.removeprefix(_ERROR_PREFIX)) from None
        raise RuntimeError(f"rank {failed_rank} of {nproc} failed: {message}\n{stack}") from None


def _root_cause(failures: dict) -> tuple[int, str, str]:
    """(rank, message, traceback) of the first rank that raised; ranks the launcher then stopped (killed by a
    signal, no error file) come last."""
    def parsed(item):
        r, failure = item
        raw = failure.message if isinstance(failure.message, dict) else {"message": str(failure.message)}
        return r, str(raw.get("message", "")), str(raw.get("extraInfo", {}).get("py_callstack", "")), failure

    rows = sorted(map(parsed, failures.items()), key=lambda row: (not row[2], row[3].timestamp, row[0]))
    return rows[0][:3]
