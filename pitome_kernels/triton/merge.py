"""Merge, merge_wavg, unmerge and their backward passes as one-pass gather kernels.

Forward: one program per (block of output rows, batch, K-block) walks the members of its
groups from the CSR lists in order (head first, then sources by token index) and reduces
in float32 (float64 for float64 inputs): deterministic, no atomics, one read of x, one
write.
Backward and unmerge: a gather by ``slot`` over [token-block x K-block] tiles; the
``amax`` backward walks each group twice (count the members equal to the max, then write
each member's share), every member written by exactly one program.
"""

import torch
import triton
import triton.language as tl

from ._common import compute_dtype, div, pow2_block, tl_dtype

MODE_SUM, MODE_MEAN, MODE_AMAX, MODE_PRUNE, MODE_WAVG, MODE_COPY = 0, 1, 2, 3, 4, 5
_MODES = {"sum": MODE_SUM, "mean": MODE_MEAN, "amax": MODE_AMAX, "prune": MODE_PRUNE}


@triton.jit
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
    pid_g = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    pid_k = tl.program_id(2)
    g = pid_g * BLOCK_G + tl.arange(0, BLOCK_G)
    g_ok = g < T_OUT
    cols = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    ok = g_ok[:, None] & (cols[None, :] < K)
    offs = offsets_ptr + b * (T_OUT + 1)
    start = tl.load(offs + g, mask=g_ok, other=0)
    cnt = tl.load(offs + g + 1, mask=g_ok, other=0) - start
    members = members_ptr + b * T
    x_base = x_ptr + b * stride_xb + cols[None, :] * stride_xk
    g64 = g.to(tl.int64)
    if MODE == 3:  # prune: the head keeps its own value
        head = tl.load(members + start, mask=g_ok, other=0).to(tl.int64)
        acc = tl.load(x_base + head[:, None] * stride_xn, mask=ok, other=0.0).to(ACC)
    else:
        if MODE == 2:
            acc = tl.full((BLOCK_G, BLOCK_K), float("-inf"), dtype=ACC)
        else:
            acc = tl.zeros((BLOCK_G, BLOCK_K), dtype=ACC)
        ssum = tl.zeros((BLOCK_G,), dtype=ACC)
        for j in range(0, tl.max(cnt, axis=0)):
            live = g_ok & (j < cnt)
            m = tl.load(members + start + j, mask=live, other=0).to(tl.int64)
            v = tl.load(x_base + m[:, None] * stride_xn, mask=live[:, None] & ok, other=0.0).to(ACC)
            if MODE == 2:  # amax
                acc = tl.where(live[:, None], tl.maximum(acc, v, propagate_nan=tl.PropagateNan.ALL), acc)
            elif MODE == 4:  # size-weighted sum
                if HAS_SIZE:
                    s = tl.load(size_ptr + b * stride_sb + m * stride_sn, mask=live, other=0.0).to(ACC)
                else:
                    s = live.to(ACC)
                acc += v * s[:, None]
                ssum += s
            else:  # sum / mean
                acc += v
        if MODE == 1:
            acc = div(acc, tl.where(g_ok, cnt, 1).to(ACC)[:, None], ACC == tl.float32)
        if MODE == 4:
            acc = div(acc, tl.where(g_ok, ssum, 1.0)[:, None], ACC == tl.float32)
            if pid_k == 0:
                tl.store(size_out_ptr + b * stride_zb + g * stride_zn,
                         ssum.to(size_out_ptr.dtype.element_ty), mask=g_ok)
    tl.store(out_ptr + b * stride_ob + g64[:, None] * stride_on + cols[None, :] * stride_ok,
             acc.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
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
    if MODE == 1:  # mean: divide by the group count
        cnt = tl.load(offs + g + 1, mask=r_ok, other=1) - tl.load(offs + g, mask=r_ok, other=0)
        v = div(v, cnt.to(ACC)[:, None], ACC == tl.float32)
    elif MODE == 3:  # prune: heads only
        head = tl.load(members_ptr + b * T + tl.load(offs + g, mask=r_ok, other=0), mask=r_ok, other=-1)
        v = v * (head == rows).to(ACC)[:, None]
    elif MODE == 4:  # wavg: size_i / size'_g
        w = div(tl.full((BLOCK_T,), 1.0, ACC),
                tl.load(size_out_ptr + b * stride_zb + g * stride_zn, mask=r_ok, other=1.0).to(ACC),
                ACC == tl.float32)
        if HAS_SIZE:
            w = w * tl.load(size_ptr + b * stride_sb + rows.to(tl.int64) * stride_sn, mask=r_ok, other=1.0).to(ACC)
        v = v * w[:, None]
    tl.store(dst_ptr + b * stride_db + rows[:, None].to(tl.int64) * stride_dn + cols[None, :] * stride_dk,
             v.to(dst_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _amax_backward_kernel(
    grad_ptr, x_ptr, out_ptr, gx_ptr, offsets_ptr, members_ptr,
    T, T_OUT, K,
    stride_gb, stride_gn, stride_gk, stride_xb, stride_xn, stride_xk,
    stride_ob, stride_on, stride_ok, stride_db, stride_dn, stride_dk,
    ACC: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """Two walks over each group: count the members equal to the max, then write shares."""
    pid_g = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    pid_k = tl.program_id(2)
    g = pid_g * BLOCK_G + tl.arange(0, BLOCK_G)
    g_ok = g < T_OUT
    cols = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    ok = g_ok[:, None] & (cols[None, :] < K)
    offs = offsets_ptr + b * (T_OUT + 1)
    start = tl.load(offs + g, mask=g_ok, other=0)
    cnt = tl.load(offs + g + 1, mask=g_ok, other=0) - start
    n_steps = tl.max(cnt, axis=0)
    members = members_ptr + b * T
    g64 = g.to(tl.int64)
    top = tl.load(out_ptr + b * stride_ob + g64[:, None] * stride_on + cols[None, :] * stride_ok,
                  mask=ok, other=0.0).to(ACC)
    go = tl.load(grad_ptr + b * stride_gb + g64[:, None] * stride_gn + cols[None, :] * stride_gk,
                 mask=ok, other=0.0).to(ACC)
    x_base = x_ptr + b * stride_xb + cols[None, :] * stride_xk
    ties = tl.zeros((BLOCK_G, BLOCK_K), dtype=ACC)
    for j in range(0, n_steps):
        live = g_ok & (j < cnt)
        m = tl.load(members + start + j, mask=live, other=0).to(tl.int64)
        v = tl.load(x_base + m[:, None] * stride_xn, mask=live[:, None] & ok, other=0.0)
        ties += ((v.to(ACC) == top) & live[:, None]).to(ACC)
    for j in range(0, n_steps):
        live = g_ok & (j < cnt)
        m = tl.load(members + start + j, mask=live, other=0).to(tl.int64)
        v = tl.load(x_base + m[:, None] * stride_xn, mask=live[:, None] & ok, other=0.0)
        share = div(go * (v.to(ACC) == top).to(ACC), tl.where(ok, ties, 1.0), ACC == tl.float32)
        tl.store(gx_ptr + b * stride_db + m[:, None] * stride_dn + cols[None, :] * stride_dk,
                 share.to(gx_ptr.dtype.element_ty), mask=live[:, None] & ok)


def _plan_args(slot, offsets, members):
    return slot.contiguous(), offsets.contiguous(), members.contiguous()


def _blocks(K):
    """(BLOCK_G, BLOCK_K): up to 4096 elements per tile, at least 16 per side."""
    block_k = pow2_block(K, 16, 256)
    return max(16, min(128, 4096 // block_k)), block_k


def _merge(x, size, slot, offsets, members, mode, size_dtype=None):
    slot, offsets, members = _plan_args(slot, offsets, members)
    B, T, K = x.shape
    t_out = offsets.shape[1] - 1
    out = torch.empty((B, t_out, K), dtype=x.dtype, device=x.device)
    acc = compute_dtype(x.dtype)
    size_out = None
    if mode == MODE_WAVG:
        size_out = torch.empty((B, t_out, 1), dtype=size_dtype, device=x.device)
    if B == 0 or t_out == 0:
        return out, size_out
    BLOCK_G, BLOCK_K = _blocks(K)
    grid = (triton.cdiv(t_out, BLOCK_G), B, max(triton.cdiv(K, BLOCK_K), 1))
    s = size if size is not None else x
    z = size_out if size_out is not None else out
    _merge_kernel[grid](
        x, out, s, z, offsets, members, T, t_out, K,
        x.stride(0), x.stride(1), x.stride(2), out.stride(0), out.stride(1), out.stride(2),
        s.stride(0), s.stride(1), z.stride(0), z.stride(1),
        MODE=mode, HAS_SIZE=size is not None, ACC=tl_dtype(acc), BLOCK_G=BLOCK_G, BLOCK_K=BLOCK_K,
    )
    return out, size_out


def _gather(src, slot, offsets, members, mode, out_dtype, size=None, size_out=None):
    slot, offsets, members = _plan_args(slot, offsets, members)
    B, T = slot.shape
    K = src.shape[2]
    t_out = offsets.shape[1] - 1
    dst = torch.empty((B, T, K), dtype=out_dtype, device=src.device)
    if B == 0 or T == 0 or K == 0:
        return dst
    acc = compute_dtype(src.dtype)
    BLOCK_T, BLOCK_K = _blocks(K)
    grid = (triton.cdiv(T, BLOCK_T), B, triton.cdiv(K, BLOCK_K))
    s = size if size is not None else src
    z = size_out if size_out is not None else src
    _gather_kernel[grid](
        src, dst, slot, offsets, members, s, z, T, t_out, K,
        src.stride(0), src.stride(1), src.stride(2), dst.stride(0), dst.stride(1), dst.stride(2),
        s.stride(0), s.stride(1), z.stride(0), z.stride(1),
        MODE=mode, HAS_SIZE=size is not None, ACC=tl_dtype(acc), BLOCK_T=BLOCK_T, BLOCK_K=BLOCK_K,
    )
    return dst


def merge(x, slot, offsets, members, mode):
    """Reduce every group of the plan: ``[B, T, K] -> [B, T_out, K]`` (x's dtype)."""
    return _merge(x, None, slot, offsets, members, _MODES[mode])[0]


def merge_wavg(x, size, slot, offsets, members):
    """``x' = sum(size * x) / sum(size)``, ``size' = sum(size)`` (size dtype, x's when None)."""
    return _merge(x, size, slot, offsets, members, MODE_WAVG,
                  size_dtype=x.dtype if size is None else size.dtype)


def merge_backward(grad_out, x, out, slot, offsets, members, mode):
    """Gradient of ``merge`` with respect to ``x`` (x's dtype)."""
    if mode != "amax":
        return _gather(grad_out, slot, offsets, members, _MODES[mode], x.dtype)
    slot, offsets, members = _plan_args(slot, offsets, members)
    B, T, K = x.shape
    t_out = offsets.shape[1] - 1
    gx = torch.empty((B, T, K), dtype=x.dtype, device=x.device)
    if B == 0 or t_out == 0 or K == 0:
        return gx
    BLOCK_G, BLOCK_K = _blocks(K)
    grid = (triton.cdiv(t_out, BLOCK_G), B, triton.cdiv(K, BLOCK_K))
    _amax_backward_kernel[grid](
        grad_out, x, out, gx, offsets, members, T, t_out, K,
        grad_out.stride(0), grad_out.stride(1), grad_out.stride(2),
        x.stride(0), x.stride(1), x.stride(2), out.stride(0), out.stride(1), out.stride(2),
        gx.stride(0), gx.stride(1), gx.stride(2),
        ACC=tl_dtype(compute_dtype(grad_out.dtype)), BLOCK_G=BLOCK_G, BLOCK_K=BLOCK_K,
    )
    return gx


def merge_wavg_backward(grad_out, size, size_out, slot, offsets, members):
    """``dL/dx_i = size_i / size'_g * dL/dx'_g`` (grad_out's dtype)."""
    return _gather(grad_out, slot, offsets, members, MODE_WAVG, grad_out.dtype,
                   size=size, size_out=size_out)


def unmerge(y, slot, offsets, members):
    """``y_orig[i] = y'[slot[i]]``: ``[B, T_out, K] -> [B, T, K]`` (y's dtype)."""
    return _gather(y, slot, offsets, members, MODE_COPY, y.dtype)
