"""Bipartite matching: a running argmax over tiles of ``S`` between two token lists.

For every token ``a`` of list A: ``best[a] = max_b <u_a, u_b>`` over list B and ``dst[a]``
= the first (lowest B position) maximiser. A and B hold indices into the unit rows ``u``;
the similarity tiles are never stored.
"""

import torch
import triton
import triton.language as tl

from .launch import dot_chunk, tile_options, tl_dtype, token_tile
from .similarity import similarity_tile


@triton.jit
def argmax_update(s, n0, run_max, run_idx):
    """Folds a tile of scores ``s`` (columns ``n0 + j``, invalid ones -inf) into every row's
    running maximum and its first column; strict comparison: earlier tiles win ties."""
    tile_max = tl.max(s, axis=1)
    tile_idx = tl.argmax(s, axis=1, tie_break_left=True).to(tl.int32) + n0
    better = tile_max > run_max
    return tl.where(better, tile_max, run_max), tl.where(better, tile_idx, run_idx)


@triton.jit
def match_rows(u_base, rows, a_list, stride_an, NA, b_list, stride_bn, NB, C, stride_un, stride_uc,
               best_out, stride_sn, dst_out, stride_dn,
               MASK_ROW0: tl.constexpr, MASK_COL0: tl.constexpr, ACC: tl.constexpr,
               BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """Matches A positions ``rows`` against all of B, ``BLOCK_N`` columns at a time, and
    writes ``best_out[rows * stride_sn]`` and ``dst_out[rows * stride_dn]``. Token ``i`` of
    A is ``a_list[i * stride_an]``, of B ``b_list[j * stride_bn]``."""
    row_ok = rows < NA
    a_tok = tl.load(a_list + rows * stride_an, mask=row_ok, other=0).to(tl.int64)
    run_max = tl.full(rows.shape, float("-inf"), dtype=ACC)
    run_idx = tl.zeros(rows.shape, dtype=tl.int32)
    for n0 in range(0, NB, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        col_ok = cols < NB
        b_tok = tl.load(b_list + cols * stride_bn, mask=col_ok, other=0).to(tl.int64)
        s = similarity_tile(u_base, a_tok, row_ok, b_tok, col_ok, C, stride_un, stride_uc, ACC, BLOCK_C)
        invalid = (rows[:, None] < 0) | (~col_ok[None, :])
        if MASK_ROW0:  # ToMe: the class token (A position 0) is never a source
            invalid = invalid | (rows[:, None] == 0)
        if MASK_COL0:  # ToMe: the distillation token (B position 0) is never a destination
            invalid = invalid | (cols[None, :] == 0)
        s = tl.where(invalid, float("-inf"), s)
        run_max, run_idx = argmax_update(s, n0, run_max, run_idx)
    tl.store(best_out + rows * stride_sn, run_max, mask=row_ok)
    tl.store(dst_out + rows * stride_dn, run_idx, mask=row_ok)


@triton.jit(do_not_specialize=["NA", "NB"])  # token counts: one binary for every T
def _match_kernel(
    u_ptr, a_ptr, b_ptr, best_ptr, dst_ptr, NA, NB, C,
    stride_ub, stride_un, stride_uc,
    stride_ab, stride_an, stride_bb, stride_bn,
    stride_sb, stride_sn, stride_db, stride_dn,
    MASK_ROW0: tl.constexpr, MASK_COL0: tl.constexpr, ACC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
):
    b = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    match_rows(u_ptr + b * stride_ub, rows, a_ptr + b * stride_ab, stride_an, NA,
               b_ptr + b * stride_bb, stride_bn, NB, C, stride_un, stride_uc,
               best_ptr + b * stride_sb, stride_sn, dst_ptr + b * stride_db, stride_dn,
               MASK_ROW0, MASK_COL0, ACC, BLOCK_N, BLOCK_C)


def match(u: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
          mask_row0: bool = False, mask_col0: bool = False):
    """``best [B, NA]`` (u's dtype) and ``dst [B, NA]`` (int64, position in ``b``).

    ``a``/``b`` are ``[B, NA]``/``[B, NB]`` integer token indices into ``u`` (any
    strides, a zero batch stride included).
    """
    B, _, C = u.shape
    NA, NB = a.shape[1], b.shape[1]
    best = torch.empty((B, NA), dtype=u.dtype, device=u.device)
    dst = torch.empty((B, NA), dtype=torch.int32, device=u.device)
    if B == 0 or NA == 0:
        return best, dst.long()
    BLOCK_M = token_tile(NA)
    grid = (triton.cdiv(NA, BLOCK_M), B)
    _match_kernel[grid](
        u, a, b, best, dst, NA, NB, C,
        u.stride(0), u.stride(1), u.stride(2),
        a.stride(0), a.stride(1), b.stride(0), b.stride(1),
        best.stride(0), best.stride(1), dst.stride(0), dst.stride(1),
        MASK_ROW0=bool(mask_row0), MASK_COL0=bool(mask_col0), ACC=tl_dtype(u.dtype),
        BLOCK_M=BLOCK_M, BLOCK_N=token_tile(NB), BLOCK_C=dot_chunk(C),
        **tile_options(BLOCK_M * token_tile(NB), u.dtype, max_warps=16),
    )
    return best, dst.long()
