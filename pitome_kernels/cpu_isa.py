"""Which ISA clone of the C++ CPU kernels runs: they are compiled for AVX-512, AVX2+FMA and
the baseline ISA, and run the best one the CPU supports unless told otherwise
(``PITOME_CPU_ISA=avx2|default`` at start-up, or ``set_cpu_isa``)."""

from .backends import BackendUnavailableError
from ._extension import extension_module

CPU_ISAS = ("avx512", "avx2", "default")


def _module():
    module = extension_module()
    if module is None:
        raise BackendUnavailableError("the C++ extension is not loaded: there are no CPU kernels")
    return module


def cpu_isa() -> str:
    """The clone the CPU kernels run now: "avx512", "avx2" or "default"."""
    return _module().cpu_isa()


def supported_cpu_isa() -> str:
    """The best clone this CPU supports."""
    return _module().supported_cpu_isa()


def set_cpu_isa(isa: str) -> str:
    """Run the CPU kernels in clone ``isa`` ("avx512", "avx2" or "default") from now on, or in
    the best one this CPU supports below it; returns the clone now in use. Set it between
    kernel calls, not while another thread runs one. Clones may differ in the last bits of
    energies (FMA, vector widths); each is bitwise repeatable."""
    if isa not in CPU_ISAS:
        raise ValueError(f"set_cpu_isa: isa must be one of {CPU_ISAS}, got {isa!r}")
    return _module().set_cpu_isa(isa)
