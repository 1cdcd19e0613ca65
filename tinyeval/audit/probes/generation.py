"""The probes that generate: accuracy on originals vs their verified twins, and prefix completion.

  accuracy - originals vs their own verified number-perturbed twins (paired): a model that memorised GSM8K
             answers loses accuracy when the numbers change; strict and lenient both reported.
  prefix   - Wu et al. 2025: give the first 60% of a problem (raw text, no chat template), complete it
             greedily, score exact match and ROUGE-L of the remaining 40%, against the control set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tinyeval.audit.probes.config import Model, ProbeConfig, ProbeData, Signal, sample
from tinyeval.audit.probes.stats import diff_ci, mean_ci, paired_diff_ci

GSM8K_PROMPT = '{question}\nLet\'s think step by step and output the final answer after "####".'  # = tasks/gsm8k


def accuracy(model: Model, data: ProbeData, config: ProbeConfig) -> list[Signal]:
    """Paired accuracy of originals and their twins, strict and lenient."""
    from tinyeval.generation import chat_prompt
    from tinyeval.grading import grade_gsm8k

    picked = sample(data.twins, config.n_generate, config.seed)
    originals = [data.rows[t.index] for t in picked]
    prompts = [chat_prompt(model.tokenizer, GSM8K_PROMPT.format(question=q)) for q in
               [r["question"] for r in originals] + [t.question for t in picked]]
    outputs = model.generate(prompts, config.max_new_tokens)
    grades = [grade_gsm8k(out, gold["answer"]) for out, gold in
              zip(outputs, originals + [{"answer": t.answer} for t in picked])]
    n = len(picked)
    signals = []
    for mode in ("strict", "lenient"):
        ok = np.array([getattr(g, mode) for g in grades], float)
        orig, twin = ok[:n], ok[n:]
        detail = {"original": str(mean_ci(orig, config.n_boot)), "twin": str(mean_ci(twin, config.n_boot))}
        signals.append(Signal("accuracy", f"accuracy original - twin ({mode})",
                              paired_diff_ci(orig, twin, config.n_boot, seed=config.seed), 0.0,
                              "originals solved more often than their twins: consistent with memorised answers",
                              detail))
        signals.append(Signal("accuracy", f"accuracy on originals ({mode})", mean_ci(orig, config.n_boot), None,
                              f"level, for context; twins: {detail['twin']}", {}))
    return signals


def split_prefix(text: str, ratio: float) -> tuple[str, str]:
    """First `ratio` of the words (at least one) and the rest: the Wu et al. 2025 partial-prompt split."""
    words = text.split()
    cut = min(max(1, math.ceil(len(words) * ratio)), len(words) - 1)
    return " ".join(words[:cut]), " ".join(words[cut:])


def prefix_scores(model: Model, texts: Sequence[str], config: ProbeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Exact match and ROUGE-L F1 of each greedy completion against the true remainder of its text."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    parts = [split_prefix(t, config.prefix_ratio) for t in texts]
    outputs = model.generate([p for p, _ in parts], config.prefix_new_tokens)
    em, rouge = [], []
    for (_, rest), out in zip(parts, outputs):
        want = rest.split()
        got = out.split()[: len(want)]
        em.append(float(got == want))
        rouge.append(scorer.score(" ".join(want), " ".join(got))["rougeL"].fmeasure if got else 0.0)
    return np.array(em), np.array(rouge)


def prefix(model: Model, data: ProbeData, config: ProbeConfig) -> list[Signal]:
    """Exact match of benchmark completions, and their ROUGE-L against the control set's."""
    bench = sample([r[data.field] for r in data.rows], config.n_generate, config.seed)
    ctrl = sample(data.control, config.n_generate, config.seed)
    em, rouge = prefix_scores(model, bench, config)
    c_em, c_rouge = prefix_scores(model, ctrl, config)
    detail = {"bench_em": str(mean_ci(em, config.n_boot)), "control_em": str(mean_ci(c_em, config.n_boot)),
              "bench_rougeL": str(mean_ci(rouge, config.n_boot)),
              "control_rougeL": str(mean_ci(c_rouge, config.n_boot))}
    return [
        Signal("prefix", "prefix exact match of the last 40%", mean_ci(em, config.n_boot), 0.0,
               "completes benchmark problems verbatim: text seen in training", detail),
        Signal("prefix", "prefix ROUGE-L benchmark - control", diff_ci(rouge, c_rouge, config.n_boot,
                                                                       seed=config.seed), 0.0,
               "continues benchmark text more faithfully than fresh text: text seen in training", detail),
    ]
