"""The handle every `attach` returns, and the class every adapter method is: one small interface over
TinyLoRA, LoRA-XS, LoRA (PEFT), full fine-tuning and any method registered later.

A method is one subclass, in its own module (`lowrank.py` for tinylora / lora-xs, `lora.py`, `full.py`), plus one
line in `registry.METHODS`. The subclass implements two parts:
  - what the method is: `cost` (its plan, from module shapes), `create` (attach it fresh), `write` (its files in
    an artifact) and `load` (attach it from those files). `wiring` and `artifact` call these and do the rest:
    planning, freezing the model, the base fingerprint, adapter.json, integrity hashes, NaN checks.
  - what trainers and evaluators use (the contract): `trainable_parameters`, `disabled`, `merge` / `unmerge`,
    `for_generation`, `merged_model`, `export_lora`, `save`, `state_bytes`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from tinyeval.adapters.planner import Plan, Target

if TYPE_CHECKING:
    from tinyeval.adapters.artifact import AdapterJson


class AdapterHandle:
    """An adapter attached to `model`. Subclasses implement the methods below.

    `config` is an `AdapterConfig`. It is not imported here, nor in the method modules: `AdapterConfig` checks
    method names against the registry, which imports every method, so an import back would close a loop.
    """

    def __init__(self, model: nn.Module, config, plan: Plan, targets: list[Target],
                 base_fingerprint: str):
        self.model = model
        self.config = config
        self.plan = plan
        self.targets = targets
        self.base_fingerprint = base_fingerprint  # of the targeted base weights, taken before any training
        # seconds of each phase of the `attach` / `load_adapter` that made this handle (`wiring`), for logs
        # and adapter.json; a method adds its own (TinyLoRA / LoRA-XS: svd_s)
        self.timings: dict[str, float] = {}

    # What the method is (called by `wiring` and `artifact`).

    @classmethod
    def check_config(cls, config) -> None:
        """Refuse settings this method cannot use (`AdapterConfig` calls it); by default anything goes."""

    @classmethod
    def cost(cls, targets: list[Target], config, total_params: int) -> Plan:
        """The plan of this method on these modules (`total_params`: every weight of the model)."""
        raise NotImplementedError

    @classmethod
    def create(cls, model: nn.Module, config, targets: list[Target], plan: Plan,
               base_fingerprint: str) -> AdapterHandle:
        """Attach a fresh adapter to `model`, whose weights are all frozen already."""
        raise NotImplementedError

    def write(self, out: Path, **kwargs) -> dict:
        """Write this method's files into the (empty) directory `out`; returns extra adapter.json fields."""
        raise NotImplementedError

    @classmethod
    def load(cls, model: nn.Module, config, targets: list[Target], plan: Plan, meta: AdapterJson,
             path: Path) -> AdapterHandle:
        """Attach the adapter saved in `path` (its files and base already verified) to the frozen `model`."""
        raise NotImplementedError

    # What trainers and evaluators use.

    @property
    def num_trainable(self) -> int:
        """Trainable parameters counted as the paper counts them (tied parameters once)."""
        return self.plan.trainable

    def trainable_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def disabled(self) -> AbstractContextManager:
        """Context in which the model computes the base model's outputs (e.g. a KL reference)."""
        raise NotImplementedError

    def merge(self) -> None:
        raise NotImplementedError

    def unmerge(self) -> None:
        raise NotImplementedError

    def for_generation(self) -> AbstractContextManager:
        """Context in which the model generates fastest with the adapter's current outputs.

        By default the model as it is; TinyLoRA / LoRA-XS fold the delta in for the duration, exactly (an
        unmerged side branch halves bf16 decoding speed on CPU). Nothing else may touch the handle inside."""
        return nullcontext(self.model)

    def merged_model(self) -> nn.Module:
        """The plain model with the adapter folded into its weights and nothing of the adapter left (no hooks,
        no extra state-dict keys), e.g. to `save_pretrained` a checkpoint vLLM loads. Ends the handle."""
        raise NotImplementedError

    def export_lora(self, out_dir: str | Path, min_rank: int | None = None) -> Path:
        raise NotImplementedError

    def save(self, out_dir: str | Path, **kwargs) -> Path:
        """Write the artifact atomically: this method's files plus adapter.json (with their hashes)."""
        from tinyeval.adapters.artifact import save

        return save(self, Path(out_dir), **kwargs)

    def state_bytes(self) -> int:
        """Bytes of the trainable state, i.e. what a weight sync must ship."""
        return sum(p.numel() * p.element_size() for p in self.trainable_parameters())
