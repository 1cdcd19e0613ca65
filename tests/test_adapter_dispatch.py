"""benchmarks/adapter_dispatch.py on Qwen2.5-1.5B's layout at a tiny width: the record it writes matches its
schema, and an adapted bf16 module adds no more aten ops per forward + backward than today's bound (a3da480
added 20 kernel ops per module; the batched path adds 5: two GEMMs forward, three backward)."""

import json
from pathlib import Path

from tinyeval.schema import check

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_record_is_valid_and_ops_per_module_stay_within_bound(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports benchmarks/machine.py and anchors.py
    import adapter_dispatch as bench

    out = tmp_path / "adapter_dispatch.json"
    record = bench.main(["--width", "48", "--no-time", "--out", str(out)])
    check(json.loads(out.read_text()), bench.Record)
    d = record["details"]
    assert d["layers"] == 28 and d["adapted_modules_per_layer"] == 7 and d["cpu_time"] is None
    assert d["per_module_extra_kernel_ops"] <= 5 and d["per_module_extra_all_ops"] <= 8
    assert 0 < d["per_pass_extra_kernel_ops"] <= 40  # R, B R and [hi | lo] of all modules; v's gradient
    assert d["per_module_extra_by_op"]["mm"] == 2 and d["per_module_extra_by_op"]["addmm_"] == 3
    assert record["ratio"] >= 0.7  # 0.74 at 28 layers (a3da480: 0.43)
