"""Engines run units' jobs (`unit.run_job`) on workers and report each outcome as it arrives.

  local  `--workers auto|N` on this machine: one worker per GPU (`--gpus-per-unit K`: per K GPUs), pinned with
         CUDA_VISIBLE_DEVICES; where there is no GPU, one per CPU core, each with one thread. A worker is a
         single-process `ProcessPoolExecutor` (spawn: CUDA and vLLM do not survive a fork) that lives for the whole
         round, so it keeps its GPUs, a killed worker breaks only its own executor (a fresh one replaces it and the
         unit is reported failed, to be retried), and the live table can say which worker runs which unit.
         `--workers 1` runs the jobs in this process.
  ray    `--engine ray [--address auto|HOST:PORT]`: every job a Ray task with num_gpus=K (num_cpus=1 on a cluster
         without GPUs, where Ray gives the task one thread); Ray places them on the cluster's nodes. The run
         directory must be on a filesystem every node sees (units read the adapters other units trained).
         Without --address a local Ray is started, unless one is running already.

Outcomes arrive in whatever order units finish; the runner reads results from the unit directories in plan
order, so results.json is the same whatever the engine and the number of workers.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass

from tinyeval.errors import TinyevalError
from tinyeval.report.unit import Job, Outcome, run_job

Done = Callable[[Outcome], None]  # hears every outcome as it arrives


@dataclass(frozen=True)
class Worker:
    name: str  # gpu0 | gpu2,3 | cpu1
    gpus: tuple[int, ...]  # device ids as this process sees them; () on CPU
    core: int | None = None  # a CPU worker's core (vLLM-CPU binds its threads to it)

    def env(self) -> dict[str, str]:
        if self.gpus:
            return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, self.gpus))}
        return {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": str(self.core)}


def _visible_gpus() -> list[int]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (physical ids for the children)."""
    import torch

    n = torch.cuda.device_count()
    named = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return [int(g) for g in named[:n]] if named and all(g.isdigit() for g in named) else list(range(n))


def local_workers(workers: int | None, gpus_per_unit: int = 1) -> list[Worker]:
    """`--workers auto|N` on this machine: per K GPUs one worker, else per CPU core one (None: auto)."""
    gpus = _visible_gpus()
    if gpus:
        slots = len(gpus) // gpus_per_unit
        if slots == 0:
            raise TinyevalError(f"--gpus-per-unit {gpus_per_unit}: this machine has {len(gpus)} GPU(s)")
        groups = [tuple(gpus[i * gpus_per_unit:(i + 1) * gpus_per_unit]) for i in range(min(workers or slots, slots))]
        return [Worker("gpu" + ",".join(map(str, g)), g) for g in groups]
    cores = sorted(os.sched_getaffinity(0))
    return [Worker(f"cpu{i}", (), cores[i % len(cores)]) for i in range(workers or len(cores))]


def _pin(env: dict[str, str]) -> None:
    """A worker process's initializer: its GPUs or its one CPU thread, before anything initialises them. An idle
    worker ignores Ctrl-C (the terminal sends it to every process of the group); `_in_worker` hears it."""
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _in_worker(job: Job, worker: str) -> Outcome:
    """`run_job` in a worker process: a Ctrl-C stops training at a checkpoint, or the job (its unit not done)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_job(job, worker)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _pinned(env: dict[str, str]) -> Iterator[None]:
    """`_pin` for jobs run in this process, undone afterwards."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_local(jobs: list[Job], workers: int | None, gpus_per_unit: int, address: str | None,
              done: Done) -> list[Outcome]:
    """Every job on this machine's workers, each job given to the next idle worker."""
    pool = local_workers(workers, gpus_per_unit)[:max(1, len(jobs))]
    outcomes: list[Outcome] = []
    if workers == 1:  # only when asked for: a unit that killed a worker (on its retry, say) could kill this process
        with _pinned(pool[0].env()):
            for job in jobs:
                outcomes.append(run_job(job, pool[0].name))
                done(outcomes[-1])
        return outcomes

    def start(worker: Worker) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_pin, initargs=(worker.env(),))

    executors = {w.name: start(w) for w in pool}
    queue, idle, running = list(jobs), list(pool), {}
    try:
        while queue or running:
            while queue and idle:
                worker, job = idle.pop(0), queue.pop(0)
                running[executors[worker.name].submit(_in_worker, job, worker.name)] = (job, worker)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job, worker = running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:  # the worker died (killed, out of memory): a fresh process replaces it
                    executors[worker.name] = start(worker)
                    outcome = Outcome(job.unit.key, "+".join(job.phases), "failed", worker.name, job.attempt,
                                      error="the worker process died (killed or out of memory)")
                idle.append(worker)
                outcomes.append(outcome)
                done(outcome)
    finally:  # on Ctrl-C the workers stop their units at a checkpoint; wait for them
        for executor in executors.values():
            executor.shutdown(wait=True, cancel_futures=True)
    return outcomes


def _ray_job(job: Job) -> Outcome:
    """`run_job` in a Ray task, naming the worker by its node and GPUs."""
    import ray

    gpus = ray.get_gpu_ids()
    where = f"gpu{','.join(map(str, gpus))}" if gpus else f"pid {os.getpid()}"
    return run_job(job, f"ray {ray.get_runtime_context().get_node_id()[:8]} {where}")


def run_ray(jobs: list[Job], workers: int | None, gpus_per_unit: int, address: str | None,
            done: Done) -> list[Outcome]:
    """Every job as a Ray task on the cluster at `address` (or a local Ray with `workers` CPUs)."""
    try:
        import ray
    except ImportError:
        raise TinyevalError("--engine ray needs Ray: pip install 'tinyeval[ray]'") from None
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=workers if address is None else None, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True, configure_logging=False,
                 logging_level=logging.WARNING)
    gpus = gpus_per_unit if ray.cluster_resources().get("GPU", 0) > 0 else 0
    task = ray.remote(_ray_job).options(num_gpus=gpus, num_cpus=1, max_retries=0)
    refs = {task.remote(job): job for job in jobs}
    pending, outcomes = list(refs), []
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            job = refs[ready[0]]
            try:
                outcome = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the task's worker died, or Ray lost it
                outcome = Outcome(job.unit.key, "+".join(job.phases), "failed", "ray", job.attempt,
                                  error=f"Ray: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            outcomes.append(outcome)
            done(outcome)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)
        raise
    return outcomes


ENGINES: dict[str, Callable[[list[Job], int | None, int, str | None, Done], list[Outcome]]] = {
    "local": run_local,
    "ray": run_ray,
}


def run(engine: str, jobs: list[Job], workers: int | None = None, gpus_per_unit: int = 1,
        address: str | None = None, done: Done = lambda outcome: None) -> list[Outcome]:
    """Run every job with `engine`; `workers` None means one per GPU (or CPU core)."""
    if engine not in ENGINES:
        raise TinyevalError(f"unknown engine '{engine}'; known: {', '.join(ENGINES)}")
    if workers is not None and workers < 1 or gpus_per_unit < 1:
        raise TinyevalError("--workers and --gpus-per-unit must be >= 1")
    if address is not None and engine != "ray":
        raise TinyevalError("--address needs --engine ray")
    return ENGINES[engine](jobs, workers, gpus_per_unit, address, done) if jobs else []
