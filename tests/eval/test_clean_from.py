"""--clean-from: scores without the items a real audit flags, in `tinyeval eval` and in the matrix report."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tinyeval.audit.clean import covered, flagged_items
from tinyeval.cli import app
from tinyeval.data import load
from tinyeval.errors import TinyevalError
from tinyeval.eval.results import clean_score
from tinyeval.eval.run import EvalConfig, evaluate

LEAKED = (0, 2)  # GSM8K test rows copied verbatim into the corpus below


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory, data_root):
    """A real `tinyeval audit gsm8k` over a corpus holding two GSM8K test items among unrelated text."""
    tmp = tmp_path_factory.mktemp("clean")
    rows = load("gsm8k", "test", str(data_root)).rows
    docs = [{"id": f"leak-{i}", "text": f"Some forum post.\n{rows[i]['question']}\n{rows[i]['answer']}"} for i in LEAKED]
    docs += [{"id": f"other-{i}", "text": f"An unrelated note number {i} about gardening and tea."} for i in range(20)]
    corpus = tmp / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    result = CliRunner().invoke(app, ["audit", "gsm8k", "--corpus", str(corpus), "--out", str(tmp / "audit"),
                                      "--data-root", str(data_root)])
    assert result.exit_code == 0, result.output
    return tmp / "audit"


def test_flagged_items_are_exactly_the_leaked_ones(audit_dir):
    assert flagged_items(audit_dir) == {"gsm8k": {f"gsm8k/test/{i}" for i in LEAKED}}
    assert flagged_items(audit_dir / "report.json") == flagged_items(audit_dir)


def _report(path, name: str, flagged: dict[str, bool], id_source: str | None = None) -> None:
    """A minimal audit report.json: the recipe's name (and id_source) and each item's id with its rule's verdict."""
    path.mkdir(parents=True)
    items = [{"id": i, "contaminated": c} for i, c in flagged.items()]
    (path / "report.json").write_text(json.dumps({"recipe": {"name": name, "id_source": id_source}, "items": items}))


def test_several_audits_and_a_full_math_audit_for_math500(audit_dir, tmp_path):
    """A directory of audits: two of gsm8k (say, two corpora) flag the union; an audit of the full MATH test flags
    MATH500's items by unique_id, so it counts for math500 too."""
    import shutil

    shutil.copytree(audit_dir, tmp_path / "all" / "gsm8k-web")
    _report(tmp_path / "all" / "gsm8k-code", "gsm8k", {"gsm8k/test/5": True, "gsm8k/test/6": False})
    _report(tmp_path / "all" / "math", "math", {"test/geometry/802.json": True, "math/test/4999": True},
            id_source="math500")
    flagged = flagged_items(tmp_path / "all")
    assert flagged["gsm8k"] == {f"gsm8k/test/{i}" for i in (*LEAKED, 5)}
    assert flagged["math"] == flagged["math500"] == {"test/geometry/802.json", "math/test/4999"}
    covered(flagged, ["math500"], {}, "all")
    covered(flagged, ["gsm8k_twins"], {"gsm8k_twins": "gsm8k"}, "all")  # a twin task counts as its original


def test_an_audit_that_covers_none_of_the_tasks_is_refused(audit_dir, tiny_llama_dir, tmp_path):
    with pytest.raises(TinyevalError, match="its audits cover gsm8k, none of the tasks arc_easy"):
        covered(flagged_items(audit_dir), ["arc_easy"], {}, audit_dir)
    with pytest.raises(TinyevalError, match="none of the tasks arc_easy"):  # before any model is loaded
        evaluate(EvalConfig(model=str(tiny_llama_dir), tasks=["arc_easy"], out=tmp_path / "out", clean_from=audit_dir))


def test_bad_audit_dirs_are_one_line_errors(tmp_path):
    with pytest.raises(TinyevalError, match="no audit report.json"):
        flagged_items(tmp_path)
    (tmp_path / "report.json").write_text('{"items": []}')
    with pytest.raises(TinyevalError, match="not a tinyeval audit report"):
        flagged_items(tmp_path)


def test_clean_score_removes_exactly_the_flagged_items():
    row = {"ids": ["gsm8k/test/0", "gsm8k/test/1", "gsm8k/test/2", "gsm8k/test/3"], "correct": [1, 0, 1, 1],
           "strict_correct": [1, 0, 0, 1], "lenient_correct": [1, 0, 1, 1]}
    c = clean_score(row, {"gsm8k/test/0", "gsm8k/test/2", "gsm8k/test/99"}, "aud")
    assert (c["dropped"], c["n"], c["value"], c["strict"], c["lenient"]) == (2, 2, 0.5, 0.5, 0.5)
    assert clean_score(row, set(row["ids"]), "aud")["value"] is None


def test_eval_clean_from_end_to_end(audit_dir, tiny_llama_dir, tmp_path, data_root):
    from tinyeval.eval.run import EvalConfig, evaluate

    record = evaluate(EvalConfig(model=str(tiny_llama_dir), tasks=["gsm8k"], out=tmp_path / "run", limit=3,
                                 max_gen_toks=8, dtype="float32", batch_size=8, backend="hf",
                                 data_root=str(data_root), clean_from=audit_dir))
    clean = record["tasks"]["gsm8k"]["clean"]
    assert (clean["dropped"], clean["n"]) == (2, 1) and clean["audit"] == str(audit_dir)
    assert record["settings"]["clean_from"] == str(audit_dir)


def test_report_clean_column_uses_the_unflagged_items():
    from tinyeval.report.render import rows
    from tinyeval.report.results import Cell, Results, SeedRun, TaskScore

    ids = [f"gsm8k/test/{i}" for i in range(6)]

    def cell(name, algo, correct):
        score = TaskScore("exact_match", sum(correct) / 6, None, 6, None, None, correct, ids, None, correct)
        return Cell(name, "base" if algo is None else "lora", algo, 0 if algo is None else 10, status="done",
                    seeds=[SeedRun(0, None, "done", {"gsm8k": score})])

    results = Results("m", "cpu", ["gsm8k"], [cell("base", None, [0, 0, 0, 0, 0, 0]),
                                              cell("lora-r1-grpo", "grpo", [1, 1, 1, 0, 0, 0])],
                      clean_from={"audit": "aud", "flagged": {"gsm8k": ["gsm8k/test/0", "gsm8k/test/1"]}})
    table = {r["cell"]: r for r in rows(results)}
    assert table["lora-r1-grpo"]["Δ gsm8k"].startswith("+50.0")
    assert table["lora-r1-grpo"]["Δ clean gsm8k"].startswith("+25.0") and "(n 4)" in table["lora-r1-grpo"]["Δ clean gsm8k"]
    assert Results.from_dict(results.to_dict()).clean_from == results.clean_from
