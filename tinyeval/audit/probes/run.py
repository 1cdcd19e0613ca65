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

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypedDict

from tinyeval.audit.perturb.twins import CoverageJSON
from tinyeval.audit.probes import generation, membership
from tinyeval.audit.probes.config import BENCHMARKS, Model, ProbeConfig, ProbeData, Signal, SignalRow, sample
from tinyeval.errors import TinyevalError
from tinyeval.schema import typed_dict

# Each probe: (model, data, config) -> signals. Their names are config.PROBES.
PROBES: dict[str, Callable[[Model, ProbeData, ProbeConfig], list[Signal]]] = {
    "accuracy": generation.accuracy,
    "prefix": generation.prefix,
    "membership": membership.probe,
}


class SignalDetail(SignalRow):
    detail: dict[str, Any]  # the probe's own numbers behind the row (intervals as text, means as numbers)


ProbeConfigJSON = typed_dict(ProbeConfig)  # `ProbeConfig` as written (dataclasses.asdict)


class ProbesReport(TypedDict):
    """What `run_probes` returns: report.json's "probes" section."""

    config: ProbeConfigJSON
    backend: str  # hf | vllm
    coverage: CoverageJSON | None  # GSM8K twins (None for MATH500)
    seconds: float
    rows: list[SignalRow]
    signals: list[SignalDetail]


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
        from tinyeval.adapters import load_adapter
        from tinyeval.vllm import merged_checkpoint

        scratch = tempfile.mkdtemp(prefix="tinyeval-probe-merged-")
        atexit.register(shutil.rmtree, scratch, True)
        base, base_tok = load_model(config.model, dtype=config.dtype)
        served = merged_checkpoint(load_adapter(base, config.adapter).merged_model(), base_tok, scratch)
    dtype = str(next(hf.parameters()).dtype).removeprefix("torch.")
    return Model(hf, tok, vllm_generate(served, dtype), "vllm")


def _is_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _data(config: ProbeConfig) -> tuple[ProbeData, dict | None]:
    """The benchmark rows, their twins (GSM8K) and the control texts, with the twins' coverage."""
    from tinyeval.audit.perturb.twins import PerturbConfig, perturb_rows
    from tinyeval.data import load

    field_name, control_set = BENCHMARKS[config.benchmark]
    rows = load(config.benchmark, "test", config.data_root).rows
    control_rows = load(control_set, "test", config.data_root).rows
    if config.benchmark == "math500":  # MATH test problems outside MATH500: same source, a reference only
        held = {r["problem"] for r in rows}
        control_rows = [r for r in control_rows if r["problem"] not in held]
    control = [r[field_name] for r in control_rows]
    control = sample(control, max(config.n_membership or len(rows), config.n_generate), config.seed)
    twins, coverage = ([], None)
    if config.benchmark == "gsm8k":
        twins, cov = perturb_rows(rows, PerturbConfig(seed=config.seed))
        coverage = cov.as_dict()
    elif "accuracy" in config.probes:
        raise TinyevalError("the accuracy probe needs verified twins, which exist for GSM8K only "
                            "(MATH500 solutions carry no calculator chain to re-execute); drop it with --probes")
    return ProbeData(rows, field_name, twins, control, control_set), coverage


def run_probes(config: ProbeConfig, model: Model | None = None) -> ProbesReport:
    """Run the configured probes, in the order of `PROBES`; returns report.json's "probes" section."""
    data, coverage = _data(config)
    model = model or load_probe_model(config)
    started, signals = time.time(), []
    for name, probe in PROBES.items():
        if name in config.probes:
            signals += probe(model, data, config)
    return {"config": asdict(config), "backend": model.backend, "coverage": coverage,
            "seconds": round(time.time() - started, 1), "rows": [s.row() for s in signals],
            "signals": [{**s.row(), "detail": s.detail} for s in signals]}
