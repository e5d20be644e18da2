"""Merge and merge_wavg: every group of a plan reduced in one pass, without atomics.

One program per (block of output rows, batch, K-block) walks the members of its groups
in CSR order (head first, then sources by token index) and reduces in float32 (float64
for float64 inputs): deterministic, one read of x, one write.
"""

import torch
import triton
import triton.language as tl

from .groups import group_block, group_member
from .launch import compute_dtype, contiguous_plan, feature_tiles, tile_options, tl_dtype
from .precise import div

# the MODE constexpr of the merge kernel (sum..wavg) and of the gathers of backward.py
MODE_SUM: tl.constexpr = tl.constexpr(0)
MODE_MEAN: tl.constexpr = tl.constexpr(1)
MODE_AMAX: tl.constexpr = tl.constexpr(2)
MODE_PRUNE: tl.constexpr = tl.constexpr(3)
MODE_WAVG: tl.constexpr = tl.constexpr(4)
MODE_COPY: tl.constexpr = tl.constexpr(5)
MODES = {"sum": MODE_SUM.value, "mean": MODE_MEAN.value, "amax": MODE_AMAX.value, "prune": MODE_PRUNE.value}


@triton.jit(do_not_specialize=["T", "T_OUT"])  # token counts: one binary for every T
def _merge_kernel(
    x_ptr, out_ptr, size_ptr, size_out_ptr, offsets_ptr, members_ptr,
    T, T_OUT, K,
    stride_xb, stride_xn, stride_xk, stride_ob, stride_on, stride_ok,
    stride_sb, stride_sn, stride_zb, stride_zn,
    MODE: tl.constexpr, HAS_SIZE: tl.constexpr, ACC: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """One program = BLOCK_G output rows x BLOCK_K features of one batch row.

    Step j reads the j-th member of every group in the block (masked past its end), so
    each group is reduced in CSR order: head first, then sources by token index.
    """
    b = tl.program_id(1).to(tl.int64)
    pid_k = tl.program_id(2)
    g, g_ok, start, cnt = group_block(offsets_ptr + b * (T_OUT + 1), T_OUT, BLOCK_G)
    cols = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    ok = g_ok[:, None] & (cols[None, :] < K)
    members = members_ptr + b * T
    x_cols = x_ptr + b * stride_xb + cols[None, :] * stride_xk
    if MODE == MODE_PRUNE:  # the head keeps its own value
        head = tl.load(members + start, mask=g_ok, other=0).to(tl.int64)
        acc = tl.load(x_cols + head[:, None] * stride_xn, mask=ok, other=0.0).to(ACC)
    else:
        if MODE == MODE_AMAX:
            acc = tl.full((BLOCK_G, BLOCK_K), float("-inf"), dtype=ACC)
        else:
            acc = tl.zeros((BLOCK_G, BLOCK_K), dtype=ACC)
        ssum = tl.zeros((BLOCK_G,), dtype=ACC)
        for j in range(0, tl.max(cnt, axis=0)):
            live, m, v = group_member(members, start, cnt, j, g_ok, x_cols, stride_xn, ok)
            v = v.to(ACC)
            if MODE == MODE_AMAX:
                acc = tl.where(live[:, None], tl.maximum(acc, v, propagate_nan=tl.PropagateNan.ALL), acc)
            elif MODE == MODE_WAVG:  # size-weighted sum
                if HAS_SIZE:
                    s = tl.load(size_ptr + b * stride_sb + m * stride_sn, mask=live, other=0.0).to(ACC)
                else:
                    s = live.to(ACC)
                acc += v * s[:, None]
                ssum += s
            else:  # sum / mean
                acc += v
        if MODE == MODE_MEAN:
            acc = div(acc, tl.where(g_ok, cnt, 1).to(ACC)[:, None], ACC == tl.float32)
        if MODE == MODE_WAVG:
            acc = div(acc, tl.where(g_ok, ssum, 1.0)[:, None], ACC == tl.float32)
            if pid_k == 0:
                tl.store(size_out_ptr + b * stride_zb + g * stride_zn,
                         ssum.to(size_out_ptr.dtype.element_ty), mask=g_ok)
    tl.store(out_ptr + b * stride_ob + g.to(tl.int64)[:, None] * stride_on + cols[None, :] * stride_ok,
             acc.to(out_ptr.dtype.element_ty), mask=ok)


def _merge(x, size, slot, offsets, members, mode, size_dtype=None):
    slot, offsets, members = contiguous_plan(slot, offsets, members)
    B, T, K = x.shape
    t_out = offsets.shape[1] - 1
    out = torch.empty((B, t_out, K), dtype=x.dtype, device=x.device)
    acc = compute_dtype(x.dtype)
    size_out = None
    if mode == MODE_WAVG.value:
        size_out = torch.empty((B, t_out, 1), dtype=size_dtype, device=x.device)
    if B == 0 or t_out == 0:
        return out, size_out
    BLOCK_G, BLOCK_K = feature_tiles(K)
    grid = (triton.cdiv(t_out, BLOCK_G), B, max(triton.cdiv(K, BLOCK_K), 1))
    s = size if size is not None else x
    z = size_out if size_out is not None else out
    _merge_kernel[grid](
        x, out, s, z, offsets, members, T, t_out, K,
        x.stride(0), x.stride(1), x.stride(2), out.stride(0), out.stride(1), out.stride(2),
        s.stride(0), s.stride(1), z.stride(0), z.stride(1),
        MODE=mode, HAS_SIZE=size is not None, ACC=tl_dtype(acc), BLOCK_G=BLOCK_G, BLOCK_K=BLOCK_K,
        **tile_options(BLOCK_G * BLOCK_K, acc),
    )
    return out, size_out


def merge(x, slot, offsets, members, mode):
    """Reduce every group of the plan: ``[B, T, K] -> [B, T_out, K]`` (x's dtype)."""
    return _merge(x, None, slot, offsets, members, MODES[mode])[0]


def merge_wavg(x, size, slot, offsets, members):
    """``x' = sum(size * x) / sum(size)``, ``size' = sum(size)`` (size dtype, x's when None)."""
    return _merge(x, size, slot, offsets, members, MODE_WAVG.value,
                  size_dtype=x.dtype if size is None else size.dtype)
