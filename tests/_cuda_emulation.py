"""Builds csrc/cuda as C++ for the CPU (csrc/emulation) and loads it: the CUDA kernels run
on CPU tensors, their threads as fibers, so they are tested where no GPU exists."""

import functools
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("runtime.cpp", "selftest.cpp", "cuda_similarity.cpp", "cuda_merge.cpp", "cuda_gather.cpp",
           "cuda_fused_plan.cpp", "cuda_plan.cpp", "module.cpp")


@functools.cache
def emulated_cuda():
    """The module: ``cuda_<op>`` (the CUDA backend's kernels), ``set_schedule``, ``run_selftest``.
    PITOME_EXTRA_FLAGS (make sanitize: the sanitizers) build a separate copy."""
    from torch.utils import cpp_extension

    extra = os.environ.get("PITOME_EXTRA_FLAGS", "").split()
    name = "pitome_cuda_emulation" + ("_sanitized" if extra else "")
    build = ROOT / "build" / name
    build.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name=name,
        sources=[str(ROOT / "csrc" / "emulation" / source) for source in SOURCES],
        extra_include_paths=[str(ROOT / "csrc")],
        extra_cflags=["-O2", "-std=c++20", "-DPITOME_CUDA_EMULATION"] + extra,
        extra_ldflags=extra,
        build_directory=str(build),
        verbose=False,
    )
