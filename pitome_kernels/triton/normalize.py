"""Unit rows ``u = m / max(||m||, 1e-12)``, written once in the compute dtype (float32 for
fp16/bf16/fp32 inputs, float64 for float64) for the similarity tiles to read."""

import torch
import triton
import triton.language as tl

from .launch import compute_dtype, norm_chunk, tile_options, tl_dtype, token_tile
from .precise import div, sqrt


@triton.jit
def normalize_rows(m_row, u_row, row_ok, C, stride_mc, stride_uc,
                   ACC: tl.constexpr, PRECISE: tl.constexpr, BLOCK_C: tl.constexpr):
    """Writes the unit rows of a block of rows. ``m_row``/``u_row``: ``[BLOCK, 1]`` pointers
    to each row's first feature; squares are summed ``BLOCK_C`` features at a time."""
    sumsq = tl.zeros(row_ok.shape, dtype=ACC)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        ok = row_ok[:, None] & (cols[None, :] < C)
        v = tl.load(m_row + cols[None, :] * stride_mc, mask=ok, other=0.0).to(ACC)
        sumsq += tl.sum(v * v, axis=1)
    denom = tl.maximum(sqrt(sumsq, PRECISE), 1e-12)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        ok = row_ok[:, None] & (cols[None, :] < C)
        v = tl.load(m_row + cols[None, :] * stride_mc, mask=ok, other=0.0).to(ACC)
        tl.store(u_row + cols[None, :] * stride_uc, div(v, denom[:, None], PRECISE), mask=ok)


@triton.jit(do_not_specialize=["N"])  # token counts: one binary for every T
def _normalize_kernel(
    m_ptr, u_ptr, N, C,
    stride_mb, stride_mn, stride_mc,
    stride_ub, stride_un, stride_uc,
    ACC: tl.constexpr, PRECISE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):
    b = tl.program_id(1).to(tl.int64)
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    normalize_rows(m_ptr + b * stride_mb + rows[:, None] * stride_mn,
                   u_ptr + b * stride_ub + rows[:, None] * stride_un,
                   rows < N, C, stride_mc, stride_uc, ACC, PRECISE, BLOCK_C)


def normalize(metric: torch.Tensor) -> torch.Tensor:
    """``[B, N, C] -> [B, N, C]`` unit rows in the compute dtype (contiguous)."""
    B, N, C = metric.shape
    cd = compute_dtype(metric.dtype)
    u = torch.empty((B, N, C), dtype=cd, device=metric.device)
    if B == 0 or N == 0:
        return u
    BLOCK_N = token_tile(N)
    grid = (triton.cdiv(N, BLOCK_N), B)
    _normalize_kernel[grid](
        metric, u, N, C,
        metric.stride(0), metric.stride(1), metric.stride(2),
        u.stride(0), u.stride(1), u.stride(2),
        ACC=tl_dtype(cd), PRECISE=cd == torch.float32, BLOCK_N=BLOCK_N, BLOCK_C=norm_chunk(C, cd),
        **tile_options(BLOCK_N * norm_chunk(C, cd), cd),
    )
    return u
