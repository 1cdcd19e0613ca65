"""One vLLM engine per worker process, kept across evaluations: a new unit switches the adapter, not the engine.

`tinyeval train-and-eval` evaluates unit after unit in the same worker process (`tinyeval.report.engines`), each
with another adapter on the same base model. A fresh vLLM engine per unit costs ~30-60 s of start-up on a CPU
core; this module keeps the engine of the last evaluation and hands it to the next one whose engine settings
match (`engine_key`: every engine argument but the seed), switching what it serves:

  merge  (CPU, the default there; `tinyeval.eval.backends` serves merged checkpoints on CPU) the adapter is merged
         on this side exactly as for a merged checkpoint (`backends._loader` + `merged_model`), and the linear-layer weights it changed
         are written into the live engine by the worker extension the GRPO merge sync uses
         (`tinyeval.train.rollout.vllm_merge.MergeLoRA.tinyeval_load_merged`); every layer rewritten for an
         earlier unit goes back to base, so the base model (no adapter) is served from the base weights again.
         The engine then holds the same weights a fresh engine would load from the merged checkpoint.
  lora   (GPUs) the adapter is a new `LoRARequest` (a new id each time: vLLM caches an adapter by its id) on an
         engine started with LoRA enabled up to rank `KEPT_LORA_RANK`; the base model is served without one.
         Between evaluations the engine sleeps (weights to host memory, KV cache dropped), so the unit's
         training gets the GPU back.

Before each evaluation the prefix cache is reset and the worker reseeded with the unit's seed (sampling draws
from the engine's seed), so results do not depend on the units the worker served before; and after each switch to
an adapter the engine itself is asked for its next-token log-probs on the liveness probes (`tinyeval.eval.liveness`):
a switch that did not reach it is refused before anything is scored. `serving()` says which adapter it holds.
What a kept engine cannot serve falls back to a fresh one, the kept engine shut down first: data parallelism
(lm-eval starts its engines per request batch), merged serving on GPUs or with tensor parallelism, a model not in
a local directory, and an adapter that changes more than linear-layer weights (full fine-tuning: norms, embeddings).

Used only when `EvalConfig(keep_engine=True)` (train-and-eval's local workers); `tinyeval eval` starts and stops
its own engine as before. The engine is shut down when the process ends (a worker at the end of its round) or when
a later evaluation needs other engine settings.
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tinyeval.eval.backends import BackendSpec

KEPT_LORA_RANK = 64  # lora mode: the engine takes adapters up to this rank (a larger one starts a new engine)
_EXTENSION = "tinyeval.train.rollout.vllm_merge.MergeLoRA"


@dataclass
class Kept:
    """The engine this process keeps and what it serves now."""

    key: tuple
    lm: object  # lm-eval's VLLM model; `lm.model` is the `vllm.LLM`, `lm.lora_request` the adapter's (lora mode)
    mode: str  # merge | lora
    serving: Path | None = None  # the adapter directory served (None: the base model)
    loras: int = 0  # LoRARequest ids handed out
    asleep: bool = False
    uses: int = 1  # evaluations this engine has served, the current one included


_kept: Kept | None = None
_exit_hooked = False


def serving() -> Kept | None:
    """The kept engine and the adapter it serves, for checks that query the live engine; None when none is kept."""
    return _kept


def engine_key(args: dict) -> tuple:
    """What must match for an engine to be reused: every argument of lm-eval's `VLLM` but the seed (reset per
    evaluation by `tinyeval_reseed`)."""
    return tuple(sorted((k, repr(v)) for k, v in args.items() if k != "seed"))


def _mode(spec: BackendSpec) -> str:
    from tinyeval.vllm import on_cpu

    merge = on_cpu() if spec.merge is None else spec.merge
    return "merge" if merge else "lora"


def _start(args: dict):
    """lm-eval's `VLLM` with these arguments (a new engine)."""
    from tinyeval.eval.backends import _import_lm_eval_vllm

    return _import_lm_eval_vllm().VLLM(**args)


def _engine_args(spec: BackendSpec, base: str, mode: str, lora: Path | None) -> dict:
    from tinyeval.eval.backends import vllm_model_args
    from tinyeval.vllm import lora_dir_rank, on_cpu

    args = vllm_model_args(spec, base, None) | {"worker_extension_cls": _EXTENSION}
    if mode == "lora":
        rank = max(KEPT_LORA_RANK, lora_dir_rank(lora) if lora else 0)
        args |= {"enable_lora": True, "max_lora_rank": rank}
    if not on_cpu():
        args["enable_sleep_mode"] = True
    return args


def merged_weights(spec: BackendSpec, base: Path):
    """({HF name: weight} of the linear layers the adapter changes, merged in `spec.dtype` as for a merged
    checkpoint, or None when it changes anything else: only a fresh engine can serve that; the adapter's
    `liveness.Reference`, which the switched engine is checked against)."""
    import torch
    from safetensors import safe_open

    from tinyeval.eval.backends import _loader
    from tinyeval.eval.liveness import attach
    from tinyeval.models import load_model

    model, tok = load_model(spec.model, dtype=spec.dtype)
    handle, ref = attach(model, tok, spec.adapter, _loader(spec.adapter))
    model = handle.merged_model()
    linear = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    files = {}
    for file in sorted(base.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            files.update(dict.fromkeys(f.keys(), file))
    changed = {}
    for name, p in model.named_parameters():
        if name in files:
            with safe_open(str(files[name]), framework="pt") as f:
                if torch.equal(f.get_tensor(name).to(p.dtype), p.detach()):
                    continue
        if name not in linear:
            return None, ref
        changed[name] = p.detach().contiguous()
    return changed, ref


def _switch_merge(kept: Kept, spec: BackendSpec, base: Path, weights: dict | None) -> None:
    from safetensors.torch import save_file

    llm = kept.lm.model
    if weights is None:  # the base model
        if kept.serving is not None:
            llm.collective_rpc("tinyeval_load_merged", args=(None, str(base)))
    else:
        with tempfile.TemporaryDirectory(prefix="tinyeval-kept-", dir=spec.workdir) as tmp:
            file = Path(tmp) / "merged.safetensors"
            save_file(weights, str(file))
            llm.collective_rpc("tinyeval_load_merged", args=(str(file), str(base)))


def _switch_lora(kept: Kept, lora: Path | None) -> None:
    from vllm.lora.request import LoRARequest

    if lora is None:
        kept.lm.lora_request = None
        return
    kept.loras += 1
    kept.lm.lora_request = LoRARequest(f"adapter-{kept.loras}", kept.loras, str(lora))


def acquire(spec: BackendSpec):
    """lm-eval's VLLM model serving `spec`'s adapter on the kept engine (started or replaced as needed); None when
    a kept engine cannot serve `spec` (see the module docstring): the caller builds a fresh one."""
    from tinyeval.eval.backends import _check_adapter, served_record, vllm_inputs
    from tinyeval.models import model_dir
    from tinyeval.vllm import on_cpu

    if spec.adapter is not None:
        _check_adapter(spec.adapter)
    mode, base = _mode(spec), model_dir(spec.model)
    local = isinstance(base, Path) and any(base.glob("*.safetensors"))
    if spec.dp > 1 or (mode == "merge" and (not on_cpu() or spec.tp > 1 or not local)):
        close()
        return None
    weights = lora = ref = None
    if spec.adapter is not None and mode == "merge":
        weights, ref = merged_weights(spec, base)
        if weights is None:
            close()
            return None
    elif spec.adapter is not None:
        _, lora, ref = vllm_inputs(spec)
    args = _engine_args(spec, str(base), mode, lora)
    kept = _reuse(engine_key(args)) or _keep(Kept(engine_key(args), _start(args), mode))
    try:
        if mode == "merge":
            _switch_merge(kept, spec, base, weights)
        else:
            _switch_lora(kept, lora)
        kept.serving = spec.adapter
        # As a fresh engine: no KV blocks of an earlier evaluation (computed with other weights, or changing how
        # this one's prompts are prefilled), the random state of the unit's seed.
        kept.lm.model.reset_prefix_cache()
        if ref is not None:  # the switched engine itself is asked, as a fresh engine is (a refusal closes it)
            kept.lm.liveness = served_record(kept.lm, ref, "vllm-lora" if mode == "lora" else "vllm-merged",
                                             spec.dtype)
        else:
            kept.lm.liveness = None
        kept.lm.model.collective_rpc("tinyeval_reseed", args=(spec.seed,))
    except BaseException:
        close()  # half-switched weights: no later evaluation may trust this engine
        raise
    if spec.loglikelihood and on_cpu():  # as `backends.build_vllm`: HF scores log-likelihoods on CPU
        from tinyeval.eval.backends import _split_lm, build_hf

        return _split_lm(kept.lm, build_hf(spec))
    return kept.lm


def _reuse(key: tuple) -> Kept | None:
    """The kept engine if its settings are `key` (woken up), else None (any other engine shut down first)."""
    if _kept is None or _kept.key != key:
        close()
        return None
    if _kept.asleep:
        import torch

        torch.cuda.empty_cache()  # the trainer's cached blocks: the engine's memory must be free to map again
        _kept.lm.model.wake_up()
        _kept.asleep = False
    _kept.uses += 1
    return _kept


def _keep(kept: Kept) -> Kept:
    global _kept, _exit_hooked
    _kept = kept
    if not _exit_hooked:
        # A spawned worker runs multiprocessing's finalizers when it ends (before interpreter exit); a plain process
        # runs atexit hooks, this one before vLLM's own (registered earlier, run later), so the shutdown is graceful.
        multiprocessing.util.Finalize(None, close, exitpriority=100)
        atexit.register(close)
        _exit_hooked = True
    return kept


def release() -> None:
    """After an evaluation: on GPUs the kept engine sleeps (weights to host memory, KV cache dropped) so that training
    gets the GPU back; on CPU it stays as it is."""
    from tinyeval.vllm import on_cpu

    if _kept is not None and not _kept.asleep and not on_cpu():
        _kept.lm.model.sleep(level=1)
        _kept.asleep = True


def close() -> None:
    """Shut the kept engine down (a no-op when none is kept)."""
    global _kept
    from tinyeval.vllm import shutdown

    kept, _kept = _kept, None
    if kept is not None:
        shutdown(kept.lm.model)
