"""The kernel table: which implementation serves each backend name.

Every backend offers the same functions as ``reference.py`` (energy, plan, merge,
merge_backward, merge_wavg, merge_wavg_backward, unmerge) with the same signatures.
"""

import functools
import os

import torch

from . import reference
from ._checks import BACKENDS, choice
from ._extension import extension_loaded, extension_module


class BackendUnavailableError(RuntimeError):
    """A known backend that cannot run here (no extension, no GPU, wrong device)."""


class _ExtensionKernels:
    """The C++ kernels ``<prefix>_<name>``: the plain functions of ``pitome_kernels._C``
    (no dispatcher round trip) where it exports them, else ``torch.ops.pitome``'s."""

    def __init__(self, prefix: str):
        self._prefix = prefix

    def __getattr__(self, name: str):
        qualified = f"{self._prefix}_{name}"
        fn = getattr(extension_module(), qualified, None) or getattr(torch.ops.pitome, qualified)
        setattr(self, name, fn)  # resolved once
        return fn


_CPU = _ExtensionKernels("cpu")
_CUDA = _ExtensionKernels("cuda")


@functools.cache
def cpu_kernels() -> "_ExtensionKernels | None":
    """The C++ CPU kernel table (what ``kernels("cpu", cpu)`` returns), None without the extension."""
    return _CPU if extension_loaded() else None


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _triton_kernels():
    try:
        from . import triton as triton_kernels
    except ImportError:
        return None
    return triton_kernels


def _cuda_extension_loaded() -> bool:
    return extension_loaded() and hasattr(torch.ops.pitome, "cuda_merge")


def available(backend: str, device: torch.device) -> str | None:
    """None when ``backend`` can run on ``device``, else the reason it cannot."""
    if choice("backend", backend, BACKENDS) in ("reference", "auto"):
        return None
    if backend == "cpu":
        if device.type != "cpu":
            return f"backend='cpu' needs CPU tensors, got device {device}"
        return None if extension_loaded() else "backend='cpu' needs the C++ extension, which is not loaded"
    if backend == "cuda":
        if device.type != "cuda":
            return f"backend='cuda' needs CUDA tensors, got device {device}"
        return None if _cuda_extension_loaded() else "backend='cuda' needs the extension built with CUDA"
    if backend == "triton":
        if device.type != "cuda" and not (device.type == "cpu" and _triton_interpreted()):
            return f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors), got {device}"
        return None if _triton_kernels() is not None else "backend='triton' needs triton installed"


def _auto(device: torch.device) -> str:
    if device.type == "cuda":
        for name in ("triton", "cuda"):
            if available(name, device) is None:
                return name
    elif device.type == "cpu" and extension_loaded():
        return "cpu"
    return "reference"


def resolve(backend: str, device: torch.device) -> str:
    """The concrete backend name for ``backend`` on ``device``; raises when unavailable."""
    reason = available(backend, device)
    if reason is not None:
        raise BackendUnavailableError(reason)
    return _auto(device) if backend == "auto" else backend


def kernels(backend: str, device: torch.device):
    """The kernel table of ``backend`` (after ``resolve``) on ``device``."""
    if type(backend) is not str:
        choice("backend", backend, BACKENDS)  # raises, naming the argument
    return _kernels(backend, device)


@functools.lru_cache(maxsize=64)
def _kernels(backend: str, device: torch.device):
    """``kernels``, cached: what is available does not change within a process."""
    name = resolve(backend, device)
    if name == "reference":
        return reference
    if name == "cpu":
        return _CPU
    if name == "cuda":
        return _CUDA
    return _triton_kernels()
