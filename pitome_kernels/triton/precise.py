"""Accurate float arithmetic for the kernels: IEEE division and square root, and
libdevice's ``exp``/``expm1`` where the Triton build has them."""

import triton
import triton.language as tl

try:  # libdevice (expm1, exact exp) on real GPUs; the interpreter does not implement it
    from triton.language.extra import libdevice

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


@triton.jit
def exp(x, LIBDEVICE: tl.constexpr):
    """``exp``: libdevice's where available (``tl.exp`` may lower to the approximate ``ex2``)."""
    if LIBDEVICE:
        return libdevice.exp(x)
    else:
        return tl.exp(x)


@triton.jit
def expm1(x, LIBDEVICE: tl.constexpr):
    """``exp(x) - 1``: libdevice's ``expm1`` where available (accurate near 0, where the
    subtraction cancels)."""
    if LIBDEVICE:
        return libdevice.expm1(x)
    else:
        return tl.exp(x) - 1.0
