"""`AdapterConfig`: one validated dataclass for every adapter method (a name in `registry.METHODS`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tinyeval.errors import TinyevalError

TYINGS = ("tiled", "structured")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class AdapterConfig:
    """What to attach to a model.

    method: a name in `registry.METHODS`: "tinylora" | "lora-xs" | "lora" | "full", or one registered at run time.
    params: TinyLoRA only: the trainable-parameter budget; the planner picks u and n_tie from it the way the
        paper does (one v per module with u as large as fits, and only once u = 1, tie modules). Ignored by
        the other methods, whose size follows from `rank` (so a sweep can pass one config shape to all).
    rank: r. SVD rank of the frozen factors (tinylora, lora-xs; the paper uses 2) or the LoRA rank.
    tying: TinyLoRA only: "tiled" (contiguous modules in depth order share v, whatever their type; the paper's
        winner) or "structured" (modules of the same type at nearby depth share v).
    target_modules: leaf names of the nn.Linear modules to adapt, in per-block order (that order defines
        "depth order" for tiling).
    seed: seeds the fixed random projections P (per module, from the module's name) and the SVD start block.
    svd: "krylov" (fast randomized block Krylov, checked, exact fallback) or "exact" (full torch.linalg.svd).
    svd_cache: reuse top-r factors from the on-disk cache keyed by each weight's fingerprint.
    lora_alpha: LoRA only; PEFT's scaling is lora_alpha / rank. Default: rank (scaling 1).
    u, n_tie: TinyLoRA only: set both to bypass the planner (ablations such as u > 1 with tying); `params`
        is then ignored and the trainable count is u · groups.
    """

    method: str = "tinylora"
    params: int | None = None
    rank: int = 2
    tying: str = "tiled"
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    seed: int = 0
    svd: str = "krylov"
    svd_cache: bool = True
    lora_alpha: float | None = None
    u: int | None = None
    n_tie: int | None = None
    extra: dict = field(default_factory=dict, compare=False, repr=False)  # free-form notes saved with artifacts

    def __post_init__(self) -> None:
        from tinyeval.adapters.registry import method

        cls = method(self.method)  # refuses a name nobody registered
        if self.tying not in TYINGS:
            raise TinyevalError(f"unknown tying {self.tying!r}: use one of {', '.join(TYINGS)}")
        if self.rank < 1:
            raise TinyevalError(f"rank must be >= 1, got {self.rank}")
        if (self.u is None) != (self.n_tie is None) or min(self.u or 1, self.n_tie or 1) < 1:
            raise TinyevalError(f"set both u and n_tie (each >= 1) or neither; got u={self.u}, n_tie={self.n_tie}")
        if self.svd not in ("krylov", "exact"):
            raise TinyevalError(f"svd must be 'krylov' or 'exact', got {self.svd!r}")
        if not self.target_modules:
            raise TinyevalError("target_modules is empty")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        cls.check_config(self)  # the method's own rules (e.g. tinylora needs a budget)

    def to_dict(self) -> dict:
        return {"method": self.method, "params": self.params, "rank": self.rank, "tying": self.tying,
                "target_modules": list(self.target_modules), "seed": self.seed, "svd": self.svd,
                "svd_cache": self.svd_cache, "lora_alpha": self.lora_alpha, "u": self.u, "n_tie": self.n_tie,
                "extra": self.extra}

    @classmethod
    def from_dict(cls, d: dict) -> "AdapterConfig":
        return cls(**{**d, "target_modules": tuple(d["target_modules"])})
