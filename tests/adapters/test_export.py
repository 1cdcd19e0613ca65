import pytest
import torch

from tinyeval.adapters import AdapterConfig, attach
from tinyeval.errors import TinyevalError


def logits(model, tokens):
    with torch.no_grad():
        return model(tokens).logits


def peft_logits(base, lora_dir, tokens):
    from peft import PeftModel

    return logits(PeftModel.from_pretrained(base, lora_dir), tokens)


@pytest.mark.parametrize("min_rank", [None, 8])
def test_export_is_the_same_delta_as_plain_peft_lora(make_llama, tokens, tmp_path, min_rank):
    h = attach(make_llama(), AdapterConfig(params=7))
    with torch.no_grad():
        h.state.v.normal_()
    out = h.export_lora(tmp_path / "lora", min_rank=min_rank)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    torch.testing.assert_close(peft_logits(make_llama(), out, tokens), logits(h.model, tokens),
                               rtol=1e-5, atol=1e-5)


def test_full_has_nothing_to_export(make_llama, tmp_path):
    with pytest.raises(TinyevalError, match="no low-rank delta"):
        attach(make_llama(), AdapterConfig(method="full")).export_lora(tmp_path / "x")


@pytest.mark.slow
def test_exported_lora_matches_tinylora_on_smollm2(smollm2_dir, tmp_path):
    """The exported rank-2 LoRA, loaded by plain PEFT on a fresh SmolLM2, gives TinyLoRA's logits (bf16)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load():
        return AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.bfloat16).eval()

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    tokens = tok(["Natalia sold clips to 48 of her friends in April."], return_tensors="pt").input_ids
    h = attach(load(), AdapterConfig(params=13))
    base = logits(h.model, tokens)
    with torch.no_grad():
        h.state.v.copy_(torch.linspace(-0.05, 0.05, h.num_trainable).view_as(h.state.v))
    adapted = logits(h.model, tokens)
    assert (adapted - base).abs().max() > 0.5  # the adapter really moves the model
    exported = peft_logits(load(), h.export_lora(tmp_path / "lora"), tokens)
    # The two add the same delta with different bf16 arithmetic (PEFT: fp32 copies of the activations; tinyeval:
    # bf16 GEMMs, one rounding of base + delta), and 30 layers amplify single-ulp differences. So each is held to
    # the fp32 truth (mean |error| over all logits; measured: PEFT 1.33x, tinyeval 1.19x the bf16 base model's own
    # error), and their gap must be small against what the adapter moves (measured 0.21 vs 1.20).
    h32 = attach(load().float(), AdapterConfig(params=13))
    h32.state.load_state_dict(h.state.state_dict())
    truth = logits(h32.model, tokens)
    with h32.disabled():
        noise = (base - logits(h32.model, tokens)).abs().mean()
    for out in (exported, adapted):
        assert (out - truth).abs().mean() <= 2 * noise
    assert (exported - adapted).abs().mean() < 0.25 * (adapted - base).abs().mean()
    print(f"mean |error| vs fp32: exported {(exported - truth).abs().mean().item():.4f}, tinyeval "
          f"{(adapted - truth).abs().mean().item():.4f}, bf16 base {noise.item():.4f}; "
          f"max |tinylora - base| = {(adapted - base).abs().max().item():.4f}")
