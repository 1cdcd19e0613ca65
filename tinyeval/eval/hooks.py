"""Functions the YAML tasks in `tasks/` call through lm-eval's `!function` tag.

They exist so that lm-eval scores with the same code that trains: the GSM8K filters are
`tinyeval.grading.gsm8k_strict` / `gsm8k_lenient`, MATH500 is judged by `tinyeval.grading.math_equal`
(math-verify), exactly as the training rewards do. Nothing here re-implements lm-eval: each function is
one plug-in point of a stock `ConfigurableTask` (custom_dataset, doc_to_target, a `custom` filter,
process_results).

Datasets are resolved when a task is built, not when the YAML is written: `load_dataset` turns the
tinyeval dataset name into absolute paths under the run's data root (else `TINYEVAL_DATA`) and loads them with the
same `datasets` builders (`json`, `csv`) that a stock lm-eval task uses with `data_files`; with no data root it
falls back to the hub copy, converted to the data-root schema by `tinyeval.data`.
"""

from __future__ import annotations

import re
from decimal import Decimal

from tinyeval import data, grading
from tinyeval.errors import TinyevalError

INVALID = "[invalid]"  # what lm-eval's own regex filter returns when nothing matches
_BUILDERS = {".jsonl": ("json", {}), ".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t"})}


def load_dataset(dataset: str, data_root: str | None = None, **_metadata):
    """`custom_dataset` hook: every split of a tinyeval dataset as a `datasets.DatasetDict`.

    lm-eval passes the task's metadata (version, config source, and the `data_root` that
    `tasks.task_manager(data_root)` attached) alongside `dataset_kwargs`; only `dataset` (a name in
    `tinyeval.data.DATASETS`) and `data_root` matter. A missing file with no hub copy, or a file that the `datasets`
    reader refuses, raises `TinyevalError` naming the path.
    """
    import datasets

    splits = {}
    for split in data.spec(dataset).files:
        path = data.local_path(dataset, split, data_root)
        if path is not None:
            builder, kwargs = _BUILDERS[path.suffix]
            try:
                splits[split] = datasets.load_dataset(builder, data_files={split: str(path.resolve())}, split=split,
                                                      **kwargs)
            except Exception as e:  # datasets wraps the reader's error in two more: name the file, once
                raise TinyevalError(f"{path}: the datasets '{builder}' reader refused it ({_root_cause(e)})") from None
        else:
            splits[split] = datasets.Dataset.from_list(data.load(dataset, split, data_root).rows)
    return datasets.DatasetDict(splits)


def _root_cause(e: BaseException) -> str:
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    return f"{type(e).__name__}: " + next(iter(str(e).strip().splitlines()), "")


# ---- GSM8K ---------------------------------------------------------------------------------------------

def canonical_number(value: Decimal | None) -> str:
    """One spelling per number, so lm-eval's string exact_match equals tinyeval's Decimal equality.

    `Decimal.normalize` alone would print 1000 as '1E+3'; fixed-point formatting undoes that.
    """
    return INVALID if value is None else format(value.normalize(), "f")


def gsm8k_target(doc: dict) -> str:
    """The gold number after `####`, canonical ('1,000' -> '1000')."""
    return canonical_number(grading.gsm8k_gold(doc["answer"]))


def gsm8k_strict(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """`custom` filter: the number after the last `#### ` (the requested format), else '[invalid]'."""
    return [[canonical_number(grading.gsm8k_strict(r)) for r in rs] for rs in resps]


def gsm8k_lenient(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """`custom` filter: the last number anywhere in the completion, else '[invalid]'."""
    return [[canonical_number(grading.gsm8k_lenient(r)) for r in rs] for rs in resps]


def gsm8k_fewshot_target(doc: dict) -> str:
    """A train solution as a few-shot answer: reasoning without `<<expr=value>>` calculator notes."""
    return re.sub(r"<<[^>]*>>", "", doc["answer"])


# ---- MATH500 -------------------------------------------------------------------------------------------

def math_boxed(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """`custom` filter (strict): the content of the last `\\boxed{}`, else '[invalid]'."""
    return [[_or_invalid(grading.last_boxed(r)) for r in rs] for rs in resps]


def math_lenient(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """`custom` filter (lenient): the answer `tinyeval.grading.grade_math` would judge, boxed or not."""
    return [[_or_invalid(grading.grade_math(r, doc["answer"]).extracted) for r in rs] for rs, doc in zip(resps, docs)]


def math_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    """Score one filtered answer: math-verify equivalence, and plain exact match of the answer string."""
    pred = results[0]
    if pred == INVALID:
        return {"math_verify": 0, "exact_match": 0}
    return {"math_verify": int(grading.math_equal(doc["answer"], pred)),
            "exact_match": int(pred.strip() == doc["answer"].strip())}


def _or_invalid(text: str | None) -> str:
    return INVALID if text is None else text


# ---- arith: generated held-out problems and their twins ------------------------------------------------

ARITH_TWIN_SEED = 7  # the twins' operand draws; changing it changes the task's config hash (it is in the YAML)


def arith_dataset(twins: bool = False, seed: int = ARITH_TWIN_SEED, **_metadata):
    """`custom_dataset` hook: arith's held-out test problems (`tinyeval.train.tasks.arith_questions`), or with
    `twins` one twin per problem (same template, name and item; operands redrawn at `seed`, answer recomputed;
    never a training question). Each doc carries `item_id` "arith/test/<row>": a twin its original's, so scores on
    originals and twins pair item by item."""
    import random

    import datasets

    from tinyeval.train.tasks import arith_questions, arith_twin

    test = arith_questions("test")
    rows = [{"question": q, "answer": f"#### {ans}", "item_id": f"arith/test/{i}"} for i, (q, ans) in enumerate(test)]
    if twins:
        rng, train = random.Random(seed), {q for q, _ in arith_questions("train")}
        made = [(row, arith_twin(row["question"], rng, train | {row["question"]})) for row in rows]
        rows = [{**row, "question": t[0], "answer": f"#### {t[1]}"} for row, t in made if t is not None]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def plain_number_target(doc: dict) -> str:
    """A gold answer stored as a bare number (GSM1k's CSV), canonical like `gsm8k_target`."""
    return canonical_number(grading.normalize_number(str(doc["answer"])))


# ---- GSM8K twins: built from the perturbation engine when the task loads ----------------------------------

def gsm8k_twins_dataset(seed: int = 0, data_root: str | None = None, **_metadata):
    """`custom_dataset` hook: one verified twin per GSM8K test item `tinyeval.audit.perturb` covers at `seed`
    (the `tinyeval perturb` engine: numbers redrawn, chain re-executed, answer verified), in dataset order, each
    with its original's `item_id` "gsm8k/test/<row>". Items without a safe twin are left out (about 15%)."""
    import datasets

    from tinyeval.audit.perturb.twins import PerturbConfig, perturb_rows

    twins, _ = perturb_rows(data.load("gsm8k", "test", data_root).rows, PerturbConfig(seed=seed))
    rows = [{"question": t.question, "answer": t.answer, "item_id": f"gsm8k/test/{t.index}"} for t in twins]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
