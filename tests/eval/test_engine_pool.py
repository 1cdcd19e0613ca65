"""The engine a worker keeps across evaluations (`tinyeval.eval.engine_pool`), with a fake vLLM engine: which
evaluations share it, what it is told to serve (merged weights, the base model again), and its shutdown."""

from __future__ import annotations

import sys
import types
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest
import torch

from tinyeval.eval import engine_pool
from tinyeval.eval.backends import BackendSpec

FAKE = '''
class FakeLLM:
    """What the pool uses of `vllm.LLM`: worker RPCs, the prefix cache, sleep, the engine core's shutdown."""

    def __init__(self, args, on_shutdown=None):
        from types import SimpleNamespace

        self.args, self.calls, self.loaded, self.on_shutdown = args, [], [], on_shutdown
        self.llm_engine = SimpleNamespace(engine_core=SimpleNamespace(shutdown=self.shutdown))

    def collective_rpc(self, method, args=()):
        from safetensors.torch import load_file

        self.calls.append((method, args))
        if method == "tinyeval_load_merged":  # the file lives only during the call
            self.loaded.append(None if args[0] is None else load_file(args[0]))

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache", ()))

    def shutdown(self, timeout):
        self.calls.append(("shutdown", (timeout,)))
        if self.on_shutdown:
            self.on_shutdown()


class FakeVLLM:
    def __init__(self, args, on_shutdown=None):
        self.model, self.lora_request, self.data_parallel_size = FakeLLM(args, on_shutdown), None, 1
        self.deaf = False  # True: the engine ignores weight loads (serves what it served before)

    def _model_generate(self, requests, generate=False, sampling_params=None):
        """The liveness probes' answers: top-k next-token log-probs of what the engine serves, computed by HF (the
        base checkpoint with the last merged weights loaded into it)."""
        from types import SimpleNamespace

        import torch
        from transformers import AutoModelForCausalLM

        from tinyeval.eval.liveness import hf_logprobs

        model = AutoModelForCausalLM.from_pretrained(self.model.args["pretrained"], dtype=torch.float32)
        if self.model.loaded and self.model.loaded[-1] is not None and not self.deaf:
            model.load_state_dict(self.model.loaded[-1], strict=False)
        return [SimpleNamespace(outputs=[SimpleNamespace(logprobs=[
                    {t: SimpleNamespace(logprob=v) for t, v in got.items()}])])
                for got in hf_logprobs(model, sampling_params.logprobs)(requests)]


def work(model, workdir, marker):
    """In a spawned worker: keep a fake engine, then end with the worker."""
    from pathlib import Path

    from tinyeval.eval import engine_pool
    from tinyeval.eval.backends import BackendSpec

    engine_pool._start = lambda args: FakeVLLM(args, lambda: Path(marker).write_text("shut down"))
    engine_pool.acquire(BackendSpec(model, None, "float32", 8, 0, None, False, Path(workdir)))
    return engine_pool.serving().uses
'''
exec(FAKE)  # noqa: S102  (the same fakes run in the spawned worker below, from a module file)

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the merge mode is CPU vLLM's")


@pytest.fixture(autouse=True)
def fake_engines(monkeypatch):
    started = []

    def start(args):
        started.append(FakeVLLM(args))  # noqa: F821  (defined by exec above)
        return started[-1]

    monkeypatch.setattr(engine_pool, "_start", start)
    yield started
    engine_pool.close()


def _spec(model, tmp_path, adapter=None, seed=0, dtype="float32", **kw) -> BackendSpec:
    return BackendSpec(str(model), adapter, dtype, 8, seed, None, False, tmp_path, **kw)


def _rpcs(llm, method):
    return [args for m, args in llm.calls if m == method]


def test_one_engine_serves_base_adapter_and_base_again(tiny_llama_dir, tiny_lora_dir, tmp_path, fake_engines):
    from tinyeval.eval.backends import apply_adapter
    from tinyeval.models import load_model

    base = engine_pool.acquire(_spec(tiny_llama_dir, tmp_path))
    llm = base.model
    assert _rpcs(llm, "tinyeval_load_merged") == [] and _rpcs(llm, "tinyeval_reseed") == [(0,)]
    assert llm.args["worker_extension_cls"].endswith("vllm_merge.MergeLoRA") and "seed" in llm.args

    adapted = engine_pool.acquire(_spec(tiny_llama_dir, tmp_path, tiny_lora_dir, seed=1))
    assert adapted is base and len(fake_engines) == 1 and engine_pool.serving().uses == 2
    assert engine_pool.serving().serving == tiny_lora_dir and _rpcs(llm, "tinyeval_reseed")[-1] == (1,)
    shipped = llm.loaded[-1]
    merged = apply_adapter(load_model(str(tiny_llama_dir), dtype="float32")[0], tiny_lora_dir)
    linear = {n + ".weight" for n, m in merged.named_modules()
              if isinstance(m, torch.nn.Linear) and "lm_head" not in n}
    assert set(shipped) == linear  # the LoRA touches every linear layer; norms and embeddings are not shipped
    params = dict(merged.named_parameters())
    assert all(torch.equal(shipped[n], params[n]) for n in shipped)  # exactly the merged checkpoint's weights
    assert [m for m, _ in llm.calls[-3:]] == ["tinyeval_load_merged", "reset_prefix_cache", "tinyeval_reseed"]
    assert adapted.liveness["served"] == "vllm-merged" and adapted.liveness["verdict"] == "live"  # asked the engine

    engine_pool.acquire(_spec(tiny_llama_dir, tmp_path))  # the base unit after an adapted one: base weights again
    assert llm.loaded[-1] is None and _rpcs(llm, "tinyeval_load_merged")[-1][1] == str(tiny_llama_dir)
    assert engine_pool.serving().serving is None and base.liveness is None
    engine_pool.acquire(_spec(tiny_llama_dir, tmp_path))  # already the base model: nothing to reload
    assert len(llm.loaded) == 2 and len(fake_engines) == 1 and _rpcs(llm, "shutdown") == []
    assert len(_rpcs(llm, "reset_prefix_cache")) == 4  # every evaluation starts without an earlier one's KV blocks


def test_other_engine_settings_replace_the_engine_and_close_shuts_it_down(tiny_llama_dir, tmp_path, fake_engines):
    engine_pool.acquire(_spec(tiny_llama_dir, tmp_path))
    engine_pool.acquire(_spec(tiny_llama_dir, tmp_path, dtype="bfloat16"))
    first, second = (lm.model for lm in fake_engines)
    assert len(_rpcs(first, "shutdown")) == 1 and _rpcs(second, "shutdown") == []
    assert engine_pool.engine_key(first.args) != engine_pool.engine_key(second.args)
    assert engine_pool.engine_key(first.args) == engine_pool.engine_key(first.args | {"seed": 7})
    engine_pool.close()
    assert len(_rpcs(second, "shutdown")) == 1 and engine_pool.serving() is None
    engine_pool.close()  # nothing kept: a no-op
    assert len(_rpcs(second, "shutdown")) == 1


def test_what_a_kept_engine_cannot_serve_falls_back_to_a_fresh_one(tiny_llama_dir, tiny_lora_dir, tmp_path,
                                                                  fake_engines, monkeypatch):
    engine_pool.acquire(_spec(tiny_llama_dir, tmp_path))
    assert engine_pool.acquire(_spec(tiny_llama_dir, tmp_path, dp=2)) is None  # lm-eval's own per-batch engines
    assert engine_pool.serving() is None and len(_rpcs(fake_engines[0].model, "shutdown")) == 1

    from tinyeval.eval import backends

    def full_finetune(model, adapter):  # changes a norm: no linear-only reload can serve it
        with torch.no_grad():
            model.model.norm.weight.add_(1.0)
        return model

    monkeypatch.setattr(backends, "_loader", lambda adapter: lambda model, adapter: types.SimpleNamespace(
        model=model, merged_model=lambda: full_finetune(model, adapter)))
    assert engine_pool.acquire(_spec(tiny_llama_dir, tmp_path, tiny_lora_dir)) is None
    assert len(fake_engines) == 1


def test_a_worker_shuts_its_engine_down_when_it_ends(tiny_llama_dir, tmp_path, monkeypatch):
    (tmp_path / "fakeworker.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "marker"
    pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"))
    try:
        assert pool.submit(sys.modules.setdefault("fakeworker", __import__("fakeworker")).work,
                           str(tiny_llama_dir), str(tmp_path), str(marker)).result(timeout=300) == 1
        assert not marker.exists()  # kept while the worker lives
    finally:
        pool.shutdown(wait=True)
    assert marker.read_text() == "shut down"


def test_a_failed_switch_shuts_the_engine_down(tiny_llama_dir, tiny_lora_dir, tmp_path, fake_engines, monkeypatch):
    engine_pool.acquire(_spec(tiny_llama_dir, tmp_path))
    llm = fake_engines[0].model

    def broken(method, args=()):
        raise RuntimeError(f"{method} failed in the worker")

    monkeypatch.setattr(llm, "collective_rpc", broken)
    with pytest.raises(RuntimeError, match="tinyeval_load_merged failed"):
        engine_pool.acquire(_spec(tiny_llama_dir, tmp_path, tiny_lora_dir))
    assert engine_pool.serving() is None and len(_rpcs(llm, "shutdown")) == 1


def test_a_switch_the_engine_did_not_take_is_refused(tiny_llama_dir, tiny_lora_dir, tmp_path, fake_engines):
    """The kept engine is asked itself, after the switch: weights that never reached it (here an engine that
    ignores the load) are refused before anything is scored, and the engine is shut down."""
    from tinyeval.errors import TinyevalError

    engine_pool.acquire(_spec(tiny_llama_dir, tmp_path))
    fake_engines[0].deaf = True
    with pytest.raises(TinyevalError, match=r"\(vllm-merged\): the served model ignores the adapter"):
        engine_pool.acquire(_spec(tiny_llama_dir, tmp_path, tiny_lora_dir))
    assert engine_pool.serving() is None and len(_rpcs(fake_engines[0].model, "shutdown")) == 1
