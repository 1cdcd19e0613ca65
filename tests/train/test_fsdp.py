"""FSDP2 full fine-tuning on CPU (gloo, 2 processes) equals the same training in one process."""

import socket

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


def train(model, optimizer_name: str, tokens: torch.Tensor, reduce_loss=lambda loss: loss) -> list[float]:
    """The loop's recipe: per step one mean-token loss, backward, gradient clipping, one update."""
    optimizer = OPTIMIZERS[optimizer_name][0](model.parameters())
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
    losses = train(model, optimizer_name, batch()[rank * rows:(rank + 1) * rows], mean_over_ranks)
    weights = full_state_dict(model)
    assert (rank == 0) == bool(weights)  # gathered on rank 0 only
    if rank == 0:
        torch.save({"losses": losses, "weights": weights}, out)
    dist.destroy_process_group()


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
