"""A new adapter method is one class plus one `register` line: a toy "bias-only" method, defined and registered
here and nowhere else, attaches, trains, saves and reloads — in Python and through `tinyeval train`."""

import json
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from tinyeval import schema
from tinyeval.adapters import (
    METHODS,
    AdapterConfig,
    AdapterHandle,
    AdapterJson,
    attach,
    load_adapter,
    register,
)
from tinyeval.adapters.artifact import read_tensors
from tinyeval.adapters.planner import sized
from tinyeval.errors import TinyevalError


class BiasOnly(AdapterHandle):
    """A trainable bias (out,) added to each adapted module's output by a forward hook; zero at the start."""

    def __init__(self, model, config, plan, targets, base_fingerprint, biases):
        super().__init__(model, config, plan, targets, base_fingerprint)
        device = model.get_submodule(targets[0].name).weight.device
        self.biases = nn.ParameterList([nn.Parameter(b.float().to(device)) for b in biases])
        self.active = True
        for t, b in zip(targets, self.biases):
            model.get_submodule(t.name).register_forward_hook(
                lambda module, args, out, b=b: out + b.to(out.dtype) if self.active else out)

    @classmethod
    def cost(cls, targets, config, total_params):
        return sized(config.method, 0, targets, sum(t.out_features for t in targets), u=None, n_tie=None,
                     groups=None)

    @classmethod
    def create(cls, model, config, targets, plan, base_fingerprint):
        return cls(model, config, plan, targets, base_fingerprint, [torch.zeros(t.out_features) for t in targets])

    def write(self, out):
        from safetensors.torch import save_file

        save_file({t.name: b.detach().cpu().contiguous() for t, b in zip(self.targets, self.biases)},
                  str(out / "bias.safetensors"))
        return {}

    @classmethod
    def load(cls, model, config, targets, plan, meta, path):
        tensors = read_tensors(path / "bias.safetensors", [t.name for t in targets])
        return cls(model, config, plan, targets, meta["base_fingerprint"], [tensors[t.name] for t in targets])

    def trainable_parameters(self):
        return list(self.biases)

    @contextmanager
    def disabled(self):
        self.active = False
        try:
            yield self.model
        finally:
            self.active = True


register("bias-only", BiasOnly)  # the one registry line


def _model(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_registry_accepts_the_toy_method_and_refuses_unknown_names():
    assert METHODS["bias-only"] is BiasOnly
    assert register("bias-only", BiasOnly) is BiasOnly  # registering it again changes nothing
    with pytest.raises(TinyevalError, match="already registered"):
        register("lora", BiasOnly)
    with pytest.raises(TinyevalError, match="unknown adapter method 'bias-twice'.*bias-only"):
        AdapterConfig(method="bias-twice")


def test_toy_method_trains_saves_and_reloads(tiny_llama_dir, tmp_path):
    ids = torch.randint(0, 1000, (2, 10), generator=torch.Generator().manual_seed(0))
    base = _logits(_model(tiny_llama_dir), ids)
    h = attach(_model(tiny_llama_dir), AdapterConfig(method="bias-only"))
    assert h.num_trainable == sum(b.numel() for b in h.trainable_parameters()) == 2 * (3 * 64 + 2 * 32 + 2 * 128)
    assert torch.equal(_logits(h.model, ids), base)  # zero bias: step 0 is the base model
    opt = torch.optim.AdamW(h.trainable_parameters(), lr=1e-2)
    for _ in range(3):
        loss = h.model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    trained = _logits(h.model, ids)
    assert not torch.allclose(trained, base)
    with h.disabled():
        assert torch.equal(_logits(h.model, ids), base)
    out = h.save(tmp_path / "bias")
    schema.check(json.loads((out / "adapter.json").read_text()), AdapterJson)
    loaded = load_adapter(_model(tiny_llama_dir), out)
    assert isinstance(loaded, BiasOnly) and loaded.plan == h.plan
    assert torch.equal(_logits(loaded.model, ids), trained)


def test_toy_method_through_the_train_cli(tiny_llama_dir, tmp_path, data_root):
    from typer.testing import CliRunner

    from tinyeval.cli import app

    out = tmp_path / "run"
    args = ["train", "--model", str(tiny_llama_dir), "--method", "bias-only", "--algo", "sft", "--task", "gsm8k",
            "--limit", "4", "--steps", "2", "--prompts-per-step", "2", "--micro-batch", "2", "--lr", "1e-2",
            "--max-seq-tokens", "256", "--eval-examples", "0", "--dtype", "float32", "--out", str(out), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    meta = json.loads((out / "adapter" / "adapter.json").read_text())
    assert meta["config"]["method"] == "bias-only"
    loaded = load_adapter(_model(tiny_llama_dir), out / "adapter")
    assert isinstance(loaded, BiasOnly)
    assert all(b.abs().sum() > 0 for b in loaded.biases)  # it trained: every bias moved from zero
