"""Start-up of an adapter (issue: 7B start-up): phases timed into `handle.timings` and adapter.json, each base
weight hashed once per attach, device-independent fingerprints, and no exact-SVD fallback on random-init weights."""

import json

import pytest
import torch
import xxhash

from tinyeval import schema
from tinyeval.adapters import AdapterConfig, attach, load_adapter, svd
from tinyeval.adapters.artifact import AdapterJson, base_fingerprint, hashing_once, target_fingerprints
from tinyeval.errors import TinyevalError

ATTACH = {"plan_s", "fingerprint_s", "create_s", "total_s"}
LOAD = {"verify_s", "plan_s", "fingerprint_s", "load_s", "total_s"}


@pytest.mark.parametrize("method", ["tinylora", "lora-xs", "lora", "full"])
def test_attach_and_load_time_their_phases(make_llama, tmp_path, method):
    h = attach(make_llama(), AdapterConfig(method=method, params=7))
    lowrank = method in ("tinylora", "lora-xs")
    assert set(h.timings) == ATTACH | ({"svd_s"} if lowrank else set())
    assert all(isinstance(s, float) and s >= 0 for s in h.timings.values())
    parts = h.timings["plan_s"] + h.timings["fingerprint_s"] + h.timings["create_s"]
    assert parts <= h.timings["total_s"] + 0.003  # each rounded to the millisecond
    if lowrank:
        assert h.timings["svd_s"] <= h.timings["create_s"] + 0.001
    h.save(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "adapter.json").read_text())
    schema.check(meta, AdapterJson)
    assert meta["timings"] == h.timings
    loaded = load_adapter(make_llama(), tmp_path / "a")
    assert set(loaded.timings) == LOAD and all(s >= 0 for s in loaded.timings.values())


@pytest.mark.parametrize("dtype, passes", [("bfloat16", 1), ("float32", 2)])
def test_attach_hashes_each_weight_once_where_the_bytes_are_the_same(make_llama, monkeypatch, dtype, passes):
    """bf16 weights: the base fingerprint (bf16-rounded) and the SVD cache keys (exact bytes) are the same hash,
    taken once; fp32 weights need both."""
    calls = []
    real = svd.fingerprint
    monkeypatch.setattr(svd, "fingerprint", lambda t: calls.append(t.dtype) or real(t))
    model = make_llama(dtype=dtype)
    h = attach(model, AdapterConfig(params=7))
    assert len(calls) == passes * len(h.targets)
    calls.clear()
    assert h.base_fingerprint == base_fingerprint(model, h.targets)  # the same value as an unshared pass
    assert len(calls) == len(h.targets)


def test_memo_lives_only_inside_hashing_once(make_llama):
    model = make_llama(dtype="bfloat16")
    h = attach(model, AdapterConfig(params=7))
    before = target_fingerprints(model, h.targets)
    w = model.get_submodule(h.targets[-1].name).weight
    with torch.no_grad():
        w.view(-1)[0] = torch.nextafter(w.view(-1)[0], torch.tensor(1.0, dtype=w.dtype))  # one ulp
    after = target_fingerprints(model, h.targets)
    assert after[:-1] == before[:-1] and after[-1] != before[-1]
    with hashing_once():
        inside = target_fingerprints(model, h.targets)
        with torch.no_grad():
            w.view(-1)[0] = 0.0
        assert target_fingerprints(model, h.targets) == inside  # documented: weights must not change inside
    assert target_fingerprints(model, h.targets)[-1] not in (inside[-1], before[-1])


def test_one_ulp_in_a_bf16_base_is_still_a_different_base(make_llama, tmp_path):
    model = make_llama(dtype="bfloat16")
    h = attach(model, AdapterConfig(params=7))
    h.save(tmp_path / "a")
    other = make_llama(dtype="bfloat16")
    w = other.get_submodule(h.targets[3].name).weight
    with torch.no_grad():
        w.view(-1)[5] = torch.nextafter(w.view(-1)[5], torch.tensor(1.0, dtype=w.dtype))
    with pytest.raises(TinyevalError, match="different base model"):
        load_adapter(other, tmp_path / "a")
    assert load_adapter(make_llama(dtype="bfloat16"), tmp_path / "a").base_fingerprint == h.base_fingerprint


def test_streamed_host_copy_hashes_the_same_bytes():
    """The GPU path of `fingerprint` (chunks through one host buffer) digests exactly what the CPU path does."""
    W = torch.randn(300, 77).bfloat16()
    flat = W.reshape(-1).view(torch.uint8)
    for chunk in (1, 1000, flat.numel() - 1, flat.numel(), 1 << 26):
        h = xxhash.xxh3_128()
        h.update(f"{tuple(W.shape)}|{W.dtype}|".encode())
        for part in svd._host_chunks(flat, chunk):
            h.update(part)
        assert h.hexdigest() == svd.fingerprint(W), chunk


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fingerprint_does_not_depend_on_the_device():
    W = torch.randn(1000, 333).bfloat16()
    assert svd.fingerprint(W.cuda()) == svd.fingerprint(W)


def test_random_init_7b_mlp_weight_converges_without_the_exact_fallback():
    """A Gaussian (random-init) Qwen2.5-7B down_proj has a flat top spectrum: Krylov needs a basis past the old
    limit of 192 (48 passes at block 8), and the exact SVD it fell back to took 145 s here, ~1 s on an H200,
    for each of a 7B model's 84 MLP weights."""
    g = torch.Generator().manual_seed(0)
    W = (torch.randn(3584, 18944, generator=g) * 0.02).bfloat16()
    out = svd.top_svd(W, 2)
    assert out.method == "krylov" and out.passes > 48
