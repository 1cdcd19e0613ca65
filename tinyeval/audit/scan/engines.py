"""Engines run the same shard function (`shard.scan_task`) over every task and return results in task order.

  local  worker processes on this machine (fork: the index is inherited, not pickled); 1 worker runs
         in-process. Large tasks are submitted first so a long shard does not finish last alone.
  ray    one scanner actor per worker CPU, holding the index (sent once through the object store) and kept
         for later scans in the same Ray session; shard tasks go to whichever actor is free, large ones
         first. `ray.init()` starts a local Ray unless an address (`ray://...` or `auto`) names a cluster.
         A fresh Ray worker spends ~1 s importing numba and loading its compiled kernels before its
         first shard (forked local workers inherit them warm); the actors pay that once per session.

Because results are merged in task order, both engines give byte-identical reports.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from tinyeval.audit.scan.index import NgramIndex
from tinyeval.audit.scan.readers.types import ShardTask
from tinyeval.audit.scan.shard import TaskResult, scan_task
from tinyeval.errors import TinyevalError

Progress = Callable[[ShardTask], None]  # called with each task as it finishes
_WORKER: dict = {}  # the index and scan options of a worker process, set once by `_init`


def _init(index: NgramIndex, scan_kw: dict) -> None:
    _WORKER.update(index=index, scan_kw=scan_kw)


def _run(task: ShardTask) -> TaskResult:
    return scan_task(task, _WORKER["index"], **_WORKER["scan_kw"])


def task_bytes(task: ShardTask) -> int:
    """Input bytes of a task (its range, or its file's size on disk; 0 for a hub dataset): progress is counted in these."""
    if task.end is not None:
        return task.end - task.start
    try:
        return os.path.getsize(task.source)
    except OSError:
        return 0


def run_local(tasks: list[ShardTask], index: NgramIndex, workers: int, address: str | None,
              scan_kw: dict, done: Progress) -> list[TaskResult]:
    """Scan with `workers` processes (1 = in this process)."""
    workers = max(1, min(workers, len(tasks)))
    if workers == 1:
        results = []
        for t in tasks:
            results.append(scan_task(t, index, **scan_kw))
            done(t)
        return results
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_init,
                             initargs=(index, scan_kw)) as pool:
        order = sorted(range(len(tasks)), key=lambda i: -task_bytes(tasks[i]))
        futures = {pool.submit(_run, tasks[i]): i for i in order}
        for future in as_completed(futures):
            done(tasks[futures[future]])
        by_task = {i: future.result() for future, i in futures.items()}
        return [by_task[i] for i in range(len(tasks))]


class _Scanner:
    """A Ray actor scanning shard tasks against the index it was built with (deserialized once)."""

    def __init__(self, index: NgramIndex, scan_kw: dict):
        self.index, self.scan_kw = index, scan_kw

    def scan(self, i: int, task: ShardTask) -> tuple[int, TaskResult]:
        return i, scan_task(task, self.index, **self.scan_kw)


_RAY_POOL: dict = {}  # the scanner actors of this Ray session, with the index and options they hold


def _scanners(ray, index: NgramIndex, workers: int, scan_kw: dict) -> list:
    """One actor per worker CPU for this index, reused while the Ray session, index and options stay."""
    job = ray.get_runtime_context().get_job_id()
    key = (job, workers, tuple(sorted(scan_kw.items())))
    if _RAY_POOL.get("key") != key or _RAY_POOL.get("index") is not index:
        if _RAY_POOL.get("key", (None,))[0] == job:  # same session, other index or options: free their CPUs
            for actor in _RAY_POOL["actors"]:
                ray.kill(actor)
        index_ref = ray.put(index)
        actor_cls = ray.remote(num_cpus=1, max_restarts=0)(_Scanner)
        _RAY_POOL.update(key=key, index=index, actors=[actor_cls.remote(index_ref, scan_kw) for _ in range(workers)])
    return _RAY_POOL["actors"]


def run_ray(tasks: list[ShardTask], index: NgramIndex, workers: int, address: str | None,
            scan_kw: dict, done: Progress) -> list[TaskResult]:
    """Scan with Ray actors: a local Ray with `workers` CPUs, or `workers` actors on the cluster at `address`."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise TinyevalError("--engine ray needs Ray: pip install 'tinyeval[ray]'") from None
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        _RAY_POOL.clear()  # handles from an earlier (shut down) session are dead, whatever its job id was
        local = address is None
        ray.init(address=address, num_cpus=workers if local else None, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True, configure_logging=False,
                 logging_level=logging.WARNING)
    workers = max(1, min(workers, len(tasks), int(ray.cluster_resources().get("CPU", 1))))
    pool = ActorPool(_scanners(ray, index, workers, scan_kw))
    order = sorted(range(len(tasks)), key=lambda i: -task_bytes(tasks[i]))
    results: list[TaskResult | None] = [None] * len(tasks)
    try:
        for i, result in pool.map_unordered(lambda actor, i: actor.scan.remote(i, tasks[i]), order):
            results[i] = result
            done(tasks[i])
    except Exception:
        _RAY_POOL.clear()  # an actor may have died (max_restarts=0): the next scan starts fresh ones
        raise
    return results


ENGINES: dict[str, Callable[[list[ShardTask], NgramIndex, int, str | None, dict, Progress], list[TaskResult]]] = {
    "local": run_local,
    "ray": run_ray,
}


def run(engine: str, tasks: list[ShardTask], index: NgramIndex, workers: int | None = None,
        address: str | None = None, progress: Progress | None = None, **scan_kw) -> list[TaskResult]:
    """Scan every task with `engine`; `progress(task)` is called as each task finishes; `scan_kw` goes to
    `shard.scan_task` (e.g. spans=True)."""
    if engine not in ENGINES:
        raise TinyevalError(f"unknown engine '{engine}'; known: {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise TinyevalError(f"--workers must be >= 1, got {workers}")
    return ENGINES[engine](tasks, index, workers or os.cpu_count() or 1, address, scan_kw,
                           progress or (lambda task: None))
