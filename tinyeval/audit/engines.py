"""Engines run the same shard function (`scan.scan_task`) over every task and return results in task order.

  local  worker processes on this machine (fork: the index is inherited, not pickled); 1 worker runs
         in-process. Large tasks are submitted first so a long shard does not finish last alone.
  ray    one Ray task per shard task, the index shared through the object store; `ray.init()` starts a
         local Ray unless an address (`ray://...` or `auto`) names a cluster.

Because results are merged in task order, both engines give byte-identical reports.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from tinyeval.audit.index import NgramIndex
from tinyeval.audit.readers import ShardTask
from tinyeval.audit.scan import TaskResult, scan_task
from tinyeval.errors import TinyevalError

_WORKER: dict = {}  # the index and scan options of a worker process, set once by `_init`


def _init(index: NgramIndex, scan_kw: dict) -> None:
    _WORKER.update(index=index, scan_kw=scan_kw)


def _run(task: ShardTask) -> TaskResult:
    return scan_task(task, _WORKER["index"], **_WORKER["scan_kw"])


def _size(task: ShardTask) -> int:
    if task.end is not None:
        return task.end - task.start
    try:
        return os.path.getsize(task.source)
    except OSError:
        return 0


def run_local(tasks: list[ShardTask], index: NgramIndex, workers: int, address: str | None,
              scan_kw: dict) -> list[TaskResult]:
    """Scan with `workers` processes (1 = in this process)."""
    workers = max(1, min(workers, len(tasks)))
    if workers == 1:
        return [scan_task(t, index, **scan_kw) for t in tasks]
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=mp.get_context(method), initializer=_init,
                             initargs=(index, scan_kw)) as pool:
        order = sorted(range(len(tasks)), key=lambda i: -_size(tasks[i]))
        futures = {i: pool.submit(_run, tasks[i]) for i in order}
        return [futures[i].result() for i in range(len(tasks))]


def _ray_scan(task: ShardTask, index: NgramIndex, scan_kw: dict) -> TaskResult:
    return scan_task(task, index, **scan_kw)


def run_ray(tasks: list[ShardTask], index: NgramIndex, workers: int, address: str | None,
            scan_kw: dict) -> list[TaskResult]:
    """Scan with Ray tasks: a local Ray with `workers` CPUs, or the cluster at `address`."""
    try:
        import ray
    except ImportError:
        raise TinyevalError("--engine ray needs Ray: pip install 'tinyeval[ray]'") from None
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        local = address is None
        ray.init(address=address, num_cpus=workers if local else None, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True, configure_logging=False)
    remote = ray.remote(num_cpus=1, max_retries=0)(_ray_scan)
    index_ref = ray.put(index)
    return ray.get([remote.remote(t, index_ref, scan_kw) for t in tasks])


ENGINES: dict[str, Callable[[list[ShardTask], NgramIndex, int, str | None, dict], list[TaskResult]]] = {
    "local": run_local,
    "ray": run_ray,
}


def run(engine: str, tasks: list[ShardTask], index: NgramIndex, workers: int | None = None,
        address: str | None = None, **scan_kw) -> list[TaskResult]:
    """Scan every task with `engine`; `scan_kw` goes to `scan.scan_task` (e.g. spans=True)."""
    if engine not in ENGINES:
        raise TinyevalError(f"unknown engine '{engine}'; known: {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise TinyevalError(f"--workers must be >= 1, got {workers}")
    return ENGINES[engine](tasks, index, workers or os.cpu_count() or 1, address, scan_kw)
