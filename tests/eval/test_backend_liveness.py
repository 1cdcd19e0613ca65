"""The eval backends check the served model against the adapted one before anything is scored
(`tinyeval.eval.liveness`): HF's in-memory merge, and lm-eval's vLLM (simulated here: each data-parallel
replica is an HF model, as lm-eval starts one engine per replica) with the adapter as a LoRA. A server that drops
the adapter is refused in one line; the right one is accepted and recorded."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from tinyeval.errors import TinyevalError
from tinyeval.eval import backends


def _spec(model: Path, adapter: Path, workdir: Path, **kw) -> backends.BackendSpec:
    args = {"model": str(model), "adapter": adapter, "dtype": "float32", "batch_size": 8, "seed": 0, "merge": False,
            "loglikelihood": False, "workdir": workdir}
    return backends.BackendSpec(**{**args, **kw})


def test_hf_backend_records_the_check(tiny_llama_dir, tiny_lora_dir, tmp_path):
    lm = backends.build_hf(_spec(tiny_llama_dir, tiny_lora_dir, tmp_path))
    assert lm.liveness["served"] == "hf-merged" and lm.liveness["verdict"] == "live"
    assert lm.liveness["served_vs_adapted"] < 1e-3 < lm.liveness["adapted_vs_base"]


def test_hf_backend_refuses_a_merge_that_drops_the_adapter(tiny_llama_dir, tiny_lora_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(backends._PeftHandle, "merged_model", lambda self: self.model.unload())  # no merge
    with pytest.raises(TinyevalError, match=r"liveness check \(hf-merged\): the served model ignores the adapter"):
        backends.build_hf(_spec(tiny_llama_dir, tiny_lora_dir, tmp_path))


def _served(model_dir: Path, lora: Path | None):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return PeftModel.from_pretrained(model, str(lora)).merge_and_unload() if lora else model


def _fake_lm_eval(replicas: list):
    """lm-eval's vllm module with a `VLLM` whose `_model_generate` hands requests to the replicas in turn (as
    lm-eval's data-parallel dispatch does, `more_itertools.distribute`) and answers in request order."""
    from tinyeval.eval.liveness import hf_logprobs

    def out(logprobs: dict[int, float]):
        return types.SimpleNamespace(outputs=[types.SimpleNamespace(logprobs=[
            {t: types.SimpleNamespace(logprob=v) for t, v in logprobs.items()}])])

    class VLLM:
        def __init__(self, **kwargs) -> None:
            self.kwargs, self.data_parallel_size, self.model = kwargs, kwargs["data_parallel_size"], None
            self.asked: list[set] = [set() for _ in replicas]  # the distinct prompts each replica was given

        def _model_generate(self, requests, generate, sampling_params):
            assert generate and sampling_params == 20  # probe_sampling(TOP_K), stubbed below
            answers: list = [None] * len(requests)
            for r, model in enumerate(replicas):
                mine = list(range(r, len(requests), len(replicas)))
                self.asked[r] |= {tuple(requests[i]) for i in mine}
                for i, got in zip(mine, hf_logprobs(model)([requests[i] for i in mine])):
                    answers[i] = out(got)
            return answers

    return types.SimpleNamespace(VLLM=VLLM)


@pytest.mark.parametrize("replicas, refused", [(("lora", "lora"), False), (("lora", "base"), True),
                                               (("base",), True), (("lora",), False)])
def test_vllm_backend_checks_every_data_parallel_replica(replicas, refused, tiny_llama_dir, tiny_lora_dir,
                                                         tmp_path, monkeypatch):
    """With --dp 2 a replica that never received the LoRA (lm-eval's known failure) is refused; each replica
    is asked every probe."""
    models = [_served(tiny_llama_dir, tiny_lora_dir if r == "lora" else None) for r in replicas]
    monkeypatch.setattr(backends, "_import_lm_eval_vllm", lambda: _fake_lm_eval(models))
    monkeypatch.setattr("tinyeval.vllm.probe_sampling", lambda k: k)
    spec = _spec(tiny_llama_dir, tiny_lora_dir, tmp_path, dp=len(replicas))
    if refused:
        with pytest.raises(TinyevalError, match=r"\(vllm-lora\): the served model ignores the adapter"):
            backends._build_vllm(spec)
        return
    lm = backends._build_vllm(spec)
    assert lm.kwargs["lora_local_path"] == str(tiny_lora_dir)
    assert lm.liveness["served"] == "vllm-lora" and lm.liveness["verdict"] == "live"
    assert [len(a) for a in lm.asked] == [lm.liveness["probes"]] * len(replicas)  # every replica, every probe


def test_a_merged_checkpoint_that_lost_the_adapter_is_refused(tiny_llama_dir, tiny_lora_dir, tmp_path, monkeypatch):
    """--merge: the engine loads the merged checkpoint; one written from the base weights is refused."""
    monkeypatch.setattr("tinyeval.vllm.probe_sampling", lambda k: k)
    monkeypatch.setattr(backends, "_import_lm_eval_vllm", lambda: _fake_lm_eval([_served(tiny_llama_dir, None)]))
    with pytest.raises(TinyevalError, match=r"\(vllm-merged\): the served model ignores the adapter"):
        backends._build_vllm(_spec(tiny_llama_dir, tiny_lora_dir, tmp_path, merge=True))
    monkeypatch.setattr(backends, "_import_lm_eval_vllm",
                        lambda: _fake_lm_eval([_served(tmp_path / "merged", None)]))  # what vllm_inputs wrote
    lm = backends._build_vllm(_spec(tiny_llama_dir, tiny_lora_dir, tmp_path, merge=True))
    assert lm.kwargs["pretrained"] == str(tmp_path / "merged") and lm.liveness["served"] == "vllm-merged"
