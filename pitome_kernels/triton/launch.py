"""Host-side launch choices shared by the kernel modules (no kernels here): compute
dtypes, tile sizes, and the constexprs that differ under Triton's CPU interpreter.

The similarity tile sizes live here once because they fix summation orders: the energy
kernel and the fused plan kernel sum each row over the same column tiles and feature
chunks, so they produce the same bits.
"""

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


def norm_chunk(c: int) -> int:
    """Features per step of the sum of squares of a row."""
    return pow2_block(c, 16, 128)


def feature_tiles(k: int):
    """``(BLOCK_G, BLOCK_K)`` of the merge kernels: up to 4096 elements per tile, at least
    16 per side."""
    block_k = pow2_block(k, 16, 256)
    return max(16, min(128, 4096 // block_k)), block_k


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
