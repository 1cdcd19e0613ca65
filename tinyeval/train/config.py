"""Training configuration: the loop's knobs (with the adapter's), each objective's knobs, and named presets.

One dataclass per concern, because the loop skeleton is shared by every objective (GRPO, SFT) while an
objective's knobs are its own. `LoopConfig.adapter` is a `tinyeval.adapters.AdapterConfig` passed to the
adapter layer unchanged (method, params, rank, tying, ...): the method is whatever the adapters registry knows,
validated there, never listed here. A preset is a dict of field overrides; the CLI overrides on top of it, and
`recipes.build` routes each key to the dataclass that owns the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tinyeval.adapters import AdapterConfig
from tinyeval.errors import TinyevalError
from tinyeval.train.loss import ADVANTAGE_SCALES, AGGREGATIONS
from tinyeval.train.rewards import REWARDS

PAPER_LR_SWEEP = (1e-7, 5e-7, 1e-6, 5e-6, 1e-5, 1e-4, 2e-4)  # TinyLoRA paper, GSM8K: best LR per update size
DEFAULT_ADAPTER = dict(method="tinylora", params=13, rank=2)  # the paper's headline: 13 trainable parameters


@dataclass
class LoopConfig:
    """What every objective's training loop needs: model, adapter, data order, optimizer, records."""

    model: str = "smollm2-135m"  # alias, hub id or local directory
    adapter: AdapterConfig = field(default_factory=lambda: AdapterConfig(**DEFAULT_ADAPTER))  # seeded by `seed`
    task: str = "gsm8k"  # a name in tasks.TASKS
    steps: int | None = None  # optimizer-loop steps (None: `epochs` passes over the training prompts)
    epochs: float = 1.0  # used only when `steps` is None
    prompts_per_step: int = 8  # prompts drawn per step (each sampled G times by GRPO)
    lr: float = 1e-5
    lr_sweep: tuple[float, ...] = ()  # informational: the values a preset's paper swept (run one per value)
    warmup_ratio: float = 0.0  # linear warm-up over this fraction of the steps, then constant
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 disables clipping
    micro_batch: int = 16  # sequences per forward/backward (gradient accumulation; never changes the update)
    gradient_checkpointing: bool = False  # recompute each layer's activations in backward (train/memory.py)
    checkpoint_every: int = 10  # steps between checkpoints (one is always written at the end and on Ctrl-C)
    limit: int | None = None  # use only the first N training prompts (smoke tests)
    dtype: str = "auto"  # base-weight dtype (auto: tinyeval.models.default_dtype); adapter parameters stay fp32
    seed: int = 0
    threads: int | None = None  # torch CPU threads (None: torch's default)
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.adapter.seed != self.seed:  # one seed per run: adapter init, data order, sampling
            self.adapter = dataclasses.replace(self.adapter, seed=self.seed)
        positive = dict(prompts_per_step=self.prompts_per_step, micro_batch=self.micro_batch,
                        checkpoint_every=self.checkpoint_every, lr=self.lr, epochs=self.epochs)
        for name, value in positive.items():
            if value is None or value <= 0:
                raise TinyevalError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if self.steps is not None and self.steps <= 0:
            raise TinyevalError(f"--steps must be > 0, got {self.steps}")
        if not 0 <= self.warmup_ratio < 1:
            raise TinyevalError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")


@dataclass
class GRPOConfig:
    """The GRPO objective: sampling, reward, advantages, clipped loss, KL, importance sampling."""

    group_size: int = 4  # G completions per prompt
    max_new_tokens: int = 256
    max_prompt_tokens: int = 1024  # longer prompts are skipped with a warning
    temperature: float = 1.0
    top_p: float = 1.0
    reward: str = "strict"  # strict | lenient | format | random (see rewards.REWARDS, rewards.random_rewards)
    random_p: float | None = None  # reward "random": Bernoulli p; None: calibrated (rewards.calibrate)
    random_p_from: str = "strict"  # reward "random": the reward whose base-policy mean is p
    calibration_prompts: int = 8  # reward "random": training prompts (x group_size samples) p is measured on
    format_weight: float = 0.0  # optional format reward added on top (off by default)
    adv_scale: str = "group"  # group | batch | none
    aggregation: str = "token-mean"  # token-mean (DAPO) | seq-mean (GRPO) | dr-grpo
    eps_low: float = 0.2
    eps_high: float = 0.2
    kl_coef: float = 0.0  # k3 KL against the base model (adapter disabled)
    tis_cap: float = 2.0
    inner_epochs: int = 1  # mu: optimizer passes over each rollout batch
    engine: str = "auto"  # hf | vllm | auto (vllm on a GPU, hf on CPU: see rollout.engines.make_engine)
    vllm_sync: str = "auto"  # lora (a new LoRARequest) | merge (into the engine's weights) | auto: merge on CPU
    gen_batch: int = 32  # HF generate batch size

    def __post_init__(self) -> None:
        choices = dict(reward=(*REWARDS, "random"), random_p_from=REWARDS, adv_scale=ADVANTAGE_SCALES, aggregation=AGGREGATIONS,
                       engine=("hf", "vllm", "auto"), vllm_sync=("lora", "merge", "auto"))
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise TinyevalError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                    f"got '{getattr(self, name)}'")
        if self.random_p is not None and not 0 <= self.random_p <= 1:
            raise TinyevalError(f"--random-p must be in [0, 1], got {self.random_p}")
        if self.group_size < 2:
            raise TinyevalError("--group-size must be >= 2: advantages compare samples within a group")
        if self.max_new_tokens <= 0 or self.inner_epochs <= 0 or self.tis_cap <= 0 or self.temperature < 0:
            raise TinyevalError("--max-new-tokens, --inner-epochs and --tis-cap must be > 0, --temperature >= 0")


GRPO_PRESETS: dict[str, dict] = {
    # The paper's GSM8K runs (verl fork settings): 64 prompts x 4 samples, 4,096 new tokens, no KL,
    # 3 epochs, clip 0.2 / 0.4, token-mean, TIS cap 2, warm-up 5%, temperature 1. Sweep `lr_sweep`.
    "paper-gsm8k": dict(task="gsm8k", prompts_per_step=64, group_size=4, max_new_tokens=4096, kl_coef=0.0,
                        epochs=3.0, lr=1e-5, lr_sweep=PAPER_LR_SWEEP, eps_low=0.2, eps_high=0.4,
                        aggregation="token-mean", tis_cap=2.0, warmup_ratio=0.05, temperature=1.0),
    # SimpleRL-Zoo MATH settings: levels 3-5, 8 samples, batch 256, KL 0.001, prompt 1,024 / response 3,072.
    "paper-math": dict(task="math", prompts_per_step=256, group_size=8, max_prompt_tokens=1024,
                       max_new_tokens=3072, kl_coef=0.001, epochs=3.0, lr=1e-5, lr_sweep=PAPER_LR_SWEEP,
                       temperature=1.0, aggregation="token-mean"),
    # This CPU: SmolLM2 on procedurally generated single-digit arithmetic with short answers, rewarded for
    # the right number (lenient; strict is still recorded every step). 10 steps of 4 prompts x 4 samples take ~2 min
    # on one AVX2 core and lift greedy held-out accuracy 42% -> 52% on 150 items (TinyLoRA u = 1 per module, lr 2e-2;
    # 5e-3 gave 46%): `make demo` trains this; raise --steps for a real run (grpo_learning in BENCHMARKS.md).
    "cpu": dict(model="smollm2-135m", task="arith", prompts_per_step=4, group_size=4, max_new_tokens=24,
                steps=10, lr=2e-2, params=210, checkpoint_every=5, engine="hf", eps_high=0.28, threads=2,
                reward="lenient", max_prompt_tokens=256, temperature=0.7,
                dtype="float32"),  # bf16 matmuls are several times slower than fp32 on this AVX2 CPU
}


@dataclass
class SFTConfig:
    """The SFT objective's own knobs (the loop's are in `LoopConfig`)."""

    max_seq_tokens: int = 1024  # prompt + target; longer examples are skipped and counted
    keep_annotations: bool = False  # keep GSM8K's <<expr=value>> calculator annotations in the targets
    eval_every: int = 0  # held-out loss every N steps (0: only at the end of the run)
    eval_examples: int = 64  # held-out examples for that loss (the task's test split, first N)

    def __post_init__(self) -> None:
        if self.max_seq_tokens < 8:
            raise TinyevalError(f"--max-seq-tokens must be >= 8, got {self.max_seq_tokens}")
        if self.eval_every < 0 or self.eval_examples < 0:
            raise TinyevalError("--eval-every and --eval-examples must be >= 0")


SFT_PRESETS: dict[str, dict] = {
    # The paper gives no SFT hyper-parameters beyond "same budgets as RL" (Fig. 2); these mirror its GSM8K
    # GRPO runs: 64 examples per step, 3 epochs, the same learning-rate sweep, 5% warm-up.
    "paper-sft": dict(task="gsm8k", prompts_per_step=64, epochs=3.0, lr=1e-5, lr_sweep=PAPER_LR_SWEEP,
                      warmup_ratio=0.05, max_seq_tokens=2048),
    # This CPU: SmolLM2 + LoRA r1 on GSM8K train, 16 steps of 8 examples (fp32: bf16 matmuls are slower on this
    # CPU); meant to finish in <= 10 minutes with the held-out evaluations (see BENCHMARKS.md sft_learning).
    "cpu": dict(model="smollm2-135m", task="gsm8k", method="lora", rank=1, prompts_per_step=8, micro_batch=8,
                steps=16, lr=2e-3, max_seq_tokens=384, checkpoint_every=8, eval_every=8, eval_examples=16,
                threads=2, dtype="float32"),
    # This CPU, the demo's SFT cell: arith with `#### N` targets, the same adapter, steps and learning rate as the
    # GRPO cpu preset (same budget), 8 examples per step (~3 s a step on one AVX2 core).
    "cpu-arith": dict(model="smollm2-135m", task="arith", params=210, prompts_per_step=8, micro_batch=8, steps=10,
                      lr=2e-2, max_seq_tokens=128, checkpoint_every=5, eval_every=0, eval_examples=16, threads=2,
                      dtype="float32"),
}
