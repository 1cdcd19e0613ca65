"""What the trainer does about memory: measure the peak, and trade recomputation for activations.

Peak memory (`peak_memory`), recorded in every step record and the summary:
    cuda_max_allocated  `torch.cuda.max_memory_allocated` of the device the trained parameters sit on
    rss                 the process's peak resident set size (`ru_maxrss`), for a run on the CPU
Both are high-water marks of the whole process so far (model loading included), never reset: resetting
them would change what any caller measures around a run (the GPU check reads `max_memory_allocated`
after it, `benchmarks/grpo_vs_trl.py` the peak RSS). A step's own peak shows where the value grows.

Gradient checkpointing (`--gradient-checkpointing`): HF's `gradient_checkpointing_enable` with
`use_reentrant=False`: the reentrant variant drops the gradient of v when the checkpointed block's inputs do
not require grad (DEVELOPERS.md). HF checkpoints a decoder layer only while that layer is in training
mode; tinyeval trains in eval mode (no dropout), so `checkpointing(model)` sets the training flag of the
checkpointed layers themselves, not of their children, for the duration of a loss forward: attention and
MLP dropout stay off and the loss is the non-checkpointed one.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from tinyeval.errors import TinyevalError


def peak_memory(device: torch.device | str) -> tuple[int, str]:
    """(bytes, kind): the process's memory high-water mark on `device` (see the module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "rss"  # Linux reports KiB


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Non-reentrant gradient checkpointing of every decoder layer of an HF model."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise TinyevalError(f"--gradient-checkpointing: {type(model).__name__} does not support it")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if hasattr(model, "disable_input_require_grads"):  # HF's hook for the reentrant variant: not needed here
        model.disable_input_require_grads()


@contextmanager
def checkpointing(model: nn.Module) -> Iterator[None]:
    """While inside, the layers HF checkpoints are in training mode (their own flag only); a no-op when
    gradient checkpointing is off."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]
    before = [m.training for m in layers]
    for m in layers:
        m.training = True
    try:
        yield
    finally:
        for m, mode in zip(layers, before):
            m.training = mode
