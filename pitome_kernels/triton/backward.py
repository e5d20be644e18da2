"""The merges' backward passes, and unmerge (the same gather by slot).

``dst[i] = src[slot[i]] * factor(i)`` over [token-block x K-block] tiles covers unmerge
and the backward of sum, mean, prune and wavg. The ``amax`` backward walks each group
twice (count the members equal to the max, then write each member's share), every member
written by exactly one program.
"""

import torch
import triton
import triton.language as tl

from .groups import group_block, group_member
from .launch import compute_dtype, contiguous_plan, feature_tiles, tile_options, tl_dtype
from .merge import MODE_COPY, MODE_MEAN, MODE_PRUNE, MODE_WAVG, MODES
from .precise import div


@triton.jit(do_not_specialize=["T", "T_OUT"])  # token counts: one binary for every T
def _gather_kernel(
    src_ptr, dst_ptr, slot_ptr, offsets_ptr, members_ptr, size_ptr, size_out_ptr,
    T, T_OUT, K,
    stride_gb, stride_gn, stride_gk, stride_db, stride_dn, stride_dk,
    stride_sb, stride_sn, stride_zb, stride_zn,
    MODE: tl.constexpr, HAS_SIZE: tl.constexpr, ACC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """``dst[i] = src[slot[i]] * factor(i)`` (the factor depends on MODE)."""
    pid_t = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    pid_k = tl.program_id(2)
    rows = pid_t * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    r_ok = rows < T
    ok = r_ok[:, None] & (cols[None, :] < K)
    g = tl.load(slot_ptr + b * T + rows, mask=r_ok, other=0).to(tl.int64)
    v = tl.load(src_ptr + b * stride_gb + g[:, None] * stride_gn + cols[None, :] * stride_gk,
                mask=ok, other=0.0).to(ACC)
    offs = offsets_ptr + b * (T_OUT + 1)
    if MODE == MODE_MEAN:  # divide by the group count
        cnt = tl.load(offs + g + 1, mask=r_ok, other=1) - tl.load(offs + g, mask=r_ok, other=0)
        v = div(v, cnt.to(ACC)[:, None], ACC == tl.float32)
    elif MODE == MODE_PRUNE:  # heads only
        head = tl.load(members_ptr + b * T + tl.load(offs + g, mask=r_ok, other=0), mask=r_ok, other=-1)
        v = v * (head == rows).to(ACC)[:, None]
    elif MODE == MODE_WAVG:  # size_i / size'_g
        w = div(tl.full((BLOCK_T,), 1.0, ACC),
                tl.load(size_out_ptr + b * stride_zb + g * stride_zn, mask=r_ok, other=1.0).to(ACC),
                ACC == tl.float32)
        if HAS_SIZE:
            w = w * tl.load(size_ptr + b * stride_sb + rows.to(tl.int64) * stride_sn, mask=r_ok, other=1.0).to(ACC)
        v = v * w[:, None]
    tl.store(dst_ptr + b * stride_db + rows[:, None].to(tl.int64) * stride_dn + cols[None, :] * stride_dk,
             v.to(dst_ptr.dtype.element_ty), mask=ok)


@triton.jit(do_not_specialize=["T", "T_OUT"])  # token counts: one binary for every T
def _amax_backward_kernel(
    grad_ptr, x_ptr, out_ptr, gx_ptr, offsets_ptr, members_ptr,
    T, T_OUT, K,
    stride_gb, stride_gn, stride_gk, stride_xb, stride_xn, stride_xk,
    stride_ob, stride_on, stride_ok, stride_db, stride_dn, stride_dk,
    ACC: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Two walks over each group: count the members equal to the max, then write shares."""
    b = tl.program_id(1).to(tl.int64)
    pid_k = tl.program_id(2)
    g, g_ok, start, cnt = group_block(offsets_ptr + b * (T_OUT + 1), T_OUT, BLOCK_G)
    cols = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    ok = g_ok[:, None] & (cols[None, :] < K)
    n_steps = tl.max(cnt, axis=0)
    members = members_ptr + b * T
    g64 = g.to(tl.int64)
    top = tl.load(out_ptr + b * stride_ob + g64[:, None] * stride_on + cols[None, :] * stride_ok,
                  mask=ok, other=0.0).to(ACC)
    go = tl.load(grad_ptr + b * stride_gb + g64[:, None] * stride_gn + cols[None, :] * stride_gk,
                 mask=ok, other=0.0).to(ACC)
    x_cols = x_ptr + b * stride_xb + cols[None, :] * stride_xk
    ties = tl.zeros((BLOCK_G, BLOCK_K), dtype=ACC)
    for j in range(0, n_steps):
        live, m, v = group_member(members, start, cnt, j, g_ok, x_cols, stride_xn, ok)
        ties += ((v.to(ACC) == top) & live[:, None]).to(ACC)
    for j in range(0, n_steps):
        live, m, v = group_member(members, start, cnt, j, g_ok, x_cols, stride_xn, ok)
        share = div(go * (v.to(ACC) == top).to(ACC), tl.where(ok, ties, 1.0), ACC == tl.float32)
        tl.store(gx_ptr + b * stride_db + m[:, None] * stride_dn + cols[None, :] * stride_dk,
                 share.to(gx_ptr.dtype.element_ty), mask=live[:, None] & ok)


def _gather(src, slot, offsets, members, mode, out_dtype, size=None, size_out=None):
    slot, offsets, members = contiguous_plan(slot, offsets, members)
    B, T = slot.shape
    K = src.shape[2]
    t_out = offsets.shape[1] - 1
    dst = torch.empty((B, T, K), dtype=out_dtype, device=src.device)
    if B == 0 or T == 0 or K == 0:
        return dst
    acc = compute_dtype(src.dtype)
    BLOCK_T, BLOCK_K = feature_tiles(K)
    grid = (triton.cdiv(T, BLOCK_T), B, triton.cdiv(K, BLOCK_K))
    s = size if size is not None else src
    z = size_out if size_out is not None else src
    _gather_kernel[grid](
        src, dst, slot, offsets, members, s, z, T, t_out, K,
        src.stride(0), src.stride(1), src.stride(2), dst.stride(0), dst.stride(1), dst.stride(2),
        s.stride(0), s.stride(1), z.stride(0), z.stride(1),
        MODE=mode, HAS_SIZE=size is not None, ACC=tl_dtype(acc), BLOCK_T=BLOCK_T, BLOCK_K=BLOCK_K,
        **tile_options(BLOCK_T * BLOCK_K, acc),
    )
    return dst


def _amax_backward(grad_out, x, out, slot, offsets, members):
    slot, offsets, members = contiguous_plan(slot, offsets, members)
    B, T, K = x.shape
    t_out = offsets.shape[1] - 1
    gx = torch.empty((B, T, K), dtype=x.dtype, device=x.device)
    if B == 0 or t_out == 0 or K == 0:
        return gx
    acc = compute_dtype(grad_out.dtype)
    BLOCK_G, BLOCK_K = feature_tiles(K)
    if acc == torch.float64:  # four float64 tiles of 4096 spilled on sm_80 and sm_100
        BLOCK_G = max(16, BLOCK_G // 2)
    grid = (triton.cdiv(t_out, BLOCK_G), B, triton.cdiv(K, BLOCK_K))
    _amax_backward_kernel[grid](
        grad_out, x, out, gx, offsets, members, T, t_out, K,
        grad_out.stride(0), grad_out.stride(1), grad_out.stride(2),
        x.stride(0), x.stride(1), x.stride(2), out.stride(0), out.stride(1), out.stride(2),
        gx.stride(0), gx.stride(1), gx.stride(2),
        ACC=tl_dtype(acc), BLOCK_G=BLOCK_G, BLOCK_K=BLOCK_K,
        **tile_options(BLOCK_G * BLOCK_K, acc),
    )
    return gx


def merge_backward(grad_out, x, out, slot, offsets, members, mode):
    """Gradient of ``merge`` with respect to ``x`` (x's dtype)."""
    if mode == "amax":
        return _amax_backward(grad_out, x, out, slot, offsets, members)
    return _gather(grad_out, slot, offsets, members, MODES[mode], x.dtype)


def merge_wavg_backward(grad_out, size, size_out, slot, offsets, members):
    """``dL/dx_i = size_i / size'_g * dL/dx'_g`` (grad_out's dtype)."""
    return _gather(grad_out, slot, offsets, members, MODE_WAVG.value, grad_out.dtype,
                   size=size, size_out=size_out)


def unmerge(y, slot, offsets, members):
    """``y_orig[i] = y'[slot[i]]``: ``[B, T_out, K] -> [B, T, K]`` (y's dtype)."""
    return _gather(y, slot, offsets, members, MODE_COPY.value, y.dtype)
