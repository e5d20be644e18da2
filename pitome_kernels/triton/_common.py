"""Small helpers shared by the Triton kernel modules (no kernels here)."""

import os

import torch
import triton
import triton.language as tl


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half precision is computed in float32; float32 and float64 stay as they are."""
    return torch.promote_types(dtype, torch.float32)


def tl_dtype(dtype: torch.dtype):
    return {
        torch.float32: tl.float32,
        torch.float64: tl.float64,
        torch.float16: tl.float16,
        torch.bfloat16: tl.bfloat16,
    }[dtype]


def pow2_block(n: int, lo: int, hi: int) -> int:
    """``next_power_of_2(n)`` clamped to ``[lo, hi]`` (a compile-time tile size)."""
    return max(lo, min(hi, triton.next_power_of_2(max(int(n), 1))))


def interpreting() -> bool:
    """True when Triton runs through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


try:  # libdevice (expm1, exact exp) on real GPUs; the interpreter does not implement it
    from triton.language.extra import libdevice  # noqa: F401

    HAS_LIBDEVICE = True
except Exception:  # pragma: no cover - depends on the triton build
    libdevice = None
    HAS_LIBDEVICE = False


@triton.jit
def div(a, b, PRECISE: tl.constexpr):
    """IEEE round-to-nearest division for float32 (plain ``/`` may lower to an approximate
    ``div.full.f32`` on GPUs); float64 division is always IEEE."""
    if PRECISE:
        return tl.div_rn(a, b)
    else:
        return a / b


@triton.jit
def sqrt(a, PRECISE: tl.constexpr):
    """IEEE square root for float32 (``tl.sqrt`` may be approximate on GPUs)."""
    if PRECISE:
        return tl.sqrt_rn(a)
    else:
        return tl.sqrt(a)
