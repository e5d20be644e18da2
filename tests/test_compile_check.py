"""The compile check's own parts: occupancy arithmetic, the covering subset, and one
end-to-end run on a small kernel (in a subprocess: the recorder needs Triton's compiler,
not the interpreter this suite may run under)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton.backends.nvidia.compiler")

from pitome_kernels.triton.resources import TARGETS, Resources, occupancy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_occupancy_counts_registers_warps_and_shared_memory():
    h100 = TARGETS[90]
    assert occupancy(h100, 32, 0, 4) == 1.0  # 16 blocks of 4 warps
    assert occupancy(h100, 255, 0, 4) == 8 / 64  # 256 registers x 128 threads a block: two fit
    assert occupancy(h100, 128, 0, 8) == 16 / 64
    assert occupancy(h100, 32, 100 * 1024, 4) == 8 / 64  # two blocks' shared memory fit
    assert occupancy(TARGETS[80], 32, 100 * 1024, 4) == 4 / 64


def test_resources_report_spills_and_shared_memory_over_the_limit():
    fine = Resources(registers=128, spill_bytes=0, shared=32768, warps=8, occupancy=0.125)
    assert fine.problems(TARGETS[80]) == []
    assert fine._replace(spill_bytes=16).problems(TARGETS[90]) == ["spills 16 bytes"]
    assert "shared memory" in fine._replace(shared=200 * 1024).problems(TARGETS[80])[0]
    assert fine._replace(shared=200 * 1024).problems(TARGETS[90]) == []


def test_compile_check_records_compiles_and_reports():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "pitome_kernels", "compile-check", "--arch", "80", "100",
                           "--kernel", "_csr_kernel", "_normalize_kernel", "--jobs", "2"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "0 failed the check" in proc.stdout
    for name in ("_csr_kernel", "_normalize_kernel"):
        for arch in ("sm_80", "sm_100"):
            assert any(line.startswith(name) and arch in line for line in proc.stdout.splitlines()), (name, arch)
