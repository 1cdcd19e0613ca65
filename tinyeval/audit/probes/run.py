"""Leakage probes on a model: does it know the benchmark items better than items it cannot have seen?

Three probes, each a statistic with a 95% bootstrap interval and a control that answers "compared to what":
  * accuracy   - originals vs their own verified number-perturbed twins (paired): a model that memorised
                 GSM8K answers loses accuracy when the numbers change; strict and lenient both reported.
  * prefix     - Wu et al. 2025: give the first 60% of a problem (raw text, no chat template), complete it
                 greedily, score exact match and ROUGE-L of the remaining 40%; control = fresh items (GSM1k
                 for GSM8K; MATH test problems outside MATH500 for MATH500, a same-source reference).
  * membership - Min-K% and Min-K%++ of every item vs its twin (paired AUROC) and vs GSM1k (AUROC).

Each signal's "suggests" reads only its interval against the no-leak value (0 difference, AUROC 0.5):
an interval that contains it is no evidence either way at this sample size.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tinyeval.audit.probes.stats import Estimate, auroc_ci, diff_ci, mean_ci, paired_diff_ci
from tinyeval.errors import TinyevalError

GSM8K_PROMPT = '{question}\nLet\'s think step by step and output the final answer after "####".'  # = tasks/gsm8k
PROBES = ("accuracy", "prefix", "membership")
BENCHMARKS = {"gsm8k": ("question", "gsm1k_public"), "math500": ("problem", "math")}  # text field, control set


@dataclass(frozen=True)
class ProbeConfig:
    """One probe run.

    model: alias, hub id or directory (`tinyeval models`); adapter: a `tinyeval.adapters` directory.
    benchmark: gsm8k | math500. probes: any of accuracy, prefix, membership (accuracy needs GSM8K twins).
    n_generate: items for the generation probes (accuracy, prefix); n_membership: items scored for
        membership (None = the whole split). Items are a seeded random sample.
    max_new_tokens: answer budget of the accuracy probe; prefix_new_tokens: completion budget of the prefix
        probe (the remainder is scored on as many words as it has).
    prefix_ratio: share of the problem's words given as the prefix (0.6 in Wu et al.).
    k: share of lowest-scoring tokens in Min-K% / Min-K%++.
    backend: auto (vLLM for generation when installed, else transformers) | hf | vllm.
        Membership scores always use transformers: they need the full next-token distribution.
    dtype: auto = tinyeval.models.default_dtype() (bf16 where the hardware computes in it, else fp32).
    """

    model: str = "smollm2-135m"
    benchmark: str = "gsm8k"
    adapter: str | None = None
    probes: tuple[str, ...] = PROBES
    n_generate: int = 200
    n_membership: int | None = None
    max_new_tokens: int = 256
    prefix_new_tokens: int = 48
    prefix_ratio: float = 0.6
    k: float = 0.2
    seed: int = 0
    batch_size: int = 16
    n_boot: int = 2000
    backend: str = "auto"
    dtype: str = "auto"
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.benchmark not in BENCHMARKS:
            raise TinyevalError(f"probes support {', '.join(BENCHMARKS)}, not '{self.benchmark}'")
        unknown = set(self.probes) - set(PROBES)
        if unknown:
            raise TinyevalError(f"unknown probe(s) {', '.join(sorted(unknown))}; known: {', '.join(PROBES)}")
        if not 0 < self.prefix_ratio < 1 or not 0 < self.k <= 1:
            raise TinyevalError("prefix_ratio must be in (0, 1) and k in (0, 1]")
        if self.n_generate < 2 or (self.n_membership is not None and self.n_membership < 2):
            raise TinyevalError("n_generate and n_membership must be at least 2 (a CI needs a sample)")
        if self.backend not in ("auto", "hf", "vllm"):
            raise TinyevalError(f"backend must be auto, hf or vllm, not '{self.backend}'")


@dataclass
class Signal:
    """One row of the verdict table."""

    probe: str
    signal: str
    estimate: Estimate
    null: float | None  # the value expected without leakage; None for a level reported for context
    higher_means: str  # what an interval above `null` suggests (for a level: what it is)
    detail: dict = field(default_factory=dict)

    @property
    def suggests(self) -> str:
        if self.null is None:
            return self.higher_means
        if self.estimate.lo > self.null:
            return self.higher_means
        if self.estimate.hi < self.null:
            return f"below {self.null:g}: the control looks more familiar than the benchmark"
        return f"no evidence (interval contains {self.null:g})"

    def row(self) -> dict:
        e = self.estimate
        return {"probe": self.probe, "signal": self.signal, "value": round(e.value, 4),
                "ci95": f"[{e.lo:.3f}, {e.hi:.3f}]", "n": e.n, "suggests": self.suggests}


@dataclass
class Model:
    """What the probes need from a model: batched generation and the transformers model for scoring."""

    hf: object
    tokenizer: object
    generate: Callable[[Sequence[str], int], list[str]]
    backend: str


# ---- probes -------------------------------------------------------------------------------------------

def accuracy_probe(model: Model, rows: list[dict], twins: list, config: ProbeConfig) -> list[Signal]:
    """Paired accuracy of originals and their twins, strict and lenient."""
    from tinyeval.generation import chat_prompt
    from tinyeval.grading import grade_gsm8k

    picked = _sample(twins, config.n_generate, config.seed)
    originals = [rows[t.index] for t in picked]
    prompts = [chat_prompt(model.tokenizer, GSM8K_PROMPT.format(question=q)) for q in
               [r["question"] for r in originals] + [t.question for t in picked]]
    outputs = model.generate(prompts, config.max_new_tokens)
    grades = [grade_gsm8k(out, gold["answer"]) for out, gold in
              zip(outputs, originals + [{"answer": t.answer} for t in picked])]
    n = len(picked)
    signals = []
    for mode in ("strict", "lenient"):
        ok = np.array([getattr(g, mode) for g in grades], float)
        orig, twin = ok[:n], ok[n:]
        detail = {"original": str(mean_ci(orig, config.n_boot)), "twin": str(mean_ci(twin, config.n_boot))}
        signals.append(Signal("accuracy", f"accuracy original - twin ({mode})",
                              paired_diff_ci(orig, twin, config.n_boot, seed=config.seed), 0.0,
                              "originals solved more often than their twins: consistent with memorised answers",
                              detail))
        signals.append(Signal("accuracy", f"accuracy on originals ({mode})", mean_ci(orig, config.n_boot), None,
                              f"level, for context; twins: {detail['twin']}", {}))
    return signals


def split_prefix(text: str, ratio: float) -> tuple[str, str]:
    """First `ratio` of the words (at least one) and the rest: the Wu et al. 2025 partial-prompt split."""
    words = text.split()
    cut = min(max(1, math.ceil(len(words) * ratio)), len(words) - 1)
    return " ".join(words[:cut]), " ".join(words[cut:])


def prefix_scores(model: Model, texts: Sequence[str], config: ProbeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Exact match and ROUGE-L F1 of each greedy completion against the true remainder of its text."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    parts = [split_prefix(t, config.prefix_ratio) for t in texts]
    outputs = model.generate([p for p, _ in parts], config.prefix_new_tokens)
    em, rouge = [], []
    for (_, rest), out in zip(parts, outputs):
        want = rest.split()
        got = out.split()[: len(want)]
        em.append(float(got == want))
        rouge.append(scorer.score(" ".join(want), " ".join(got))["rougeL"].fmeasure if got else 0.0)
    return np.array(em), np.array(rouge)


def prefix_probe(model: Model, texts: list[str], control: list[str], config: ProbeConfig) -> list[Signal]:
    bench = _sample(texts, config.n_generate, config.seed)
    ctrl = _sample(control, config.n_generate, config.seed)
    em, rouge = prefix_scores(model, bench, config)
    c_em, c_rouge = prefix_scores(model, ctrl, config)
    detail = {"bench_em": str(mean_ci(em, config.n_boot)), "control_em": str(mean_ci(c_em, config.n_boot)),
              "bench_rougeL": str(mean_ci(rouge, config.n_boot)),
              "control_rougeL": str(mean_ci(c_rouge, config.n_boot))}
    return [
        Signal("prefix", "prefix exact match of the last 40%", mean_ci(em, config.n_boot), 0.0,
               "completes benchmark problems verbatim: text seen in training", detail),
        Signal("prefix", "prefix ROUGE-L benchmark - control", diff_ci(rouge, c_rouge, config.n_boot,
                                                                       seed=config.seed), 0.0,
               "continues benchmark text more faithfully than fresh text: text seen in training", detail),
    ]


def membership_probe(model: Model, texts: list[str], twins: dict[int, str], control: list[str],
                     config: ProbeConfig, control_name: str) -> list[Signal]:
    """AUROC of Min-K% / Min-K%++: every benchmark item against the control set, and the items that have
    a twin (`twins`: position in `texts` -> twin text) against their own twins, paired."""
    from tinyeval.audit.probes.membership import score_texts

    def score(batch: list[str]) -> dict[str, np.ndarray]:
        return score_texts(model.hf, model.tokenizer, batch, config.k, max(1, config.batch_size // 4))

    bench, ctrl = score(texts), score(control)
    paired = sorted(twins)
    twin = score([twins[i] for i in paired]) if paired else None
    signals = []
    for name, label in (("min_k", "Min-K%"), ("min_k_pp", "Min-K%++")):
        detail = {"bench_mean": float(bench[name].mean()), "control_mean": float(ctrl[name].mean()),
                  "logprob_auroc_control": str(auroc_ci(bench["logprob"], ctrl["logprob"], n_boot=config.n_boot))}
        if twin is not None:
            detail["logprob_auroc_twins"] = str(auroc_ci(bench["logprob"][paired], twin["logprob"], paired=True,
                                                         n_boot=config.n_boot))
            signals.append(Signal("membership", f"{label} AUROC vs perturbed twins",
                                  auroc_ci(bench[name][paired], twin[name], paired=True, n_boot=config.n_boot),
                                  0.5, "benchmark items more familiar than the same items with new numbers", detail))
        signals.append(Signal("membership", f"{label} AUROC vs {control_name}",
                              auroc_ci(bench[name], ctrl[name], n_boot=config.n_boot), 0.5,
                              f"benchmark items more familiar than {control_name} items", detail))
    return signals


# ---- orchestration ---------------------------------------------------------------------------------------

def _sample(items: Sequence, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return list(items)
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), n))]


def load_probe_model(config: ProbeConfig) -> Model:
    """The model (and adapter) with a generation backend: vLLM when asked or installed, else transformers.

    vLLM generates 2.5x faster than transformers even on an AVX2 CPU (BENCHMARKS.md eval_backends); it gets the
    adapter as a merged checkpoint, written to a scratch directory that lives as long as the process.
    """
    import atexit
    import importlib.util
    import shutil
    import tempfile

    from tinyeval.generation import generate
    from tinyeval.models import load_model, model_dir

    device = "cuda" if _is_gpu() else "cpu"
    hf, tok = load_model(config.model, dtype=config.dtype, device=device)
    if config.adapter:
        from tinyeval.adapters import load_adapter

        hf = load_adapter(hf, config.adapter).model
    use_vllm = config.backend == "vllm" or (config.backend == "auto" and importlib.util.find_spec("vllm"))
    if not use_vllm:
        return Model(hf, tok, lambda prompts, n: generate(hf, tok, prompts, max_new_tokens=n,
                                                          batch_size=config.batch_size), "hf")
    from tinyeval.audit.probes.vllm_generate import vllm_generate

    served = model_dir(config.model)
    if config.adapter:
        from tinyeval.eval.backends import merged_checkpoint

        scratch = tempfile.mkdtemp(prefix="tinyeval-probe-merged-")
        atexit.register(shutil.rmtree, scratch, True)
        served = merged_checkpoint(config.model, Path(config.adapter), config.dtype, Path(scratch))
    dtype = str(next(hf.parameters()).dtype).removeprefix("torch.")
    return Model(hf, tok, vllm_generate(served, dtype), "vllm")


def _is_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def run_probes(config: ProbeConfig, model: Model | None = None) -> dict:
    """Run the configured probes; returns {"rows": verdict rows, "signals": details, "coverage", "config"}."""
    from tinyeval.audit.perturb.twins import PerturbConfig, perturb_rows
    from tinyeval.data import load

    field_name, control_set = BENCHMARKS[config.benchmark]
    rows = load(config.benchmark, "test", config.data_root).rows
    control_rows = load(control_set, "test", config.data_root).rows
    if config.benchmark == "math500":  # MATH test problems outside MATH500: same source, a reference only
        held = {r["problem"] for r in rows}
        control_rows = [r for r in control_rows if r["problem"] not in held]
    control = [r[field_name] for r in control_rows]
    control = _sample(control, max(config.n_membership or len(rows), config.n_generate), config.seed)
    twins, coverage = ([], None)
    if config.benchmark == "gsm8k":
        twins, cov = perturb_rows(rows, PerturbConfig(seed=config.seed))
        coverage = cov.as_dict()
    elif "accuracy" in config.probes:
        raise TinyevalError("the accuracy probe needs verified twins, which exist for GSM8K only "
                            "(MATH500 solutions carry no calculator chain to re-execute); drop it with --probes")
    model = model or load_probe_model(config)
    started, signals = time.time(), []
    if "accuracy" in config.probes:
        signals += accuracy_probe(model, rows, twins, config)
    if "prefix" in config.probes:
        signals += prefix_probe(model, [r[field_name] for r in rows], control, config)
    if "membership" in config.probes:
        picked = _sample(range(len(rows)), config.n_membership, config.seed)
        twin_of = {t.index: t.question for t in twins}
        signals += membership_probe(model, [rows[i][field_name] for i in picked],
                                    {k: twin_of[i] for k, i in enumerate(picked) if i in twin_of},
                                    control, config, control_set)
    return {"config": asdict(config), "backend": model.backend, "coverage": coverage,
            "seconds": round(time.time() - started, 1), "rows": [s.row() for s in signals],
            "signals": [{**s.row(), "detail": s.detail} for s in signals]}


def markdown(report: dict) -> str:
    """report.md section: the verdict table plus what was run."""
    cfg = report["config"]
    lines = [f"## Leakage probes: {cfg['benchmark']} on {cfg['model']}"
             + (f" + {cfg['adapter']}" if cfg.get("adapter") else ""), "",
             "| probe | signal | value | 95% CI | n | suggests |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['probe']} | {r['signal']} | {r['value']} | {r['ci95']} | {r['n']} | {r['suggests']} |"
              for r in report["rows"]]
    if report.get("coverage"):
        c = report["coverage"]
        lines += ["", f"Perturbation coverage: {c['perturbed']}/{c['total']} ({c['coverage']:.1%}) verified twins."]
    lines += ["", f"Backend: {report['backend']}; {report['seconds']} s."]
    return "\n".join(lines) + "\n"
