"""`tinyeval eval` as a function: build the backend, run lm-eval's `simple_evaluate` on `tasks/`, write the
results. The scoring is lm-eval's; this module only chooses the settings and records them.

Outputs in `out/`: `samples/<task>.jsonl` (lm-eval's per-sample log: prompt, raw and filtered response,
metrics), then `results.json` (per task: metric, value, stderr, n, config hash, strict/lenient for math,
per-item correctness). Each file is written atomically and results.json last, so a results.json on disk
always describes a finished run whose samples are beside it.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from tinyeval.errors import TinyevalError
from tinyeval.eval.liveness import LivenessJson
from tinyeval.eval.results import GroupRow, TaskRow

DTYPES = ("auto", "bfloat16", "float16", "float32")  # auto: tinyeval.models.default_dtype()
NOT_SETTINGS = ("extra", "out", "keep_engine")  # EvalConfig fields results.json does not list under `settings`


@dataclass
class EvalConfig:
    """One evaluation run. Every method in a comparison should share all fields but `adapter`."""

    model: str  # alias (smollm2-135m), hub id or local model directory
    tasks: list[str]  # task or group names from tasks/ (tinyeval_all, gsm8k, ...)
    out: Path  # output directory (created; results.json inside is replaced atomically)
    adapter: Path | None = None  # PEFT LoRA dir or tinyeval adapter dir; None = the base model
    backend: str = "auto"  # hf | vllm | auto (the faster one on this device: vllm on GPU, hf on CPU)
    limit: int | None = None  # first N items of every task (None = all)
    num_fewshot: int | None = None  # override every task's few-shot count (None = each task's own)
    chat: bool | None = None  # apply the chat template; None = on iff the tokenizer has one (instruct models)
    max_gen_toks: int | None = None  # override every generative task's limit (None = YAML: 512 gsm8k, 1024 math)
    batch_size: int = 20  # HF backend batch (vLLM batches itself)
    dtype: str = "auto"
    seed: int = 0  # python / numpy / torch / few-shot seeds and the vLLM engine seed
    merge: bool | None = None  # vllm: serve a merged checkpoint instead of the LoRA (None: on CPU only)
    data_root: str | None = None  # default: $TINYEVAL_DATA, else the hub
    tp: int = 1  # vllm: tensor_parallel_size (GPUs holding one copy of the model)
    dp: int = 1  # vllm: data_parallel_size (copies, each given a share of the requests; needs Ray)
    log_samples: bool = True
    clean_from: Path | None = None  # an audit directory: also score every task without the items it flags
    keep_engine: bool = False  # vllm: keep the engine for the process's next evaluation (engine_pool); unrecorded
    extra: dict = field(default_factory=dict)  # recorded in results.json as is (e.g. the training cell)

    def __post_init__(self) -> None:
        from tinyeval.eval.backends import BACKENDS

        self.out = Path(self.out)
        self.adapter = Path(self.adapter) if self.adapter is not None else None
        self.clean_from = Path(self.clean_from) if self.clean_from is not None else None
        if self.backend not in (*BACKENDS, "auto"):
            raise TinyevalError(f"unknown backend '{self.backend}'; choose hf, vllm or auto")
        if self.dtype not in DTYPES:
            raise TinyevalError(f"unknown dtype '{self.dtype}'; choose {', '.join(DTYPES)}")
        for name, value in (("limit", self.limit), ("max_gen_toks", self.max_gen_toks),
                            ("batch_size", self.batch_size)):
            if value is not None and value < 1:
                raise TinyevalError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise TinyevalError(f"--num-fewshot must be >= 0, got {self.num_fewshot}")
        if (self.tp, self.dp) != (1, 1):
            from tinyeval.eval.backends import default_backend
            from tinyeval.vllm import check_parallel

            if (default_backend() if self.backend == "auto" else self.backend) == "hf":
                raise TinyevalError("--tp / --dp are vLLM's: use them with --backend vllm (or auto on a GPU)")
            check_parallel(self.tp, self.dp)


class EvalSettings(TypedDict):
    """`settings` in results.json: the `EvalConfig` as it ran (auto choices resolved) plus the prompt settings."""

    model: str
    tasks: list[str]
    adapter: str | None
    backend: str  # the backend that generated: hf | vllm (never auto)
    limit: int | None
    num_fewshot: int | None
    chat: bool | None  # the flag as given (None: follow the tokenizer); `chat_template` is what ran
    max_gen_toks: int | None
    batch_size: int
    dtype: str  # the dtype that ran (never auto)
    seed: int
    merge: bool | None
    data_root: str | None  # the data root in force (absolute); None: the hub
    tp: int  # vllm: tensor_parallel_size (1 on CPU)
    dp: int  # vllm: data_parallel_size (1 on CPU)
    log_samples: bool
    clean_from: str | None  # the audit directory of --clean-from
    chat_template: bool
    fewshot_as_multiturn: bool
    loglikelihood_backend: str  # who scored log-likelihood requests (hf on CPU vLLM runs)


class EvalRecord(TypedDict):
    """results.json of `tinyeval eval` (and `cells/<name>/eval/results.json` of train-and-eval)."""

    model: str
    adapter: str | None
    backend: str
    settings: EvalSettings
    lm_eval_version: str | None
    created: str  # ISO 8601, UTC
    seconds: float
    groups: dict[str, list[str]]  # group -> its subtasks (lm-eval's group_subtasks)
    tasks: dict[str, TaskRow]
    group_scores: dict[str, GroupRow]
    extra: dict[str, Any]  # `EvalConfig.extra` as given (e.g. the train-and-eval cell)
    liveness: LivenessJson | None  # proof that the scored model is the adapter (tinyeval.eval.liveness); null: none


class Sample(TypedDict):
    """One line of `samples/<task>.jsonl`: lm-eval's per-sample log as lm-eval builds it, plus one key per metric
    (e.g. `exact_match`: 0 or 1), hence `__extra__`."""

    __extra__ = True
    doc_id: int
    doc: dict[str, Any]
    target: Any  # a string, a choice index or a list, depending on the task
    arguments: Any  # the requests' arguments: prompt (and choice) per request
    resps: list[Any]
    filtered_resps: list[Any]
    filter: str
    metrics: list[str]
    doc_hash: str
    prompt_hash: str
    target_hash: str


def simple_evaluate(cfg: EvalConfig, lm, chat: bool, data_root: str | None = None) -> dict:
    """lm-eval's `simple_evaluate` on our task index with the run's settings."""
    import lm_eval

    from tinyeval.eval.tasks import task_manager

    seed = cfg.seed
    out = lm_eval.simple_evaluate(
        model=lm, tasks=list(cfg.tasks), task_manager=task_manager(data_root), limit=cfg.limit,
        num_fewshot=cfg.num_fewshot, apply_chat_template=chat, fewshot_as_multiturn=chat,
        gen_kwargs={"max_gen_toks": cfg.max_gen_toks} if cfg.max_gen_toks else None,
        log_samples=cfg.log_samples, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
        fewshot_random_seed=seed, bootstrap_iters=1000)
    if out is None:
        raise TinyevalError("lm-eval returned no results (non-zero rank of a distributed run?)")
    return out


def _release(lm) -> None:
    """Shut lm-eval's vLLM engines down now (`tinyeval.vllm.shutdown`), not at interpreter exit."""
    from tinyeval.vllm import shutdown

    for part in (lm, getattr(lm, "generator", None)):  # lm-eval's VLLM wrapper, or the generating half of SplitLM
        shutdown(getattr(part, "model", None))


def _preflight(cfg: EvalConfig, data_root: str | None) -> bool:
    """The checks that need no model in memory: task names, their data, the model's tokenizer and weights files
    (the backends check the adapter first thing). Each failure is one line, before lm-eval or vLLM start.
    Returns whether the tokenizer has a chat template."""
    from tinyeval.eval.tasks import check_data, check_task_names
    from tinyeval.models import check_weights, load_tokenizer

    check_task_names(cfg.tasks)
    check_data(cfg.tasks, data_root)
    if cfg.clean_from is not None:
        from tinyeval.audit.clean import covered, flagged_items
        from tinyeval.eval.tasks import TWINS

        covered(flagged_items(cfg.clean_from), cfg.tasks, TWINS, cfg.clean_from)  # one line now, not after the run
    has_template = bool(getattr(load_tokenizer(cfg.model), "chat_template", None))
    check_weights(cfg.model)
    return has_template


def _add_clean(tasks: dict, audit_dir: Path) -> None:
    """Each task the audit covers (or whose original it covers, for a twin task) gets its clean-subset score."""
    from tinyeval.audit.clean import flagged_items, flags_for
    from tinyeval.eval.results import clean_score
    from tinyeval.eval.tasks import TWINS

    flagged = flagged_items(audit_dir)
    for name, row in tasks.items():
        ids = flags_for(flagged, name, TWINS)
        if ids is not None:
            row["clean"] = clean_score(row, ids, str(audit_dir))


def evaluate(cfg: EvalConfig) -> EvalRecord:
    """Run the evaluation and write `cfg.out`; returns the results.json content."""
    from tinyeval import data
    from tinyeval.eval import backends, engine_pool, results
    from tinyeval.eval.tasks import output_types, quiet_lm_eval
    from tinyeval.io import write_json, write_jsonl
    from tinyeval.models import default_dtype

    root = data.data_root(cfg.data_root)
    data_root = str(root.resolve()) if root else None
    has_template = _preflight(cfg, data_root)
    quiet_lm_eval()
    backend = backends.default_backend() if cfg.backend == "auto" else cfg.backend
    dtype = default_dtype() if cfg.dtype == "auto" else cfg.dtype
    chat = has_template if cfg.chat is None else cfg.chat
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tinyeval-eval-") as work:
        loglikelihood = bool(output_types(cfg.tasks) - {"generate_until"})
        spec = backends.BackendSpec(cfg.model, cfg.adapter, dtype, cfg.batch_size, cfg.seed, cfg.merge,
                                    loglikelihood, Path(work), cfg.tp, cfg.dp)
        kept = engine_pool.acquire(spec) if cfg.keep_engine and backend == "vllm" else None
        lm = backends.BACKENDS[backend](spec) if kept is None else kept
        loglik_backend = getattr(lm, "loglikelihood_backend", backend)
        liveness = getattr(lm, "liveness", None)
        try:
            out = simple_evaluate(cfg, lm, chat, data_root)
        except BaseException:
            engine_pool.close()  # an engine that failed mid-evaluation is not trusted with the next one
            raise
        finally:
            if kept is None:
                _release(lm)
            else:
                engine_pool.release()
    settings = {"chat_template": chat, "fewshot_as_multiturn": chat}
    tasks = {name: results.summarize_task(name, out, settings) for name in out["results"]
             if name in out["configs"]}
    if cfg.clean_from is not None:
        _add_clean(tasks, cfg.clean_from)
    for name in tasks:
        write_jsonl(cfg.out / "samples" / f"{name}.jsonl", out.get("samples", {}).get(name, []))
    adapter = str(cfg.adapter) if cfg.adapter else None
    record = EvalRecord(
        model=cfg.model, adapter=adapter, backend=backend,
        settings=EvalSettings(**{k: v for k, v in asdict(cfg).items() if k not in NOT_SETTINGS} | settings | {
            "backend": backend, "loglikelihood_backend": loglik_backend, "dtype": dtype, "adapter": adapter,
            "data_root": data_root, "clean_from": str(cfg.clean_from) if cfg.clean_from else None}),
        lm_eval_version=out.get("lm_eval_version"),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        seconds=round(time.time() - started, 1),
        groups=out.get("group_subtasks", {}),
        tasks=tasks,
        group_scores={g: row for g in out.get("group_subtasks", {}) if (row := results.summarize_group(g, out))},
        extra=cfg.extra,
        liveness=liveness,
    )
    write_json(cfg.out / "results.json", record)
    return record
