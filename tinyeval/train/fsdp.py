"""Full fine-tuning of a model that does not fit one device: FSDP2 (`torch.distributed.fsdp.fully_shard`).

A full-FT unit given K > 1 devices runs K processes (one per device: `tinyeval train --nproc K`, or
`torchrun --nproc-per-node K`; `train/distributed.py`); `recipes.run` makes each call `init_mesh()` and then
`shard_full_model(model)` before building its optimizer:

    mesh = init_mesh()                     # nccl on GPUs, gloo on CPUs; this rank's GPU selected
    model, tok = load_model(name, device="cpu")   # the whole model fits the host, not one GPU
    model = shard_full_model(model, mesh)  # each decoder layer, then the root: parameters become DTensor shards
    optimizer = torch.optim.AdamW(model.parameters(), ...)   # steps on the local shards only

`fully_shard` moves each unit's tensors to the mesh's device as it shards them, so a GPU never holds more than
one unsharded layer during set-up. Parameters are replaced by DTensors: collect them (the full handle's
`trainable_parameters()`) after sharding, never before.

Every parameter is split along dim 0 across the K ranks; a layer's full weights exist only while that layer runs
(all-gathered before its forward and again before its backward, freed after), and gradients are reduce-scattered
back to the shards. So the persistent memory per device is 1/K of weights, gradients and AdamW state, plus the
activations and one or two gathered layers. What does not change: FSDP is data parallel. Each rank feeds its own
slice of the batch and gradients are averaged over ranks, so a loss that is a mean over the rank's slice gives
the full-batch mean when the slices are the same size (tests/train/test_fsdp.py checks loss and weights against a
single process); a loss already weighted as a share of the whole batch (the training loop's) wants a sum
instead: `sum_gradients(model)`. `torch.nn.utils.clip_grad_norm_` works on the sharded gradients.
Saving: `full_state_dict(model)` gathers the unsharded weights (to CPU) for `save_pretrained`;
`save_gathered` writes a full handle's artifact from them, `gathered` turns a checkpoint's sharded tensors into
full ones on rank 0, and `shard_like` / `shard_optimizer_state` cut them back into this rank's shards on resume.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


def init_mesh(device_type: str | None = None):
    """The 1-D device mesh over every process of this job (env:// rendezvous: RANK, WORLD_SIZE, MASTER_ADDR...).

    Starts the default process group if needed: nccl with one GPU per rank (LOCAL_RANK), else gloo on CPU."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return init_device_mesh(device_type, (dist.get_world_size(),))


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: modules of the classes HF lists in `_no_split_modules`."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__}: no decoder layers found (its _no_split_modules: {sorted(names)})")
    return layers


def shard_full_model(model: nn.Module, mesh=None, reshard_after_forward: bool = True) -> nn.Module:
    """Shard `model` in place with FSDP2 over `mesh` (default: every rank of the default group): each decoder
    layer is its own unit (gathered only while it computes), then the root takes the rest (embeddings, final
    norm, LM head — tied weights stay one parameter). Returns the same object, now also an `FSDPModule`.

    `reshard_after_forward=False` keeps each layer gathered from forward to backward: one all-gather per layer
    instead of two, for the memory of the whole unsharded model."""
    from torch.distributed.fsdp import fully_shard

    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict, gathered to CPU on rank 0 (other ranks get {}). A collective: every rank calls
    it; rank 0 saves (`save_pretrained(dir, state_dict=...)`), so no device ever holds the whole model."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def sum_gradients(model: nn.Module) -> None:
    """Every FSDP unit of `model` sums gradients over the ranks instead of averaging them: for losses that are
    each rank's share of the whole batch (the loop weighs micro-batches by their share of the step)."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # a plain SUM (gloo has no PREMUL_SUM), no scaling


def is_sharded(t: object) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def gathered(obj: Any, keep: bool) -> Any:
    """`obj` (dicts, lists, tuples, values) with each sharded tensor replaced by its full tensor on the CPU where
    `keep` (rank 0), by None elsewhere. A collective: every rank calls it on the same structure."""
    if is_sharded(obj):
        full = obj.detach().full_tensor()  # all-gathered, one tensor at a time
        return full.cpu() if keep else None
    if isinstance(obj, dict):
        return {k: gathered(v, keep) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(gathered(v, keep) for v in obj)
    return obj


def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """This rank's shard of `full` laid out as the sharded tensor `like` (no communication: every rank holds
    `full`); `full` itself when `like` is a plain tensor."""
    if not is_sharded(like):
        return full
    from torch.distributed.tensor import distribute_tensor

    mesh = like.device_mesh
    return distribute_tensor(full.to(mesh.device_type), mesh, like.placements, src_data_rank=None)


def shard_optimizer_state(saved: dict, params: list[torch.Tensor]) -> dict:
    """An optimizer state dict read from a gathered checkpoint, its per-parameter tensors (AdamW's moments)
    sharded like `params`, ready for `optimizer.load_state_dict`; scalars such as `step` stay as they are."""
    def shard(value: Any, param: torch.Tensor) -> Any:
        full = isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape == param.shape
        return shard_like(value, param) if full else value

    state = {i: {k: shard(v, params[i]) for k, v in per_param.items()} for i, per_param in saved["state"].items()}
    return {**saved, "state": state}


def save_gathered(handle, out: Path) -> Path | None:
    """Save a sharded full fine-tune's artifact exactly as one process saves it (`handle.save`): the weights are
    gathered to rank 0's CPU (a collective), put into a plain copy of the model built on the meta device (no
    second copy of the weights), and saved from there. Returns `out` on rank 0, None on the others."""
    from tinyeval.models import meta_model

    state = full_state_dict(handle.model)
    if not state:
        return None
    plain = meta_model(handle.model.config)
    plain.load_state_dict(state, assign=True)
    plain.tie_weights()  # one tensor again where the model ties weights (the gathered state holds two copies)
    return type(handle)(plain, handle.config, handle.plan, handle.targets, handle.base_fingerprint).save(out)
