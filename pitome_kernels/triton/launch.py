"""Host-side launch choices shared by the kernel modules (no kernels here): compute
dtypes, tile sizes, and the constexprs that differ under Triton's CPU interpreter.

The similarity tile sizes live here once because they fix summation orders: the energy
kernel and the fused plan kernel sum each row over the same column tiles and feature
chunks, so they produce the same bits.
"""

import contextlib
import functools
import os

import torch
import triton
import triton.language as tl

from .precise import HAS_LIBDEVICE


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


def token_tile(n: int) -> int:
    """Rows or columns of one similarity tile over ``n`` tokens."""
    return pow2_block(n, 16, 64)


def dot_chunk(c: int) -> int:
    """Features per ``tl.dot`` step of a similarity tile (64x32 fp32 tiles: 16 KiB per
    operand per stage)."""
    return pow2_block(c, 16, 32)


def norm_chunk(c: int, dtype: torch.dtype = torch.float32) -> int:
    """Features per step of the sum of squares of a row (half as many in float64, whose
    64x128 tiles spilled at any warp count)."""
    return pow2_block(c, 16, 64 if dtype == torch.float64 else 128)


def tile_options(elements: int, dtype: torch.dtype, max_warps: int = 8) -> dict:
    """Launch options of a kernel whose widest tile holds ``elements`` values of ``dtype``:
    64 bytes of tile per thread, 4 to ``max_warps`` warps. With twice that, 64x64 float32
    similarity tiles spilled on sm_80 and the amax gradient's merge tiles on every
    target; with 16 warps, ptxas capped kernels that divide or take square roots (a call
    on the slow path) at 64 registers and spilled (``python -m pitome_kernels compile-check``)."""
    per_thread = 64 // dtype.itemsize
    warps = triton.next_power_of_2(max(1, elements // (32 * per_thread)))
    return {"num_warps": max(4, min(max_warps, warps))}


def feature_tiles(k: int):
    """``(BLOCK_G, BLOCK_K)`` of the merge kernels: up to 4096 elements per tile, at least
    16 per side."""
    block_k = pow2_block(k, 16, 256)
    return max(16, min(128, 4096 // block_k)), block_k


_assumed_arch = None


def gpu_arch(device: torch.device):
    """Compute capability of the GPU that runs the kernels (90 for sm_90), or None on the
    CPU (the interpreter). Host-side choices that depend on the target read it."""
    if _assumed_arch is not None:
        return _assumed_arch
    if device.type != "cuda":
        return None
    return _capability(device.index if device.index is not None else torch.cuda.current_device())


@functools.cache
def _capability(index: int) -> int:
    major, minor = torch.cuda.get_device_capability(index)
    return 10 * major + minor


@contextlib.contextmanager
def assume_gpu_arch(arch: int):
    """Makes ``gpu_arch`` report ``arch`` (the compile check chooses launches for targets
    it does not run on)."""
    global _assumed_arch
    saved, _assumed_arch = _assumed_arch, arch
    try:
        yield
    finally:
        _assumed_arch = saved


def interpreting() -> bool:
    """True when Triton runs through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_libdevice() -> bool:
    """``LIBDEVICE``: libdevice's exp/expm1 on GPUs; the interpreter does not implement it."""
    return HAS_LIBDEVICE and not interpreting()


def use_bitonic() -> bool:
    """``BITONIC``: ``tl.sort`` on GPUs; under the interpreter, which emulates its network
    element by element, the counting sort of ``sort.py``."""
    return not interpreting()


def contiguous_plan(slot, offsets, members):
    """The plan tensors as the kernels index them (row-major, unit feature stride)."""
    return slot.contiguous(), offsets.contiguous(), members.contiguous()
