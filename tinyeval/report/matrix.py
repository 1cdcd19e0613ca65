"""The method matrix of `tinyeval train-and-eval`: which cells to train, what each costs, from config alone.

A cell is one (method, budget, algorithm) to train and then evaluate on the same suite; a unit of work is one
(cell, seed, learning rate), and a cell is trained once per seed at every learning rate of its sweep (the paper's
protocol: the best of seven learning rates per update size, three seeds). The plan needs no weights: trainable counts come from the adapters' planner on a meta-device model, and the cost estimate
from a FLOPs model whose assumptions are spelled out in `CostModel`, so `--dry-run` of a 7B paper run
works on a laptop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from tinyeval.errors import TinyevalError
from tinyeval.train.config import PAPER_LR_SWEEP


CONTROL_REWARDS = ("random", "format")


@dataclass(frozen=True)
class CellSpec:
    """One cell: `method` + budget (`params` for TinyLoRA, `rank` for LoRA / LoRA-XS) + `algo`.

    TinyLoRA ablations keep the budget and change how it is spent: `tying` (tiled | structured) and the frozen SVD
    rank `rank` (the paper's r = 2); a cell that differs from those defaults says so in its name
    (tinylora-13-structured-grpo, tinylora-13-r4-grpo)."""

    method: str  # base | tinylora | lora-xs | lora | full
    algo: str | None = None  # grpo | sft | None (base: evaluated, never trained)
    params: int | None = None
    rank: int = 2
    tying: str = "tiled"  # TinyLoRA only
    reward: str | None = None  # GRPO: None = the train preset's; "random" / "format": a control cell (see below)

    @property
    def name(self) -> str:
        if self.method == "base":
            return "base"
        budget = {"tinylora": f"-{self.params}", "lora": f"-r{self.rank}", "lora-xs": f"-r{self.rank}"}
        ablation = ""
        if self.method == "tinylora":
            ablation = ("" if self.tying == "tiled" else f"-{self.tying}") + ("" if self.rank == 2 else f"-r{self.rank}")
        control = f"-{self.reward}" if self.reward else ""
        return f"{self.method}{budget.get(self.method, '')}{ablation}-{self.algo}{control}"

    @property
    def control(self) -> bool:
        """A control cell: trained on a reward that cannot teach the task (random draws, or format only), with the
        same adapter and budget as the cell it controls. A gain it shares with that cell is not learning."""
        return self.reward in CONTROL_REWARDS


@dataclass(frozen=True)
class MatrixPreset:
    """A named matrix: the cells, the training preset each algorithm uses, and the evaluation suite."""

    cells: tuple[CellSpec, ...]
    train_preset: dict[str, str]  # algo -> preset name of `tinyeval train`
    tasks: tuple[str, ...]
    eval_limit: int | None = None
    max_gen_toks: int | None = None  # None: each task's own budget (512 gsm8k, 1024 math500)
    eval_batch_size: int = 20  # HF backend batch
    full_above_3b: bool = False  # full fine-tuning of >3B models is opt-in (memory), per the issue
    seeds: int = 1  # seeds per cell (`--seeds`)
    lr_sweep: dict[str, tuple[float, ...]] = field(default_factory=dict)  # algo -> the `--lr-sweep preset` values
    sweep_by_default: bool = False  # without `--lr-sweep`: sweep (the paper's protocol) or train at the preset's lr
    dev_items: int = 256  # dev items carved from each cell's training split to choose the learning rate on
    backend: str = "auto"  # eval backend unless --backend says (auto: vLLM where installed)
    method_lr: dict[str, float] = field(default_factory=dict)  # method -> lr without a sweep (else the train preset's)


_PAPER_CELLS = (
    CellSpec("base"),
    *(CellSpec("tinylora", "grpo", params=p) for p in (1, 13, 49, 196, 392)),
    CellSpec("lora-xs", "grpo", rank=2),
    CellSpec("lora", "grpo", rank=1),
    CellSpec("lora", "grpo", rank=8),
    CellSpec("full", "grpo"),
    CellSpec("tinylora", "sft", params=13),
    CellSpec("lora", "sft", rank=1),
    # the controls of TinyLoRA-13's gain: GRPO on random rewards (p = the base policy's mean reward) and on the
    # answer format only, same adapter and budget; a gain they share is not learning from the reward
    CellSpec("tinylora", "grpo", params=13, reward="random"),
    CellSpec("tinylora", "grpo", params=13, reward="format"),
)

PRESETS: dict[str, MatrixPreset] = {
    "paper": MatrixPreset(_PAPER_CELLS, {"grpo": "paper-gsm8k", "sft": "paper-sft"},
                          ("gsm8k", "gsm8k_twins", "math500", "tinyeval_nonmath", "tinyeval_legal"), seeds=3,
                          lr_sweep={"grpo": PAPER_LR_SWEEP, "sft": PAPER_LR_SWEEP}, sweep_by_default=True),
    # The first demo (GSM8K): five cells, 40 GSM8K items per cell with 256 new tokens; SmolLM2 scores ~0 there, so it
    # shows the machinery rather than an effect. The scheduler's tests and matrix_scaling run its tiny cells.
    "cpu-gsm8k": MatrixPreset(
        (CellSpec("base"), CellSpec("tinylora", "grpo", params=13), CellSpec("tinylora", "grpo", params=196),
         CellSpec("lora", "grpo", rank=1), CellSpec("lora", "sft", rank=1)),
        {"grpo": "cpu", "sft": "cpu"}, ("gsm8k",), eval_limit=40, max_gen_toks=256, eval_batch_size=40,
        lr_sweep={"grpo": (1.25e-3, 5e-3), "sft": (5e-4, 2e-3)}, dev_items=16),
    # `make demo`: a slice of claims-cpu in <= 10 minutes on 2 AVX2 cores with 2 workers. The task SmolLM2 learns
    # (arith), held-out items and their twins; base vs TinyLoRA (u = 1 per module: 210 parameters) trained by GRPO,
    # by SFT and by GRPO on random rewards (the control), 2 seeds. HF eval: 100 short greedy answers per task take
    # ~30 s on one core, less than one vLLM-CPU engine start.
    "cpu": MatrixPreset(
        (CellSpec("base"), CellSpec("tinylora", "grpo", params=210), CellSpec("tinylora", "sft", params=210),
         CellSpec("tinylora", "grpo", params=210, reward="random")),
        {"grpo": "cpu", "sft": "cpu-arith"}, ("arith", "arith_twins"), eval_limit=100, eval_batch_size=100, seeds=2,
        lr_sweep={"grpo": (5e-3, 2e-2), "sft": (5e-3, 2e-2)}, dev_items=48, backend="hf"),
    # The paper's five claims at 135M (benchmarks/claims.py): GRPO and SFT at 1, 13, 210 (every module, u = 1)
    # TinyLoRA parameters, LoRA-XS r2, LoRA r1 and full fine-tuning; near 13 parameters structured tying (14: its
    # nearest budget, one v per module type per half of the depth; any bias favours it) and frozen
    # ranks 1 and 4 (GRPO); the random-reward control; 3 seeds, two learning rates per algorithm chosen on 48 dev
    # items; 128 held-out items and their twins. Sized for ~2.5 h on 2 AVX2 cores with 2 workers (10 GRPO steps
    # ~2.5 min a unit, SFT ~1 min, each evaluation ~40 s).
    "claims-cpu": MatrixPreset(
        (CellSpec("base"),
         *(CellSpec("tinylora", algo, params=p) for algo in ("grpo", "sft") for p in (1, 13, 210)),
         *(CellSpec(m, algo, rank=r) for algo in ("grpo", "sft") for m, r in (("lora-xs", 2), ("lora", 1))),
         CellSpec("full", "grpo"), CellSpec("full", "sft"),
         CellSpec("tinylora", "grpo", params=14, tying="structured"),  # 7 module types x 2; at 13 it would get 7
         CellSpec("tinylora", "grpo", params=13, rank=1), CellSpec("tinylora", "grpo", params=13, rank=4),
         CellSpec("tinylora", "grpo", params=13, reward="random")),
        {"grpo": "cpu", "sft": "cpu-arith"}, ("arith", "arith_twins"), eval_limit=128, eval_batch_size=128, seeds=3,
        lr_sweep={"grpo": (5e-3, 2e-2), "sft": (5e-3, 2e-2), **{f"{a}:{m}": lrs for a in ("grpo", "sft")
                  for m, lrs in (("lora", (2e-4, 1e-3)), ("full", (2e-6, 1e-5)))}},
        sweep_by_default=True, dev_items=48, backend="hf", method_lr={"lora": 1e-3, "full": 1e-5}),
}


def select(preset: str, methods: list[str] | None = None, include_full: bool | None = None,
           n_layers_params: int = 0) -> list[CellSpec]:
    """The preset's cells, filtered by `--methods` (cell names or method names); base always first."""
    if preset not in PRESETS:
        raise TinyevalError(f"unknown matrix preset '{preset}'; choose {', '.join(PRESETS)}")
    cells = list(PRESETS[preset].cells)
    if include_full is False or (include_full is None and n_layers_params > 3.5e9):
        cells = [c for c in cells if c.method != "full"]
    if methods:
        known = {c.name for c in PRESETS[preset].cells} | {c.method for c in PRESETS[preset].cells}
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise TinyevalError(f"--methods {', '.join(unknown)}: not in preset '{preset}' ({', '.join(sorted(known))})")
        cells = [c for c in cells if c.method == "base" or c.name in methods or c.method in methods]
    return cells


@dataclass(frozen=True)
class CostModel:
    """FLOPs-based GPU-hour estimate; every assumption is a field so a user can see and change it.

    Generation: 2·N FLOPs per generated token at `gen_mfu` of peak (decoding is memory-bound, hence low).
    Training: forward + backward over prompt + response tokens, 6·N FLOPs per token when every weight
    gets a gradient (full), 4·N when only an adapter does (activation gradients still flow through W).
    """

    peak_flops: float = 989e12  # H100 SXM dense bf16
    gen_mfu: float = 0.10
    train_mfu: float = 0.35
    mean_response_tokens: dict = field(default_factory=lambda: {"gsm8k": 300, "math": 600, "default": 300})
    mean_prompt_tokens: int = 150

    def gpu_hours(self, n_params: int, gen_tokens: int, train_tokens: int, full: bool) -> float:
        gen = 2 * n_params * gen_tokens / (self.peak_flops * self.gen_mfu)
        train = (6 if full else 4) * n_params * train_tokens / (self.peak_flops * self.train_mfu)
        return (gen + train) / 3600


def plan_rows(config, cells: list[CellSpec]) -> dict[str, dict]:
    """Trainable parameters and bytes of every cell, from the adapters' planner on a meta-device model."""
    from tinyeval.adapters import plan

    rows = {}
    for c in cells:
        if c.method == "base":
            rows[c.name] = {"trainable": 0, "bytes_bf16": 0, "bytes_fp32": 0}
        else:
            p = plan(config, params=c.params, tying=c.tying, rank=c.rank, method=c.method)
            rows[c.name] = {"trainable": p.trainable, "bytes_bf16": p.bytes_bf16, "bytes_fp32": p.bytes_fp32}
    return rows


def _train_size(task: str, data_root: str | None) -> int | None:
    """Training prompts of a task, read from the data (None when neither data root nor hub has it)."""
    from tinyeval.train.tasks import get_task

    try:
        return len(get_task(task).rows("train", data_root))
    except TinyevalError:
        return None


def _eval_items(tasks: list[str], limit: int | None, data_root: str | None) -> dict[str, int | None]:
    """Items of the generative math tasks in the suite (their generation dominates evaluation cost); None for a
    task whose data neither the data root nor the hub has."""
    from tinyeval import data

    sizes: dict[str, int | None] = {}
    # gsm8k_twins: one twin per covered GSM8K test item (1,125 of 1,319 at seed 0); its size is only known once the
    # twins are built (~10 s), so the plan counts the originals, an upper bound
    for task, (name, split) in {"gsm8k": ("gsm8k", "test"), "gsm8k_twins": ("gsm8k", "test"),
                                "math500": ("math500", "test")}.items():
        if task in tasks:
            try:
                n = len(data.load(name, split, data_root).rows)
            except TinyevalError:
                sizes[task] = None
                continue
            sizes[task] = min(n, limit) if limit else n
    return sizes


def train_configs(model: str, preset: str, cell: CellSpec):
    """(LoopConfig, objective config) that `tinyeval train` builds for a trained cell of `preset`."""
    from tinyeval.train import recipes

    name = PRESETS[preset].train_preset[cell.algo]
    return recipes.build(cell.algo, name, model=model)  # an unknown preset name is a TinyevalError


def train_steps(loop, data_root: str | None) -> int | None:
    """Steps a cell trains: the preset's fixed count, else its epochs over the training set (None: size unknown)."""
    from tinyeval.train.loop import total_steps

    if loop.steps:
        return loop.steps
    n_train = _train_size(loop.task, data_root)
    return total_steps(loop, n_train) if n_train else None


UNKNOWN_SIZE = ("dataset size unknown (no data root, hub unreachable): steps, tokens and GPU-hours cannot be "
                "estimated; pass --data-root or set TINYEVAL_DATA")


def resolve_sweep(preset: str, value: str | None) -> dict[str, tuple[float, ...]] | None:
    """`--lr-sweep`: None -> the preset's default; "preset" -> its lists; "off" -> no sweep; "1e-5,1e-4" -> those
    values for every algorithm. A sweep of one value is no sweep (nothing to choose)."""
    spec = PRESETS[preset]
    if value is None:
        value = "preset" if spec.sweep_by_default else "off"
    if value == "off":
        return None
    if value == "preset":
        if not spec.lr_sweep:
            raise TinyevalError(f"preset '{preset}' has no learning-rate sweep; pass --lr-sweep 1e-5,1e-4")
        return {algo: tuple(sorted(lrs)) for algo, lrs in spec.lr_sweep.items()}
    try:
        lrs = tuple(sorted({float(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise TinyevalError(f"--lr-sweep '{value}': expected preset, off, or learning rates like 1e-5,1e-4") from None
    if not lrs or min(lrs) <= 0:
        raise TinyevalError(f"--lr-sweep '{value}': learning rates must be > 0")
    return None if len(lrs) == 1 else {algo: lrs for algo in ("grpo", "sft")}


def learning_rates(model: str, preset: str, cell: CellSpec, sweep: dict[str, tuple[float, ...]] | None,
                   lr: float | None = None) -> tuple[float, ...]:
    """The learning rates a trained cell is trained at: its sweep ("algo:method" before "algo": update sizes that
    differ by orders of magnitude need their own range), else `lr`, the preset's lr for its method, or the train
    preset's."""
    if sweep:
        return sweep.get(f"{cell.algo}:{cell.method}", sweep[cell.algo])
    return (lr or PRESETS[preset].method_lr.get(cell.method) or train_configs(model, preset, cell)[0].lr,)


class PlanRow(TypedDict):
    """One cell of `tinyeval train-and-eval --dry-run --json`; null marks what the data could not tell."""

    cell: str
    method: str
    algo: str  # grpo | sft | "–" (base: not trained)
    trainable: int
    bytes_bf16: int
    bytes_fp32: int
    steps: int | None  # per unit
    units: int  # (seed, learning rate) pairs trained; 1 for base
    gen_tokens: int | None  # every unit's rollouts, dev and test generations
    train_tokens: int | None
    gpu_hours: float | None
    note: NotRequired[str]  # why a field is null


class PlanTotal(TypedDict):
    units: int
    seeds: int
    learning_rates: dict[str, list[float]]  # algo -> learning rates each cell of it trains at
    gpu_hours: float | None
    gpus: int
    gpus_per_unit: int
    wall_hours: float | None  # on `gpus` GPUs: the two rounds (train every unit, then test the chosen), packed


class PlanJson(TypedDict):
    """`tinyeval train-and-eval --dry-run --json`."""

    cells: list[PlanRow]
    total: PlanTotal


def _train_cost(cell: CellSpec, model: str, preset: str, data_root: str | None,
                cost: CostModel) -> tuple[int | None, int | None, int | None, int]:
    """(steps, generated tokens, trained tokens, rollout response length) of one unit; the first three None when its
    dataset size is unknown."""
    if cell.algo is None:
        return 0, 0, 0, 0
    loop, obj = train_configs(model, preset, cell)
    response = min(cost.mean_response_tokens.get(loop.task, cost.mean_response_tokens["default"]),
                   getattr(obj, "max_new_tokens", 10**9))
    steps = train_steps(loop, data_root)
    if steps is None:
        return None, None, None, response
    samples = steps * loop.prompts_per_step * getattr(obj, "group_size", 1)
    gen = samples * response if cell.algo == "grpo" else 0
    if cell.reward == "random":  # the calibration pass before step 1: p measured on the base policy's samples
        gen += obj.calibration_prompts * obj.group_size * response
    return steps, gen, samples * (cost.mean_prompt_tokens + response), response


def makespan(hours: list[float], slots: int) -> float:
    """Wall time of jobs packed longest first onto `slots` parallel slots (each to the least loaded one)."""
    import heapq

    loads = [0.0] * max(1, slots)
    for h in sorted(hours, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + h)
    return max(loads)


def dry_run(model: str, preset: str, cells: list[CellSpec], tasks: list[str], eval_limit: int | None,
            data_root: str | None = None, cost: CostModel = CostModel(), max_gen_toks: int | None = None,
            seeds: int = 1, sweep: dict[str, tuple[float, ...]] | None = None, dev_items: int = 256, gpus: int = 1,
            gpus_per_unit: int = 1) -> PlanJson:
    """The plan: per cell, trainable parameters, bytes, units, tokens, GPU-hours; in total, the wall-clock hours of
    both rounds on `gpus` GPUs (`gpus_per_unit` per unit, perfect scaling within a unit assumed)."""
    from tinyeval.models import load_config, meta_model

    config = load_config(model)
    n_params = sum(p.numel() for p in meta_model(config).parameters())
    sizes = plan_rows(config, cells)
    eval_items = _eval_items(tasks, eval_limit, data_root)
    eval_tokens = None if None in eval_items.values() else sum(
        n * min(cost.mean_response_tokens.get({"math500": "math", "gsm8k_twins": "gsm8k"}.get(t, t), 300),
                max_gen_toks or 10**9)
        for t, n in eval_items.items())
    rows, first_round, second_round, lrs = [], [], [], {}
    for c in cells:
        steps, gen, train_tokens, response = _train_cost(c, model, preset, data_root, cost)
        n_lrs = len(learning_rates(model, preset, c, sweep)) if c.algo else 1
        units = n_lrs * seeds if c.algo else 1
        row = PlanRow(cell=c.name, method=c.method, algo=c.algo or "–", **sizes[c.name], steps=steps, units=units,
                      gen_tokens=None, train_tokens=None, gpu_hours=None)
        if c.algo:
            lrs[c.algo] = list(learning_rates(model, preset, c, sweep))
        if gen is None or eval_tokens is None:
            row["note"] = UNKNOWN_SIZE
            rows.append(row)
            continue
        dev = dev_items * response if n_lrs > 1 else 0  # each unit's greedy answers on the dev split
        train_h = cost.gpu_hours(n_params, gen + dev, train_tokens, c.method == "full")
        test_h = cost.gpu_hours(n_params, eval_tokens, 0, False)
        tested = seeds if c.algo else 1
        if n_lrs > 1:
            first_round += [train_h] * units
            second_round += [test_h] * tested
        else:
            first_round += [train_h + test_h] * units
        row.update(gen_tokens=units * (gen + dev) + tested * eval_tokens, train_tokens=units * train_tokens,
                   gpu_hours=round(units * train_h + tested * test_h, 2))
        rows.append(row)
    known = all("note" not in r for r in rows)
    slots = max(1, gpus // gpus_per_unit)
    wall = (makespan(first_round, slots) + makespan(second_round, slots)) / gpus_per_unit if known else None
    total = PlanTotal(units=sum(r["units"] for r in rows), seeds=seeds, learning_rates=lrs,
                      gpu_hours=round(sum(r["gpu_hours"] for r in rows), 1) if known else None, gpus=gpus,
                      gpus_per_unit=gpus_per_unit, wall_hours=None if wall is None else round(wall, 1))
    return PlanJson(cells=rows, total=total)
