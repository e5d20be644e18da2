"""The backend registry: one record per backend, from which everything else is derived.

A backend's kernel table offers one function per op of ``ops.py`` (the op's name, its
arguments without ``backend``), with the semantics of ``reference.py``. ``"auto"`` means,
for a tensor's device, the available backends of ``REGISTRY`` that list the device type in
``auto_for``: the one there is, or, where there are several (Triton and CUDA C++ on a GPU),
the one measured fastest for each op and class of inputs (``measured.py``); the reference
serves any device.
"""

import functools
import os
import threading
from dataclasses import dataclass
from typing import Callable

import torch

from . import reference
from ._extension import extension_module
from .measured import MeasuredChoice, measuring_enabled


class BackendUnavailableError(RuntimeError):
    """A known backend that cannot run here (no extension, no GPU, wrong device)."""


@dataclass(frozen=True)
class Backend:
    """One backend: ``load()`` returns its kernel table or raises ``BackendUnavailableError``
    saying why; ``device_problem(device)`` says why it cannot run on ``device`` (else None).
    ``checks_arguments``: its kernels validate every tensor argument (shapes, dtypes,
    devices, the plan's contents) before any work, so the op skips its own tensor checks."""

    name: str
    summary: str
    auto_for: tuple[str, ...]
    load: Callable[[], object]
    device_problem: Callable[[torch.device], "str | None"]
    checks_arguments: bool = False


class PrefixedKernels:
    """A kernel table over ``<prefix><op>`` attributes of ``source``, under the ops' own
    names: the CPU kernels as ``pitome_kernels._C.cpu_<op>`` (plain pybind11 functions: an
    eager call skips the dispatcher's boxing), the CUDA kernels as ``torch.ops.pitome.cuda_<op>``."""

    def __init__(self, source, prefix: str):
        self._source, self._prefix = source, prefix

    def __getattr__(self, name: str):
        fn = getattr(self._source, self._prefix + name)
        setattr(self, name, fn)
        return fn


def _load_cpu():
    module = extension_module()
    if module is None:
        raise BackendUnavailableError("backend='cpu' needs the C++ extension, which is not loaded")
    return PrefixedKernels(module, "cpu_")


def has_cuda_kernels() -> bool:
    """True when the extension was built with its CUDA kernels (they are in the dispatcher)."""
    if extension_module() is None:
        return False
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("pitome::cuda_plan", "CUDA")
    except RuntimeError:  # the op is not defined: built without CUDA
        return False


def _load_cuda():
    if extension_module() is None:
        raise BackendUnavailableError("backend='cuda' needs the C++ extension, which is not loaded")
    if not has_cuda_kernels():
        raise BackendUnavailableError("backend='cuda' needs the C++ extension built with CUDA "
                                      "(torch with CUDA and nvcc, or FORCE_CUDA=1)")
    return PrefixedKernels(torch.ops.pitome, "cuda_")


def _needs_cuda(device: torch.device) -> "str | None":
    return None if device.type == "cuda" else f"backend='cuda' needs CUDA tensors, got device {device}"


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


class _OneCallAtATime:
    """A kernel table whose functions run one call at a time (Triton's CPU interpreter keeps
    process-wide state, so calls from several threads would corrupt each other)."""

    def __init__(self, table):
        self._table = table
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        fn = getattr(self._table, name)

        def serialized(*args):
            with self._lock:
                return fn(*args)

        setattr(self, name, serialized)
        return serialized


def _load_triton():
    try:
        from . import triton as triton_kernels
    except ImportError as exc:
        raise BackendUnavailableError(f"backend='triton' needs triton installed ({exc})") from None
    return _OneCallAtATime(triton_kernels) if _triton_interpreted() else triton_kernels


def _needs_cpu(device: torch.device) -> "str | None":
    return None if device.type == "cpu" else f"backend='cpu' needs CPU tensors, got device {device}"


def _needs_cuda_or_interpreter(device: torch.device) -> "str | None":
    if device.type == "cuda" or (device.type == "cpu" and _triton_interpreted()):
        return None
    return f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors), got device {device}"


REGISTRY: tuple[Backend, ...] = (
    Backend("cpu", "fused C++ kernels (csrc/cpu), compiled for AVX-512, AVX2 and the baseline ISA",
            auto_for=("cpu",), load=_load_cpu, device_problem=_needs_cpu, checks_arguments=True),
    Backend("triton", "Triton kernels (pitome_kernels/triton)",
            auto_for=("cuda",), load=_load_triton, device_problem=_needs_cuda_or_interpreter),
    Backend("cuda", "CUDA C++ kernels (csrc/cuda), registered as torch.ops.pitome.cuda_*",
            auto_for=("cuda",), load=_load_cuda, device_problem=_needs_cuda),
    Backend("reference", "plain PyTorch written from SPEC.md, the oracle of every test",
            auto_for=("*",), load=lambda: reference, device_problem=lambda device: None),
)
_BY_NAME = {backend.name: backend for backend in REGISTRY}

# Every value the ``backend`` argument accepts.
NAMES: tuple[str, ...] = ("auto",) + tuple(_BY_NAME)


@functools.cache
def _table(name: str):
    """The kernel table of backend ``name``, or the BackendUnavailableError saying why not."""
    try:
        return _BY_NAME[name].load()
    except BackendUnavailableError as exc:
        return exc


def check_name(backend) -> str:
    """``backend`` itself when it names a backend, else a TypeError/ValueError naming it."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, got {type(backend).__name__}")
    if backend not in NAMES:
        raise ValueError(f"backend must be one of {NAMES}, got {backend!r}")
    return backend


def available(backend: str, device: "torch.device | str") -> "str | None":
    """None when ``backend`` can run on ``device``, else the reason it cannot."""
    if check_name(backend) == "auto":
        return None
    device = torch.device(device)
    problem = _BY_NAME[backend].device_problem(device)
    if problem is not None:
        return problem
    table = _table(backend)
    return str(table) if isinstance(table, BackendUnavailableError) else None


def runnable(device: "torch.device | str") -> list[str]:
    """The concrete backends that can run on ``device`` here, in the registry's order."""
    return [b.name for b in REGISTRY if available(b.name, device) is None]


def auto_candidates(device: torch.device) -> list[str]:
    """The backends ``"auto"`` chooses among on ``device``, in the registry's order: those
    listing its type in ``auto_for`` that can run here, else the reference."""
    named = [b.name for b in REGISTRY if device.type in b.auto_for and available(b.name, device) is None]
    return named or ["reference"]


def resolve(backend: str, device: torch.device) -> str:
    """The concrete backend ``backend`` means on ``device`` (for ``"auto"`` with several
    candidates, the first; the measured choice is per op); raises when it cannot run there."""
    if check_name(backend) != "auto":
        problem = available(backend, device)
        if problem is not None:
            raise BackendUnavailableError(problem)
        return backend
    return auto_candidates(device)[0]


_MEASURED: dict[tuple, MeasuredChoice] = {}


def kernels(backend: str, device: torch.device) -> tuple:
    """``(kernel table, checks_arguments)`` of what ``backend`` runs on ``device`` (raises as
    ``resolve`` does)."""
    if check_name(backend) != "auto":
        name = resolve(backend, device)
        return _table(name), _BY_NAME[name].checks_arguments
    names = auto_candidates(device)
    if len(names) > 1 and measuring_enabled():
        key = (tuple(names), device)
        if key not in _MEASURED:
            _MEASURED[key] = MeasuredChoice(names, [_table(n) for n in names])
        return _MEASURED[key], all(_BY_NAME[n].checks_arguments for n in names)
    return _table(names[0]), _BY_NAME[names[0]].checks_arguments
