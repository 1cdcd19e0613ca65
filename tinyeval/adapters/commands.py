"""`tinyeval plan`: size an adapter from the model config alone (no weights, no network)."""

from __future__ import annotations

from typing import Annotated, Optional, TypedDict

import typer


class PlanJson(TypedDict):
    """One row of `tinyeval plan --json`: the model and `planner.Plan.row()`."""

    model: str
    method: str
    rank: int
    modules: int
    u: int | None  # tinylora: length of each trained vector
    n_tie: int | None
    groups: int | None
    trainable: int
    bytes_fp32: int
    bytes_bf16: int
    tying: str | None


def plan(
    model: Annotated[str, typer.Option("--model", help="Alias, hub id or local model directory.")],
    params: Annotated[Optional[int], typer.Option("--params", help="TinyLoRA trainable-parameter budget.")] = None,
    tying: Annotated[str, typer.Option("--tying", help="tiled | structured (TinyLoRA weight tying).")] = "tiled",
    rank: Annotated[int, typer.Option("--rank", help="SVD rank r (tinylora, lora-xs) or LoRA rank.")] = 2,
    method: Annotated[str, typer.Option("--method", help="tinylora | lora-xs | lora | full (or a registered method).")] = "tinylora",
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Plan an adapter: u, n_tie, groups, trainable parameters and their size in fp32 / bf16."""
    from tinyeval.adapters.wiring import plan as make_plan
    from tinyeval.console import emit
    from tinyeval.models import load_config

    p = make_plan(load_config(model), params=params, tying=tying, rank=rank, method=method)
    emit([{"model": model, **p.row()}], f"tinyeval plan: {model}", as_json)
