"""A damaged, edited or diverged adapter is refused with one line (`TinyevalError`), never loaded or a traceback."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tinyeval import schema
from tinyeval.adapters import AdapterConfig, AdapterJson, attach, load_adapter
from tinyeval.adapters.artifact import file_hashes
from tinyeval.errors import TinyevalError


@pytest.fixture
def saved(make_llama, tmp_path):
    """A trained-looking TinyLoRA artifact on disk."""
    h = attach(make_llama(), AdapterConfig(params=7))
    with torch.no_grad():
        h.state.v.normal_()
    return h.save(tmp_path / "a")


def rehash(path) -> None:
    """Record the files' current hashes, as a writer other than tinyeval's `save` could have."""
    meta = json.loads((path / "adapter.json").read_text())
    meta["files"] = file_hashes(path)
    (path / "adapter.json").write_text(json.dumps(meta))


def test_edited_frozen_p_is_refused(make_llama, saved):
    frozen = load_file(str(saved / "frozen.safetensors"))
    frozen["P"] = frozen["P"] * 3  # a silently different adapter before the hash existed
    save_file(frozen, str(saved / "frozen.safetensors"))
    with pytest.raises(TinyevalError, match="frozen.safetensors does not match the hash in adapter.json"):
        load_adapter(make_llama(), saved)


def test_truncated_file_is_refused(make_llama, saved):
    data = (saved / "frozen.safetensors").read_bytes()
    (saved / "frozen.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(TinyevalError, match="frozen.safetensors does not match the hash"):
        load_adapter(make_llama(), saved)
    rehash(saved)  # even with a matching hash, the unreadable file is one line
    with pytest.raises(TinyevalError, match="frozen.safetensors: unreadable tensor file"):
        load_adapter(make_llama(), saved)


def test_missing_and_unexpected_files_are_refused(make_llama, saved):
    (saved / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(TinyevalError, match="does not list: extra.safetensors"):
        load_adapter(make_llama(), saved)
    (saved / "extra.safetensors").unlink()
    (saved / "v.safetensors").unlink()
    with pytest.raises(TinyevalError, match="incomplete: missing v.safetensors"):
        load_adapter(make_llama(), saved)


@pytest.mark.parametrize("damage,message", [
    (lambda text: text[: len(text) // 2], "unreadable adapter metadata"),
    (lambda text: "[1, 2]", "unsupported adapter format"),
    (lambda text: text.replace('"version": 2', '"version": 1'), "unsupported adapter format tinyeval-adapter v1"),
    (lambda text: text.replace('"base_fingerprint"', '"base_print"'), r"missing key 'base_fingerprint'"),
    (lambda text: text.replace('"rank": 2', '"rank": "2"'), r"\$.config.rank: expected int"),
    (lambda text: text.replace('"method": "tinylora"', '"method": "nope"', 1), "unknown adapter method 'nope'"),
])
def test_broken_adapter_json_is_one_line(make_llama, saved, damage, message):
    meta = saved / "adapter.json"
    meta.write_text(damage(meta.read_text()))
    with pytest.raises(TinyevalError, match=message):
        load_adapter(make_llama(), saved)


def test_nan_is_refused_at_save(make_llama, tmp_path):
    h = attach(make_llama(), AdapterConfig(params=7))
    with torch.no_grad():
        h.state.v[0, 0] = float("nan")
    with pytest.raises(TinyevalError, match="1 of 7 trained parameters are NaN or inf"):
        h.save(tmp_path / "nan")
    assert not (tmp_path / "nan").exists()


def test_nan_is_refused_at_load(make_llama, saved):
    payload = load_file(str(saved / "v.safetensors"))
    payload["v"][1, 0] = float("inf")
    save_file(payload, str(saved / "v.safetensors"))
    rehash(saved)  # the hash matches: only the finiteness check stands between this and a 0 score
    with pytest.raises(TinyevalError, match="refusing to load .*NaN or inf"):
        load_adapter(make_llama(), saved)


def test_tensors_that_do_not_fit_the_plan_are_refused(make_llama, saved):
    payload = load_file(str(saved / "v.safetensors"))
    save_file({"v": payload["v"][:3].contiguous()}, str(saved / "v.safetensors"))
    rehash(saved)
    with pytest.raises(TinyevalError, match=r"do not fit its plan: v \(3, 1\) \(expected \(7, 1\)\)"):
        load_adapter(make_llama(), saved)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_other_methods_are_hashed_too(make_llama, tmp_path, method):
    h = attach(make_llama(), AdapterConfig(method=method))
    out = h.save(tmp_path / method)
    f = max(out.rglob("*.safetensors"), key=lambda p: p.stat().st_size)
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x40  # one bit of one weight
    f.write_bytes(bytes(data))
    with pytest.raises(TinyevalError, match=f"{f.name} does not match the hash"):
        load_adapter(make_llama(), out)


@pytest.mark.parametrize("method,config", [("tinylora", {"params": 7}), ("lora-xs", {}), ("lora", {}),
                                           ("full", {})])
def test_adapter_json_matches_its_schema(make_llama, tmp_path, method, config):
    out = attach(make_llama(), AdapterConfig(method=method, **config)).save(tmp_path / method, **(
        {"v_dtype": "bfloat16"} if method == "tinylora" else {}))
    meta = json.loads((out / "adapter.json").read_text())
    schema.check(meta, AdapterJson)
    assert meta["files"] and all(len(h) == 32 for h in meta["files"].values())
    assert ("svd" in meta) == (method in ("tinylora", "lora-xs"))
