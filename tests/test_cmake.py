"""The CMake build against libtorch compiles csrc/, its C++ test passes under ctest, and the
installed package serves a consumer: examples/cpp builds with find_package(pitome_kernels)
and runs."""

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_build_ctest_install_and_example(tmp_path):
    build, prefix, example = tmp_path / "build", tmp_path / "prefix", tmp_path / "example"
    _run(["cmake", "-S", ROOT, "-B", build, "-DPITOME_BUILD_TESTS=ON", f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"])
    _run(["cmake", "--build", build, "-j2"])
    assert "100% tests passed" in _run(["ctest", "--test-dir", build, "--output-on-failure"])
    _run(["cmake", "--install", build, "--prefix", prefix])
    assert (prefix / "include" / "pitome_kernels" / "cpu" / "kernels.h").exists()
    _run(["cmake", "-S", ROOT / "examples" / "cpp", "-B", example,
          f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path};{prefix}"])
    _run(["cmake", "--build", example])
    out = _run([example / "merge_tokens"])
    assert "[2, 197, 768] -> [2, 178, 768]" in out and out.strip().endswith("ok"), out
