"""Normalisation and the tiled energy kernel (flash-attention style, O(T*C) memory).

``u = m / max(||m||, 1e-12)`` is written once (in the compute dtype: float32 for
fp16/bf16/fp32 inputs, float64 for float64); the energy kernel then streams tiles of
``u @ u^T`` through ``tl.dot`` (IEEE, no TF32) and fuses the margin + ELU or Gaussian
epilogue and the row sum; the ``T x T`` similarity is never materialised.
"""

import math

import torch
import triton
import triton.language as tl

from ._common import HAS_LIBDEVICE, compute_dtype, div, interpreting, libdevice, pow2_block, sqrt, tl_dtype

KERNEL_ELU = 0
KERNEL_GAUSS = 1


@triton.jit
def _normalize_kernel(
    m_ptr, u_ptr, N, C,
    stride_mb, stride_mn, stride_mc,
    stride_ub, stride_un, stride_uc,
    ACC: tl.constexpr, PRECISE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid_n = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    m_base = m_ptr + b * stride_mb + rows[:, None].to(tl.int64) * stride_mn
    u_base = u_ptr + b * stride_ub + rows[:, None].to(tl.int64) * stride_un
    sumsq = tl.zeros((BLOCK_N,), dtype=ACC)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        ok = row_ok[:, None] & (cols[None, :] < C)
        v = tl.load(m_base + cols[None, :] * stride_mc, mask=ok, other=0.0).to(ACC)
        sumsq += tl.sum(v * v, axis=1)
    denom = tl.maximum(sqrt(sumsq, PRECISE), 1e-12)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        ok = row_ok[:, None] & (cols[None, :] < C)
        v = tl.load(m_base + cols[None, :] * stride_mc, mask=ok, other=0.0).to(ACC)
        tl.store(u_base + cols[None, :] * stride_uc, div(v, denom[:, None], PRECISE), mask=ok)


def normalize(metric: torch.Tensor) -> torch.Tensor:
    """``[B, N, C] -> [B, N, C]`` unit rows in the compute dtype (contiguous)."""
    B, N, C = metric.shape
    cd = compute_dtype(metric.dtype)
    u = torch.empty((B, N, C), dtype=cd, device=metric.device)
    if B == 0 or N == 0:
        return u
    BLOCK_N = pow2_block(N, 16, 64)
    BLOCK_C = pow2_block(C, 16, 128)
    grid = (triton.cdiv(N, BLOCK_N), B)
    _normalize_kernel[grid](
        metric, u, N, C,
        metric.stride(0), metric.stride(1), metric.stride(2),
        u.stride(0), u.stride(1), u.stride(2),
        ACC=tl_dtype(cd), PRECISE=cd == torch.float32, BLOCK_N=BLOCK_N, BLOCK_C=BLOCK_C,
    )
    return u


@triton.jit
def energy_terms(s, margin, sigma, KERNEL: tl.constexpr, PRECISE: tl.constexpr, LIBDEVICE: tl.constexpr):
    """phi(S) elementwise: ELU of ``S - margin`` (``KERNEL`` 0) or the Gaussian
    ``exp(-((1 - S) / sigma)^2 / 2)`` (``KERNEL`` 1; its ``1/(sigma sqrt(2 pi))`` factor is
    applied after the row mean)."""
    if KERNEL == 0:
        z = s - margin
        if LIBDEVICE:
            neg = libdevice.expm1(z)
        else:
            neg = tl.exp(z) - 1.0
        val = tl.where(z > 0, z, neg)
    else:
        d = div(1.0 - s, sigma, PRECISE)
        if LIBDEVICE:
            val = libdevice.exp(-0.5 * d * d)
        else:
            val = tl.exp(-0.5 * d * d)
    return val


@triton.jit
def _energy_kernel(
    u_ptr, e_ptr, N, C, n_float, margin, sigma, scale,
    stride_ub, stride_un, stride_uc, stride_eb, stride_en,
    KERNEL: tl.constexpr, ACC: tl.constexpr, PRECISE: tl.constexpr, LIBDEVICE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid_m = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N
    base = u_ptr + b * stride_ub
    row_sum = tl.zeros((BLOCK_M,), dtype=ACC)
    for n0 in range(0, N, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        s = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC)
        for c0 in range(0, C, BLOCK_C):
            cc = c0 + tl.arange(0, BLOCK_C)
            c_ok = cc < C
            ui = tl.load(base + rows[:, None].to(tl.int64) * stride_un + cc[None, :] * stride_uc,
                         mask=row_ok[:, None] & c_ok[None, :], other=0.0)
            uj = tl.load(base + cols[None, :].to(tl.int64) * stride_un + cc[:, None] * stride_uc,
                         mask=col_ok[None, :] & c_ok[:, None], other=0.0)
            s = tl.dot(ui, uj, s, input_precision="ieee", out_dtype=ACC)
        val = tl.where(col_ok[None, :], energy_terms(s, margin, sigma, KERNEL, PRECISE, LIBDEVICE), 0.0)
        row_sum += tl.sum(val, axis=1)
    e = div(row_sum, n_float, PRECISE)
    if KERNEL == 1:
        e = div(e, scale, PRECISE)
    tl.store(e_ptr + b * stride_eb + rows * stride_en, e.to(tl.float32), mask=row_ok)


def energy_from_unit(u: torch.Tensor, margin: float, kernel: str) -> torch.Tensor:
    """Energy of unit rows ``u`` (``[B, N, C]``, compute dtype): float32 ``[B, N]``."""
    B, N, C = u.shape
    e = torch.empty((B, N), dtype=torch.float32, device=u.device)
    if B == 0 or N == 0:
        return e
    if kernel == "elu":
        k, sigma, scale = KERNEL_ELU, 1.0, 1.0
    else:
        sigma = 1.0 - float(margin)
        k, scale = KERNEL_GAUSS, sigma * math.sqrt(2.0 * math.pi)
    BLOCK_M = pow2_block(N, 16, 64)
    BLOCK_N = pow2_block(N, 16, 64)
    BLOCK_C = pow2_block(C, 16, 32)  # 64x32 fp32 tiles: 16 KiB per operand per stage
    grid = (triton.cdiv(N, BLOCK_M), B)
    _energy_kernel[grid](
        u, e, N, C, float(N), float(margin), sigma, scale,
        u.stride(0), u.stride(1), u.stride(2), e.stride(0), e.stride(1),
        KERNEL=k, ACC=tl_dtype(u.dtype), PRECISE=u.dtype == torch.float32,
        LIBDEVICE=HAS_LIBDEVICE and not interpreting(),
        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_C=BLOCK_C,
    )
    return e


def energy(metric: torch.Tensor, margin: float, kernel: str, class_token: bool) -> torch.Tensor:
    """Energy of every mergeable token: float32 ``[B, T']``."""
    if class_token:
        metric = metric[:, 1:]
    return energy_from_unit(normalize(metric), margin, kernel)
