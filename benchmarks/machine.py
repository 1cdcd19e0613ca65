"""What a benchmark ran on, stored in its results JSON under "machine".

The same `.ci/run` machine kind has been both an AVX2-only AMD EPYC and an Intel Xeon with AVX-512/AMX: bf16
speed, the default dtype and per-core throughput all change between them, so a record without its CPU cannot
be re-run and compared.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe() -> dict:
    """CPU model and the ISA features that move our numbers, usable cores, load average, torch and GPU."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():  # the first CPU's block is enough: every core is the same model
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    info = {
        "cpu": fields.get("model name") or platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
        "isa": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info
