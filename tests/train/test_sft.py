"""SFT objective: completion-only loss mask, bucketing weights, skipping, and bit-for-bit resume."""

import pytest
import torch

from tinyeval.errors import TinyevalError
from tinyeval.train import sft
from tinyeval.train.recipes import build, run


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def test_completion_only_mask_on_hand_built_example(tokenizer):
    ex = sft.tokenize_pair(tokenizer, "What is 2+3?", "2+3=5\n#### 5")
    prompt = tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], tokenize=False,
                                                     add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    target = tokenizer("2+3=5\n#### 5", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert ex.input_ids == prompt + target
    assert ex.labels == [sft.IGNORE] * len(prompt) + target


def test_gsm8k_targets_drop_annotations_unless_kept():
    answer = "She has 3*4=<<3*4=12>>12 eggs.\n#### 12"
    assert sft.gsm8k_target(answer) == "She has 3*4=12 eggs.\n#### 12"
    assert sft.gsm8k_target(answer, keep_annotations=True) == answer


def test_loss_is_mean_nll_over_target_tokens_only(tiny_llama_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    examples = [sft.tokenize_pair(tokenizer, "Q one", "A"), sft.tokenize_pair(tokenizer, "a longer question here", "B c d")]
    [micro] = sft.bucketed_micro_batches(examples, 8, tokenizer.pad_token_id)
    loss, n = sft.completion_nll(model, micro)
    by_hand, count = 0.0, 0
    for e in examples:
        logits = model(input_ids=torch.tensor([e.input_ids])).logits[0]
        for t in range(1, len(e.input_ids)):
            if e.labels[t] != sft.IGNORE:
                by_hand -= float(torch.log_softmax(logits[t - 1].detach().float(), -1)[e.labels[t]])
                count += 1
    assert n == count == 2 + 4  # "A" + eos, "B c d" + eos (one token per word in this tokenizer's vocab)
    assert float(loss) == pytest.approx(by_hand / count, rel=1e-4)


def test_bucketing_sorts_by_length_and_weights_sum_to_one(tokenizer):
    examples = [sft.tokenize_pair(tokenizer, "q" * k, "answer " * k) for k in (9, 1, 5, 3)]
    micro = sft.bucketed_micro_batches(examples, 2, tokenizer.pad_token_id)
    assert sum(m.weight for m in micro) == pytest.approx(1.0)
    assert micro[0].input_ids.shape[1] < micro[1].input_ids.shape[1]


def test_empty_and_overlong_examples_are_skipped_with_counts(tokenizer, monkeypatch):
    pairs = [("q1", "fine answer\n#### 1"), ("q2", ""), ("q3", "long " * 500), ("q4", "ok\n#### 4")]
    monkeypatch.setitem(sft.SFT_TASKS, "toy", lambda split, root, keep: pairs)
    with pytest.warns(RuntimeWarning, match="skipped 1 empty and 1 over-long"):
        kept, counts = sft.load_sft_examples("toy", tokenizer, "train", sft.SFTConfig(max_seq_tokens=200))
    assert len(kept) == 2 and counts == {"examples": 4, "skipped_empty": 1, "skipped_too_long": 1}
    monkeypatch.setitem(sft.SFT_TASKS, "toy", lambda split, root, keep: [("q", "")])
    with pytest.raises(TinyevalError, match="no usable example"), pytest.warns(RuntimeWarning):
        sft.load_sft_examples("toy", tokenizer, "train", sft.SFTConfig())


def test_unknown_sft_task(tokenizer):
    with pytest.raises(TinyevalError, match="no gold solutions"):
        sft.load_sft_examples("lsat_lr", tokenizer, "train", sft.SFTConfig())


def _final_params(out):
    from tinyeval.train.loop import latest_checkpoint, read_checkpoint

    return read_checkpoint(latest_checkpoint(out))["params"]


def test_resume_reproduces_the_same_adapter(tiny_llama_dir, tmp_path, data_root):
    opts = dict(model=str(tiny_llama_dir), task="gsm8k", method="lora", rank=1, limit=12, prompts_per_step=3,
                micro_batch=2, lr=1e-2, max_seq_tokens=256, eval_examples=0, checkpoint_every=1, dtype="float32")
    straight, split = tmp_path / "straight", tmp_path / "split"
    run("sft", *build("sft", steps=4, **opts), straight, progress=False)
    run("sft", *build("sft", steps=2, **opts), split, progress=False)
    summary = run("sft", *build("sft", steps=4, **opts), split, resume=True, progress=False)
    assert summary["steps"] == 4
    for a, b in zip(_final_params(straight), _final_params(split)):
        assert torch.equal(a, b)
    assert (split / "records.jsonl").read_text().count("\n") == 4
