"""The task suite in `tasks/`, registered with lm-eval through `TaskManager(include_path=...)`.

lm-eval's built-in tasks are left out of the index (`include_defaults=False`): our `gsm8k`, `arc_easy`, ...
read the data root, and indexing lm-eval's ~10k stock YAMLs would cost seconds for names we shadow anyway.
The stock tasks stay reachable for the parity check through `stock_task_config`.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from tinyeval.errors import TinyevalError

TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks"
# A twin task -> the task whose items it perturbs: its items carry the originals' ids, so the report pairs them.
TWINS: dict[str, str] = {"arith_twins": "arith", "gsm8k_twins": "gsm8k"}
GROUPS = ("tinyeval_math", "tinyeval_nonmath", "tinyeval_legal", "tinyeval_all")


def quiet_lm_eval() -> None:
    """lm-eval warns once per task about `custom_dataset` kwargs and `datasets` draws a bar per split:
    noise that buries the result table. Errors still show."""
    import datasets

    datasets.disable_progress_bars()
    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.ERROR)


@lru_cache(maxsize=4)
def task_manager(data_root: str | None = None):
    """The lm-eval `TaskManager` over `tasks/` only (cached per data root: indexing parses every YAML).

    `data_root` reaches the dataset hook (`hooks.load_dataset`) as task metadata, lm-eval's own channel for
    `custom_dataset` arguments; None leaves the hook to `tinyeval.data`'s default ($TINYEVAL_DATA, else the hub).
    Task metadata is not part of `results.config_hash`, so the root does not change a task's hash."""
    from lm_eval.tasks import TaskManager

    if not TASKS_DIR.is_dir():
        raise TinyevalError(f"task directory {TASKS_DIR} is missing (is tinyeval installed from its source tree?)")
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                       metadata={"data_root": data_root} if data_root else None)


def known_tasks() -> list[str]:
    return task_manager().all_tasks


def check_task_names(names: list[str]) -> list[str]:
    """Return `names` unchanged, or raise naming every unknown task and listing the known ones."""
    known = set(known_tasks())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise TinyevalError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if not names:
        raise TinyevalError("no task given; e.g. --tasks gsm8k or --tasks tinyeval_all")
    return names


def leaf_tasks(names: list[str]) -> list[str]:
    """The leaf task names under `names` (groups expanded), from the YAML index without building tasks."""
    index = task_manager().task_index
    out: list[str] = []

    def walk(name: str) -> None:
        entry = index[name]
        if entry.kind.name == "GROUP":
            from lm_eval.tasks._yaml_loader import load_yaml

            for child in load_yaml(entry.yaml_path, resolve_func=False)["task"]:
                walk(child)
        elif name not in out:
            out.append(name)

    for name in check_task_names(names):
        walk(name)
    return out


def _leaf_config(name: str) -> dict:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(task_manager().task_index[name].yaml_path, resolve_func=False)


def output_types(names: list[str]) -> set[str]:
    """lm-eval output types of the leaf tasks under `names` (generate_until, multiple_choice, ...)."""
    return {_leaf_config(n).get("output_type", "generate_until") for n in leaf_tasks(names)}


def check_data(names: list[str], data_root: str | None = None) -> None:
    """Read the data of every leaf task under `names` before lm-eval does: a corrupt line is one error naming the
    file and line (lm-eval's reader would end in three chained tracebacks), a missing file one naming the path."""
    from tinyeval import data

    wanted = {(_leaf_config(n).get("dataset_kwargs") or {}).get("dataset") for n in leaf_tasks(names)}
    for dataset in sorted(wanted - {None}):
        data.check(dataset, data_root)


def stock_task_config(name: str, **overrides) -> dict:
    """A stock lm-eval task's YAML as a config dict (functions resolved), with `overrides` applied.

    Used by the parity check to point e.g. `gsm8k_cot_zeroshot` at a local file through the stock
    `dataset_path: json` + `data_files` route, without touching our own task index.
    """
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    matches = [p for p in Path(lm_eval.__file__).parent.joinpath("tasks").rglob("*.yaml")
               if f"task: {name}\n" in p.read_text(encoding="utf-8", errors="ignore")]
    if len(matches) != 1:
        raise TinyevalError(f"stock lm-eval task '{name}': found {len(matches)} YAMLs defining it")
    cfg = load_yaml(matches[0], resolve_func=True)
    cfg.pop("tag", None)
    return {**cfg, **overrides}
