import json

import pytest

from tinyeval import models
from tinyeval.errors import TinyevalError


def test_unknown_alias_is_clear():
    with pytest.raises(TinyevalError, match="unknown model 'qwen9'"):
        models.resolve("qwen9")


def test_path_that_is_not_a_model(tmp_path):
    with pytest.raises(TinyevalError, match="not a model directory"):
        models.resolve(str(tmp_path))
    with pytest.raises(TinyevalError, match="does not exist"):
        models.resolve(str(tmp_path / "missing"))


def test_config_only_planning_offline():
    config = models.load_config("qwen2.5-7b")
    assert config.num_hidden_layers == 28 and config.hidden_size == 3584
    info = models.describe("qwen2.5-7b")
    assert 7.6e9 < info.parameters < 7.7e9  # Qwen2.5-7B-Instruct has 7.62B parameters


def test_offline_weights_error_names_alias_places_and_fix():
    with pytest.raises(TinyevalError) as e:
        models.model_dir("qwen2.5-7b")
    msg = str(e.value)
    assert "qwen2.5-7b" in msg and "Qwen/Qwen2.5-7B-Instruct" in msg and "HF cache" in msg and "hf download" in msg


@pytest.mark.slow
def test_smollm2_loads_from_embedded_gguf_and_answers(data_root, smollm2_dir):
    from tinyeval import data
    from tinyeval.generation import chat_prompt, generate

    assert (smollm2_dir / "model.safetensors").is_file()
    model, tok = models.load_model("smollm2-135m")
    assert model.config.num_hidden_layers == 30
    question = data.load("gsm8k", "test").rows[0]["question"]
    [answer] = generate(model, tok, [chat_prompt(tok, question)], max_new_tokens=48)
    assert answer.strip()


def test_broken_tokenizer_is_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(TinyevalError, match=r"no usable tokenizer in .*JSONDecodeError"):
        models.load_tokenizer(str(tmp_path))


def test_truncated_or_junk_weights_are_named(tiny_llama_dir, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, model)
    models.check_weights(str(model))  # intact: passes
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(TinyevalError, match=r"model\.safetensors is not a readable safetensors file .*incomplete"):
        models.check_weights(str(model))
    weights.write_bytes(b"\x00junk" * 50)
    with pytest.raises(TinyevalError, match=r"model\.safetensors is not a readable safetensors file"):
        models.check_weights(str(model))
    with pytest.raises(TinyevalError, match=r"could not be loaded from .*SafetensorError"):
        models.load_model(str(model))
