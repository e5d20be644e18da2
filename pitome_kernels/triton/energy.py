"""Energy of every token: ``E_i = mean_j phi(S_ij)``, flash-attention style (O(T*C) memory).

Tiles of ``S = u @ u^T`` stream through ``tl.dot`` (``similarity.py``); the ELU-margin or
Gaussian epilogue and the row sum are fused onto each tile.
"""

import math

import torch
import triton
import triton.language as tl

from .launch import dot_chunk, tile_options, tl_dtype, token_tile, use_libdevice
from .normalize import normalize
from .precise import div, exp, expm1
from .similarity import similarity_tile

KERNEL_ELU: tl.constexpr = tl.constexpr(0)
KERNEL_GAUSS: tl.constexpr = tl.constexpr(1)


@triton.jit
def energy_terms(s, margin, sigma, KERNEL: tl.constexpr, PRECISE: tl.constexpr, LIBDEVICE: tl.constexpr):
    """phi(S) elementwise: ELU of ``S - margin`` (``KERNEL_ELU``) or the Gaussian
    ``exp(-((1 - S) / sigma)^2 / 2)`` (``KERNEL_GAUSS``; its ``1/(sigma sqrt(2 pi))`` factor
    is applied after the row mean)."""
    if KERNEL == KERNEL_ELU:
        z = s - margin
        val = tl.where(z > 0, z, expm1(z, LIBDEVICE))
    else:
        d = div(1.0 - s, sigma, PRECISE)
        val = exp(-0.5 * d * d, LIBDEVICE)
    return val


@triton.jit
def energy_rows(u_base, e_out, rows, N, C, n_float, margin, sigma, scale,
                stride_un, stride_uc, stride_en,
                KERNEL: tl.constexpr, ACC: tl.constexpr, PRECISE: tl.constexpr, LIBDEVICE: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """Writes ``E`` of a block of rows to ``e_out[rows * stride_en]`` (float32): phi(S)
    summed over all ``N`` columns, ``BLOCK_N`` at a time, then divided by ``n_float``."""
    row_ok = rows < N
    row_tok = rows.to(tl.int64)
    row_sum = tl.zeros(rows.shape, dtype=ACC)
    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        s = similarity_tile(u_base, row_tok, row_ok, cols.to(tl.int64), col_ok, C, stride_un, stride_uc,
                            ACC, BLOCK_C)
        val = tl.where(col_ok[None, :], energy_terms(s, margin, sigma, KERNEL, PRECISE, LIBDEVICE), 0.0)
        row_sum += tl.sum(val, axis=1)
    e = div(row_sum, n_float, PRECISE)
    if KERNEL == KERNEL_GAUSS:
        e = div(e, scale, PRECISE)
    tl.store(e_out + rows * stride_en, e.to(tl.float32), mask=row_ok)


@triton.jit(do_not_specialize=["N"])  # token counts: one binary for every T
def _energy_kernel(
    u_ptr, e_ptr, N, C, n_float, margin, sigma, scale,
    stride_ub, stride_un, stride_uc, stride_eb, stride_en,
    KERNEL: tl.constexpr, ACC: tl.constexpr, PRECISE: tl.constexpr, LIBDEVICE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):
    b = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    energy_rows(u_ptr + b * stride_ub, e_ptr + b * stride_eb, rows, N, C, n_float, margin, sigma, scale,
                stride_un, stride_uc, stride_en, KERNEL, ACC, PRECISE, LIBDEVICE, BLOCK_N, BLOCK_C)


def epilogue_args(margin: float, kernel: str):
    """``(KERNEL, sigma, scale)`` of the epilogue: ``sigma = 1 - margin`` and the Gaussian's
    ``sigma * sqrt(2 pi)`` for ``"gauss"``; unused ones for ``"elu"``."""
    if kernel == "elu":
        return KERNEL_ELU.value, 1.0, 1.0
    sigma = 1.0 - float(margin)
    return KERNEL_GAUSS.value, sigma, sigma * math.sqrt(2.0 * math.pi)


def energy_from_unit(u: torch.Tensor, margin: float, kernel: str) -> torch.Tensor:
    """Energy of unit rows ``u`` (``[B, N, C]``, compute dtype): float32 ``[B, N]``."""
    B, N, C = u.shape
    e = torch.empty((B, N), dtype=torch.float32, device=u.device)
    if B == 0 or N == 0:
        return e
    k, sigma, scale = epilogue_args(margin, kernel)
    BLOCK_M = token_tile(N)
    grid = (triton.cdiv(N, BLOCK_M), B)
    _energy_kernel[grid](
        u, e, N, C, float(N), float(margin), sigma, scale,
        u.stride(0), u.stride(1), u.stride(2), e.stride(0), e.stride(1),
        KERNEL=k, ACC=tl_dtype(u.dtype), PRECISE=u.dtype == torch.float32, LIBDEVICE=use_libdevice(),
        BLOCK_M=BLOCK_M, BLOCK_N=token_tile(N), BLOCK_C=dot_chunk(C),
        **tile_options(BLOCK_M * token_tile(N), u.dtype, max_warps=16),
    )
    return e


def energy(metric: torch.Tensor, margin: float, kernel: str, class_token: bool) -> torch.Tensor:
    """Energy of every mergeable token: float32 ``[B, T']``."""
    if class_token:
        metric = metric[:, 1:]
    return energy_from_unit(normalize(metric), margin, kernel)
