"""`tinyeval eval --tp N --dp N`: the flags reach lm-eval's vLLM as tensor_parallel_size / data_parallel_size, and
layouts this machine cannot run are refused in one line before anything loads. No engine is started."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from tinyeval.errors import TinyevalError
from tinyeval.eval import backends
from tinyeval.eval.run import EvalConfig


def _spec(**kw) -> backends.BackendSpec:
    args = dict(model="m", adapter=None, dtype="bfloat16", batch_size=8, seed=3, merge=None, loglikelihood=False,
                workdir=Path("/tmp"))
    return backends.BackendSpec(**{**args, **kw})


def test_tp_and_dp_reach_lm_evals_vllm_model_args(monkeypatch, tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"r": 2}')
    seen = {}
    monkeypatch.setattr(backends, "_import_lm_eval_vllm",
                        lambda: types.SimpleNamespace(VLLM=lambda **kw: seen.update(kw) or types.SimpleNamespace()))
    monkeypatch.setattr(backends, "vllm_inputs", lambda spec: ("/models/base", tmp_path, None))  # no reference
    backends._build_vllm(_spec(tp=4, dp=2))
    assert seen["tensor_parallel_size"] == 4 and seen["data_parallel_size"] == 2
    assert seen["pretrained"] == "/models/base" and seen["lora_local_path"] == str(tmp_path)
    assert seen["max_lora_rank"] == 8 and seen["seed"] == 3 and seen["enforce_eager"] is True
    plain = backends.vllm_model_args(_spec(), "/models/base", None)
    assert plain["tensor_parallel_size"] == plain["data_parallel_size"] == 1 and "lora_local_path" not in plain


def test_bad_values_and_the_hf_backend_are_refused(tmp_path):
    for tp, dp in ((0, 1), (1, 0)):
        with pytest.raises(TinyevalError, match="must be an integer >= 1"):
            EvalConfig(model="m", tasks=["gsm8k"], out=tmp_path, backend="vllm", tp=tp, dp=dp)
    with pytest.raises(TinyevalError, match="--tp / --dp are vLLM's"):
        EvalConfig(model="m", tasks=["gsm8k"], out=tmp_path, backend="hf", tp=2)
    assert EvalConfig(model="m", tasks=["gsm8k"], out=tmp_path, backend="hf").tp == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal")
def test_cli_refuses_parallelism_on_cpu_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from tinyeval.cli import app

    result = CliRunner().invoke(app, ["eval", "--model", "m", "--tasks", "gsm8k", "--out", str(tmp_path),
                                      "--backend", "vllm", "--tp", "2"])
    assert isinstance(result.exception, TinyevalError)
    assert "need CUDA GPUs; on CPU vLLM runs one worker" in str(result.exception)
    assert not (tmp_path / "results.json").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_more_gpus_than_the_machine_has_are_refused(tmp_path):
    n = torch.cuda.device_count()
    with pytest.raises(TinyevalError, match=f"needs {n + 1} GPUs"):
        EvalConfig(model="m", tasks=["gsm8k"], out=tmp_path, backend="vllm", tp=n + 1)
