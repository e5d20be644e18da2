"""Builds the optional C++ extension ``pitome_kernels._C``.

- CPU kernels (csrc/cpu) whenever torch is importable.
- CUDA kernels (csrc/cuda) when torch has CUDA and nvcc is found, or FORCE_CUDA=1, for
  TORCH_CUDA_ARCH_LIST (default "8.0;9.0").
- PITOME_NO_EXT=1 skips the extension; a failed build only warns (the package still works
  on the reference and Triton paths), except with PITOME_REQUIRE_EXT=1 or FORCE_CUDA=1.
"""

import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _cuda_library_includes():
    """Header folders of the CUDA libraries pip installs with torch (nvidia/*/include): torch's
    ATen/cuda headers include cusparse.h and cublas_v2.h, which a bare toolkit may lack."""
    try:
        import nvidia
    except ImportError:
        return []
    return sorted({d for root in nvidia.__path__ for d in glob.glob(os.path.join(root, "*", "include"))})


def _extensions():
    if os.environ.get("PITOME_NO_EXT", "0") == "1":
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        print("pitome_kernels: torch is not importable, building without the C++ extension")
        return [], {}

    cpu_sources = sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    sources = cpu_sources + [os.path.join("csrc", "python_module.cpp")]
    # -fopenmp: at::parallel_for is an inline OpenMP region in torch's headers; without the
    # flag it compiles to a serial loop.
    # -Wno-psabi: the 64-byte vector types of csrc/cpu/simd.h never cross a call between
    # differently compiled code, so the ABI note GCC prints for them does not apply.
    # PITOME_EXTRA_FLAGS: added to compiling and linking (make sanitize passes the sanitizers).
    extra = os.environ.get("PITOME_EXTRA_FLAGS", "").split()
    cxx_flags = ["-O3", "-std=c++20", "-fno-math-errno", "-fopenmp", "-Wno-psabi"] + extra
    link_flags = ["-fopenmp"] + extra
    define_macros = []
    cuda_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu"))) + sorted(
        glob.glob(os.path.join("csrc", "cuda", "*.cpp"))
    )
    want_cuda = os.environ.get("FORCE_CUDA", "0") == "1" or (
        torch.cuda.is_available() and torch.version.cuda is not None
    )
    use_cuda = bool(cuda_sources) and want_cuda and cpp_extension.CUDA_HOME is not None
    if want_cuda and os.environ.get("FORCE_CUDA", "0") == "1" and not use_cuda:
        raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found (set CUDA_HOME)")
    if use_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        define_macros.append(("PITOME_WITH_CUDA", "1"))
        ext = cpp_extension.CUDAExtension(
            "pitome_kernels._C",
            sources + cuda_sources,
            include_dirs=[os.path.join(ROOT, "csrc")] + _cuda_library_includes(),
            define_macros=define_macros,
            # -Xptxas=-v: ptxas reports registers and spills per kernel (the CUDA lane checks them)
            extra_compile_args={"cxx": cxx_flags,
                                "nvcc": ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-Xptxas=-v"]},
            extra_link_args=link_flags,
        )
    else:
        ext = cpp_extension.CppExtension(
            "pitome_kernels._C",
            sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )

    class OptionalBuildExtension(cpp_extension.BuildExtension):
        """A failed compile leaves a working pure-Python package (with a warning)."""

        def run(self):
            try:
                super().run()
            except Exception as exc:  # noqa: BLE001 - any build failure is reported, not fatal
                if os.environ.get("PITOME_REQUIRE_EXT", "0") == "1" or os.environ.get("FORCE_CUDA", "0") == "1":
                    raise
                print(f"pitome_kernels: WARNING: C++ extension build failed ({exc}); "
                      "the package will run on the reference backend", file=sys.stderr)

    return [ext], {"build_ext": OptionalBuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
