"""benchmarks/claims.py decides each of the paper's claims by a written rule: check the rules on constructed runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tinyeval.report.results import Cell, Results, SeedRun, TaskScore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
claims = pytest.importorskip("claims")


def _cell(name: str, algo: str | None, trainable: int, lenient: list[float]) -> Cell:
    seeds = [SeedRun(i, None if algo is None else 0.01, "done",
                     {"arith": TaskScore("exact_match", v, None, 100, 0.0, v)}) for i, v in enumerate(lenient)]
    return Cell(name, "base" if algo is None else "tinylora", algo, trainable, status="done", seeds=seeds)


def _run(**cells: tuple[str | None, int, list[float]]) -> Results:
    return Results("m", "claims-cpu", ["arith"], [_cell(n.replace("_", "-"), *v) for n, v in cells.items()])


def test_recovery_and_sft_claims_follow_their_rules():
    r = _run(base=(None, 0, [0.40]), tinylora_13_grpo=("grpo", 13, [0.60, 0.62, 0.61]),
             full_grpo=("grpo", 10**8, [0.70, 0.72, 0.71]), tinylora_13_sft=("sft", 13, [0.41, 0.39, 0.40]))
    one = claims.claim_recovery(r)
    assert one["verdict"] == "reproduced" and one["recovered"] == pytest.approx(0.21 / 0.31, abs=1e-3)
    assert claims.claim_sft(r)["verdict"] == "reproduced"
    # TinyLoRA-13 far below half of full FT's gain: not reproduced
    r = _run(base=(None, 0, [0.40]), tinylora_13_grpo=("grpo", 13, [0.41, 0.42, 0.41]),
             full_grpo=("grpo", 10**8, [0.70, 0.72, 0.71]), tinylora_13_sft=("sft", 13, [0.45, 0.46, 0.47]))
    assert claims.claim_recovery(r)["verdict"] == "not reproduced"
    assert claims.claim_sft(r)["verdict"] == "not reproduced"  # SFT gains more than GRPO here
    # full fine-tuning gains nothing: nothing to recover
    r = _run(base=(None, 0, [0.40]), tinylora_13_grpo=("grpo", 13, [0.5, 0.5, 0.5]),
             full_grpo=("grpo", 10**8, [0.35, 0.45, 0.40]))
    assert claims.claim_recovery(r)["verdict"] == "inconclusive"


def test_tying_rank_and_missing_cells():
    r = _run(base=(None, 0, [0.40]), tinylora_13_grpo=("grpo", 13, [0.60, 0.61, 0.62]),
             tinylora_14_structured_grpo=("grpo", 14, [0.50, 0.51, 0.52]),
             tinylora_13_r1_grpo=("grpo", 13, [0.58, 0.60, 0.62]), tinylora_13_r4_grpo=("grpo", 13, [0.45, 0.46, 0.47]))
    assert claims.claim_tying(r)["verdict"] == "reproduced"
    assert claims.claim_rank(r)["verdict"] == "reproduced"
    r = _run(base=(None, 0, [0.40]), tinylora_13_grpo=("grpo", 13, [0.60, 0.61, 0.62]))
    assert claims.claim_tying(r)["verdict"] == "inconclusive" and claims.claim_scaling(r)["verdict"] == "inconclusive"


def test_scaling_claim_reads_the_trend_over_budgets():
    budgets = {"tinylora_1_grpo": ("grpo", 1, [0.41, 0.42, 0.40]), "tinylora_13_grpo": ("grpo", 13, [0.45, 0.46, 0.44]),
               "tinylora_210_grpo": ("grpo", 210, [0.50, 0.52, 0.51]),
               "full_grpo": ("grpo", 10**8, [0.60, 0.61, 0.62])}
    assert claims.claim_scaling(_run(base=(None, 0, [0.40]), **budgets))["verdict"] == "reproduced"
    flipped = {k: (a, t, [1 - x for x in v]) for k, (a, t, v) in budgets.items()}
    assert claims.claim_scaling(_run(base=(None, 0, [0.40]), **flipped))["verdict"] == "not reproduced"


def _study(shift: float = 0.0, tiny: list[float] | None = None) -> Results:
    return _run(base=(None, 0, [0.40]), tinylora_13_grpo=("grpo", 13, tiny or [0.44, 0.47, 0.50]),
                full_grpo=("grpo", 10**8, [0.60 + shift, 0.62 + shift, 0.61 + shift]),
                tinylora_13_sft=("sft", 13, [0.41, 0.39, 0.40]))


def _record(r: Results) -> dict:
    return {"name": "claims", "date": "d", "command": "c", "wall_s": 1.0, "machine": {},
            "table": claims.table(r), "claims": {n: fn(r) for n, fn in claims.CLAIMS.items()}}


def _reproduction(first: Results, second: Results) -> dict:
    rec = _record(second)
    return claims.reproduction(_record(first), rec["table"], rec["claims"])


def test_a_second_run_is_compared_cell_by_cell_with_the_record():
    same = _reproduction(_study(), _study())
    assert same["reproduced"] and same["identical"] and same["verdicts_same"] and same["outside_noise"] == []
    assert same["compared"] == 8  # four cells x (lenient, strict) held-out (no twins in this run)
    moved = _reproduction(_study(), _study(shift=0.005))  # full FT moves by far less than its seed spread
    assert moved["reproduced"] and not moved["identical"]
    row = next(x for x in moved["rows"] if x["cell"] == "full-grpo" and x["key"] == "lenient")
    assert row["second_minus_first"]["mean"] == pytest.approx(0.005) and row["within_noise"] is True
    far = _reproduction(_study(), _study(shift=0.2))  # beyond seed noise (and it flips claim 1)
    assert not far["reproduced"] and "full-grpo arith lenient" in far["outside_noise"]


def test_a_changed_verdict_a_moved_base_or_a_missing_cell_is_not_a_reproduction():
    flipped = _reproduction(_study(), _study(tiny=[0.60, 0.62, 0.61]))  # claim 1 turns reproduced
    assert not flipped["verdicts_same"] and not flipped["reproduced"]
    base = _study()
    base.cells[0].seeds[0].scores["arith"] = TaskScore("exact_match", 0.41, None, 100, 0.0, 0.41)
    moved = _reproduction(_study(), base)  # one greedy evaluation, no seed interval: it must be identical
    assert "base arith lenient" in moved["outside_noise"] and not moved["reproduced"]
    fewer = _study()
    fewer.cells.pop()
    assert _reproduction(_study(), fewer)["cells_in_one_run_only"] == ["tinylora-13-sft"]


def test_compare_with_a_file_that_is_not_a_claims_record_is_one_line(tmp_path):
    import subprocess

    bad = tmp_path / "x.json"
    bad.write_text('{"name": "other"}')
    script = Path(claims.__file__)
    for path in (bad, tmp_path / "missing.json"):
        p = subprocess.run([sys.executable, str(script), "--analyse-only", "--out", str(tmp_path / "nothing"),
                            "--compare-with", str(path)], capture_output=True, text=True, check=False)
        assert p.returncode != 0 and p.stderr.strip().startswith("claims: --compare-with")
        assert len(p.stderr.strip().splitlines()) == 1
