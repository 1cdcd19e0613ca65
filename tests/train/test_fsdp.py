"""FSDP2 full fine-tuning on CPU (gloo, 2 processes) equals the same training in one process."""

import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

STEPS = 3
# SGD is linear in the gradient: the sharded run must agree to float rounding. AdamW divides by |g| + eps, so
# for a gradient entry near eps the summation-order noise of a reduce-scatter (|Δg| ~ 1e-9) moves the update
# by lr·|Δg|/eps: at torch's eps = 1e-8 that is up to ~lr/10 on a few entries (seen: 5e-4), at eps = 1e-6 ~1e-5.
OPTIMIZERS = {
    "sgd": (lambda params: torch.optim.SGD(params, lr=0.5), 1e-6),
    "adamw": (lambda params: torch.optim.AdamW(params, lr=1e-2, eps=1e-6, weight_decay=0.1), 1e-4),
}


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def batch() -> torch.Tensor:
    return torch.randint(0, 128, (4, 12), generator=torch.Generator().manual_seed(1))


def train(model, optimizer_name: str, tokens: torch.Tensor, reduce_loss=lambda loss: loss,
          optimizer=None) -> list[float]:
    """The loop's recipe: per step one mean-token loss, backward, gradient clipping, one update."""
    optimizer = optimizer or OPTIMIZERS[optimizer_name][0](model.parameters())
    losses = []
    for _ in range(STEPS):
        loss = model(tokens, labels=tokens).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(reduce_loss(loss.detach())))
    return losses


def _worker(rank: int, world: int, port: int, optimizer_name: str, out: str) -> None:
    import os

    import torch.distributed as dist

    from tinyeval.train.fsdp import full_state_dict, init_mesh, shard_full_model

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    mesh = init_mesh("cpu")
    model = shard_full_model(tiny_llama(), mesh)
    weight = model.model.layers[0].self_attn.q_proj.weight
    assert type(weight).__name__ == "DTensor" and weight.to_local().shape == (32 // world, 32)  # dim-0 shards

    def mean_over_ranks(loss):
        dist.all_reduce(loss)
        return loss / world

    rows = 4 // world  # each rank trains on its own slice of the batch (FSDP is data parallel)
    optimizer = OPTIMIZERS[optimizer_name][0](model.parameters())
    losses = train(model, optimizer_name, batch()[rank * rows:(rank + 1) * rows], mean_over_ranks, optimizer)
    _checkpoint_round_trip(model, optimizer, optimizer_name, mesh, Path(out).parent / "run")
    weights = full_state_dict(model)
    assert (rank == 0) == bool(weights)  # gathered on rank 0 only
    if rank == 0:
        torch.save({"losses": losses, "weights": weights}, out)
    dist.destroy_process_group()


def _checkpoint_round_trip(model, optimizer, optimizer_name: str, mesh, out: Path) -> None:
    """The loop's checkpoint of sharded training (gathered by every rank, written by rank 0) loads back into a
    freshly sharded model and optimizer: every rank gets exactly its shards of the weights and AdamW moments."""
    import torch.distributed as dist

    from tinyeval.train.fsdp import shard_full_model
    from tinyeval.train.loop import (
        TrainState,
        latest_checkpoint,
        load_checkpoint,
        read_checkpoint,
        save_checkpoint,
    )

    def state_of(m, opt, step=0):
        return TrainState(list(m.parameters()), opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), step)

    save_checkpoint(out, state_of(model, optimizer, STEPS))
    dist.barrier()  # rank 0 has written it
    saved = read_checkpoint(latest_checkpoint(out))  # full tensors, as one process saves them
    assert [p.shape for p in saved["params"]] == [p.shape for p in model.parameters()]
    fresh = shard_full_model(tiny_llama(), mesh)
    fresh_optimizer = OPTIMIZERS[optimizer_name][0](fresh.parameters())
    restored = state_of(fresh, fresh_optimizer)
    load_checkpoint(latest_checkpoint(out), restored)
    assert restored.step == STEPS
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert type(b).__name__ == "DTensor" and torch.equal(a.to_local(), b.to_local())
    before, after = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert before.keys() == after.keys() and (before or optimizer_name == "sgd")
    for i in before:
        for key, value in before[i].items():
            local = (lambda t: t.to_local() if hasattr(t, "to_local") else t)
            assert torch.equal(local(value), local(after[i][key])), (i, key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
def test_two_process_fsdp_matches_one_process(tmp_path, optimizer_name):
    reference = tiny_llama()
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    losses = train(reference, optimizer_name, batch())
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, free_port(), optimizer_name, str(out)), nprocs=2, join=True)
    got = torch.load(out)
    torch.testing.assert_close(torch.tensor(got["losses"]), torch.tensor(losses), rtol=1e-5, atol=1e-6)
    expected = reference.state_dict()
    assert set(got["weights"]) == set(expected)
    atol = OPTIMIZERS[optimizer_name][1]
    for name, w in expected.items():
        assert not torch.equal(w, before[name])  # training moved every tensor
        torch.testing.assert_close(got["weights"][name], w, rtol=1e-4, atol=atol, msg=name)


def test_decoder_layers_are_the_models_no_split_modules():
    from tinyeval.train.fsdp import decoder_layers

    model = tiny_llama()
    assert decoder_layers(model) == list(model.model.layers)
    with pytest.raises(ValueError, match="no decoder layers"):
        decoder_layers(torch.nn.Linear(2, 2))


# ---- the recipe: `tinyeval train --method full --nproc 2` -----------------------------------------------

FULL_SFT = {"task": "gsm8k", "method": "full", "steps": 2, "limit": 8, "prompts_per_step": 4, "micro_batch": 1,
            "lr": 1e-3, "max_seq_tokens": 256, "eval_examples": 0, "checkpoint_every": 1, "dtype": "float32",
            "threads": 1}


def _cli_args(options: dict) -> list[str]:
    return [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def _weights(run_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for f in sorted((run_dir / "adapter" / "model").glob("*.safetensors")) for k, v in load_file(f).items()}


def _assert_same_update(got: dict, expected: dict, base: dict) -> None:
    """Each tensor's update (trained - base) agrees with the one-process update to 1e-3 of its size: AdamW
    (eps 1e-8) turns reduce-scatter rounding on near-zero gradient entries into up to ~lr/10 on a few entries
    (see OPTIMIZERS), while a rank training on the wrong slice or a wrongly scaled loss moves whole tensors."""
    assert set(got) == set(expected)
    for name, w in expected.items():
        step = (w - base[name]).norm()
        assert step > 0, name  # training moved every tensor
        assert (got[name] - w).norm() <= 1e-3 * step, (name, float((got[name] - w).norm() / step))


def _cpu_only(monkeypatch) -> None:
    """This process and the ranks it launches see no GPU: CPU ranks over gloo, also on a GPU machine."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="NCCL ranks need two GPUs"))])
def rank_device(request, monkeypatch) -> str:
    """Where the run and its ranks train: the CPU (gloo) everywhere, two GPUs (NCCL) where there are."""
    if request.param == "cpu":
        _cpu_only(monkeypatch)
    return request.param


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_train_nproc_2_saves_the_one_process_weights_and_resumes_in_one(tiny_llama_dir, data_root, tmp_path,
                                                                         rank_device):
    import json

    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from tinyeval import schema
    from tinyeval.cli import app
    from tinyeval.train.recipes import RECIPES, build, run

    one, two = tmp_path / "one", tmp_path / "two"
    run("sft", *build("sft", None, model=str(tiny_llama_dir), **FULL_SFT), one, progress=False)
    args = ["train", "--algo", "sft", "--out", str(two), "--model", str(tiny_llama_dir), "--nproc", "2", "--json"]
    result = CliRunner().invoke(app, args + _cli_args(FULL_SFT))
    assert result.exit_code == 0, result.output
    summary = json.loads((two / "summary.json").read_text())
    schema.check(summary, RECIPES["sft"].summary)
    assert summary["steps"] == 2 and "shard_s" in summary["startup"]["attach_phases"]
    assert summary["peak_mem_kind"] == {"cpu": "rss", "cuda": "cuda_max_allocated"}[rank_device]
    rows = {d: [json.loads(line) for line in (d / "records.jsonl").read_text().splitlines()] for d in (one, two)}
    assert schema.check_lines(rows[two], RECIPES["sft"].record, "records") == 2
    for a, b in zip(rows[one], rows[two]):  # the whole step's loss, gradient norm and tokens, not a rank's
        assert a["target_tokens"] == b["target_tokens"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5) and b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    base = load_file(next(tiny_llama_dir.glob("*.safetensors")))
    _assert_same_update(_weights(two), _weights(one), base)
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-000001", "step-000002"]
    # the ranks' checkpoint is a one-process checkpoint: a single process resumes it
    for d in (one, two):
        run("sft", *build("sft", None, model=str(tiny_llama_dir), **{**FULL_SFT, "steps": 3}), d, resume=True,
            progress=False)
    _assert_same_update(_weights(two), _weights(one), base)


@pytest.mark.parametrize(("options", "message"), [
    ({**FULL_SFT, "method": "lora"}, "only --method full is sharded"),
    ({**FULL_SFT, "prompts_per_step": 3}, "must be a multiple of it"),
])
def test_nproc_refuses_what_it_does_not_shard(tiny_llama_dir, tmp_path, options, message):
    from tinyeval.errors import TinyevalError
    from tinyeval.train.recipes import build, run

    with pytest.raises(TinyevalError, match=message):
        run("sft", *build("sft", None, model=str(tiny_llama_dir), **options), tmp_path / "x", nproc=2)
    with pytest.raises(TinyevalError, match="rollouts are not sharded"):
        run("grpo", *build("grpo", None, model=str(tiny_llama_dir), method="full", prompts_per_step=2),
            tmp_path / "x", nproc=2)
    assert not (tmp_path / "x").exists()


def test_a_user_error_in_the_ranks_is_one_line_where_they_were_launched(tmp_path, monkeypatch):
    from tinyeval.errors import TinyevalError
    from tinyeval.train.recipes import build, run

    _cpu_only(monkeypatch)

    with pytest.raises(TinyevalError) as raised:
        run("sft", *build("sft", None, model=str(tmp_path / "no-such-model"), **FULL_SFT), tmp_path / "x", nproc=2)
    assert "no-such-model" in str(raised.value) and "\n" not in str(raised.value)
    assert "Traceback" not in str(raised.value)
