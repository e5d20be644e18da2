"""Fused small-T plans: metric -> (slot, offsets, members) in ONE kernel launch.

For ``T' <= FUSED_MAX_T`` mergeable tokens and the variants ``pitome``, ``pitome_text``
and ``pitome_bsm``, one program per batch element runs every step of the multi-launch
path of ``plan.py`` back to back, separated by CTA barriers:

1. normalise ``u = m / max(||m||, 1e-12)`` (float32, IEEE sqrt/div) into a scratch
   buffer (the same chunking as ``energy._normalize_kernel``, so the same bits);
2. energy: tiles of ``u @ u^T`` through ``tl.dot(input_precision="ieee")`` with the
   ELU-margin or Gaussian epilogue and the row mean (the arithmetic of
   ``energy._energy_kernel``), into scratch;
3. rank: an in-register ``tl.sort`` of int64 keys ``desc(bits(E)) << 32 | index``, where
   ``desc`` is a monotone decreasing int32 image of the float32 energy: the order is
   energy descending, ties to the lower index (``torch.sort(stable=True)``);
4. split + matching: the tiled running argmax of ``matching._match_kernel`` with A/B token
   lists read straight from the ranking (first maximum on ties);
5. ``pitome_bsm``: A ordered by ``best`` descending (the same key sort, ties to the lower
   position), the first ``r`` merge;
6. CSR: every token's slot is scattered into ``slot``; group sizes by ``tl.histogram`` over
   the sources' slots and an exclusive ``tl.cumsum`` give ``offsets``; heads go to
   ``members[offsets[g]]``; the sources, sorted by ``slot * T + token``, go to
   ``members[slot + 1 + k]`` (k = rank in that sort), i.e. after their head in ascending
   token index — exactly ``reference._to_csr``.

Live state per program is O(T') vectors (at most a few ``BLOCK_T`` int64/int32/float32
vectors) plus ``64 x 64`` similarity tiles; the unit rows, the energies, the ranking and
the matching results live in global scratch (``[B, T', C]`` float32 and ``[B, 2, BLOCK_T]``
float32/int32) written and re-read by the same program. No host synchronisation; every
shape follows from ``T`` and ``r``.

float64 metrics (and ``tome``) take the multi-launch path: ``best`` would need a 64-bit
sort key plus an index.

Sorting: ``tl.sort`` (a bitonic network) on GPUs; under Triton's CPU interpreter, which
emulates that network element by element, an equivalent O(n^2) counting sort of the same
distinct keys (``BITONIC=False``; ``plan_fused(bitonic=True)`` forces ``tl.sort``).
"""

import math

import torch
import triton
import triton.language as tl

from ._common import HAS_LIBDEVICE, div, interpreting, pow2_block, sqrt
from .energy import energy_terms
from .matching import argmax_update

FUSED_MAX_T = 1024
FUSED_VARIANTS = {"pitome": 0, "pitome_text": 1, "pitome_bsm": 2}
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _sort(x, BITONIC: tl.constexpr):
    """Ascending sort of a 1-D tensor of DISTINCT keys.

    ``BITONIC``: ``tl.sort`` (the GPU path). Otherwise a counting sort through two
    ``[n, n]`` comparisons: the same result, O(n^2) work, which Triton's CPU interpreter
    runs far faster than its element-wise emulation of the bitonic network.
    """
    if BITONIC:
        return tl.sort(x)
    else:
        rank = tl.sum((x[None, :] < x[:, None]).to(tl.int32), axis=1)  # rank of x[i]
        pos = tl.arange(0, x.shape[0])
        hit = rank[None, :] == pos[:, None]  # [q, i]: x[i] goes to position q
        return tl.sum(tl.where(hit, x[None, :], tl.zeros_like(x)[None, :]), axis=1)


@triton.jit
def _desc_order(v, idx, ok, BITONIC: tl.constexpr):
    """Positions of ``v`` (float32) sorted by value descending, ties to the lower index;
    masked-off entries (``~ok``) go last."""
    v = tl.where(v == 0.0, 0.0, v)  # -0.0 ties with +0.0, as in torch.sort
    bits = v.to(tl.int32, bitcast=True)
    asc = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # monotone increasing int32 image
    desc = tl.where(ok, ~asc, 2147483647)
    key = (desc.to(tl.int64) << 32) | idx.to(tl.int64)
    key = _sort(key, BITONIC)
    return key.to(tl.int32)  # the low 32 bits: the index


@triton.jit
def _fused_plan_kernel(
    m_ptr, u_ptr, wsf_ptr, wsi_ptr, slot_ptr, offsets_ptr, members_ptr,
    N, C, R, T, T_OUT, n_float, margin, sigma, scale,
    stride_mb, stride_mn, stride_mc,
    VARIANT: tl.constexpr, KERNEL: tl.constexpr, OFF: tl.constexpr, LIBDEVICE: tl.constexpr,
    BITONIC: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_CN: tl.constexpr, BLOCK_C: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    m_base = m_ptr + b * stride_mb
    u_base = u_ptr + b * N * C  # contiguous [B, N, C]
    e_ws = wsf_ptr + b * (2 * BLOCK_T)
    best_ws = e_ws + BLOCK_T
    pi_ws = wsi_ptr + b * (2 * BLOCK_T)
    dst_ws = pi_ws + BLOCK_T
    slot_out = slot_ptr + b * T
    off_out = offsets_ptr + b * (T_OUT + 1)
    mem_out = members_ptr + b * T

    # ---- 1. unit rows (energy._normalize_kernel's arithmetic) ----
    for m0 in range(0, N, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_ok = rows < N
        src = m_base + rows[:, None].to(tl.int64) * stride_mn
        dst = u_base + rows[:, None].to(tl.int64) * C
        sumsq = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for c0 in range(0, C, BLOCK_CN):
            cols = c0 + tl.arange(0, BLOCK_CN)
            ok = row_ok[:, None] & (cols[None, :] < C)
            v = tl.load(src + cols[None, :] * stride_mc, mask=ok, other=0.0).to(tl.float32)
            sumsq += tl.sum(v * v, axis=1)
        denom = tl.maximum(sqrt(sumsq, True), 1e-12)
        for c0 in range(0, C, BLOCK_CN):
            cols = c0 + tl.arange(0, BLOCK_CN)
            ok = row_ok[:, None] & (cols[None, :] < C)
            v = tl.load(src + cols[None, :] * stride_mc, mask=ok, other=0.0).to(tl.float32)
            tl.store(dst + cols[None, :], div(v, denom[:, None], True), mask=ok)
    tl.debug_barrier()

    # ---- 2. energy (energy._energy_kernel's arithmetic) ----
    for m0 in range(0, N, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_ok = rows < N
        row_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for n0 in range(0, N, BLOCK_M):
            cols = n0 + tl.arange(0, BLOCK_M)
            col_ok = cols < N
            s = tl.zeros((BLOCK_M, BLOCK_M), dtype=tl.float32)
            for c0 in range(0, C, BLOCK_C):
                cc = c0 + tl.arange(0, BLOCK_C)
                c_ok = cc < C
                ui = tl.load(u_base + rows[:, None].to(tl.int64) * C + cc[None, :],
                             mask=row_ok[:, None] & c_ok[None, :], other=0.0)
                uj = tl.load(u_base + cols[None, :].to(tl.int64) * C + cc[:, None],
                             mask=col_ok[None, :] & c_ok[:, None], other=0.0)
                s = tl.dot(ui, uj, s, input_precision="ieee", out_dtype=tl.float32)
            val = tl.where(col_ok[None, :], energy_terms(s, margin, sigma, KERNEL, True, LIBDEVICE), 0.0)
            row_sum += tl.sum(val, axis=1)
        e = div(row_sum, n_float, True)
        if KERNEL == 1:
            e = div(e, scale, True)
        tl.store(e_ws + rows, e, mask=row_ok)
    tl.debug_barrier()

    # ---- 3. rank: pi = tokens by energy descending, ties to the lower index ----
    idx = tl.arange(0, BLOCK_T)
    tok_ok = idx < N
    energies = tl.load(e_ws + idx, mask=tok_ok, other=0.0)
    pi = _desc_order(energies, idx, tok_ok, BITONIC)
    tl.store(pi_ws + idx, pi)
    tl.debug_barrier()

    # ---- 4. split + matching (matching._match_kernel's arithmetic) ----
    if VARIANT == 2:
        NA = (N + 1) // 2
        NB = N // 2
    else:
        NA = R
        NB = R
    for m0 in range(0, NA, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_ok = rows < NA
        if VARIANT == 1:
            a_pos = rows
        else:
            a_pos = 2 * rows
        a_tok = tl.load(pi_ws + a_pos, mask=row_ok, other=0).to(tl.int64)
        run_max = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
        run_idx = tl.zeros((BLOCK_M,), dtype=tl.int32)
        for n0 in range(0, NB, BLOCK_M):
            cols = n0 + tl.arange(0, BLOCK_M)
            col_ok = cols < NB
            if VARIANT == 1:
                b_pos = R + cols
            else:
                b_pos = 2 * cols + 1
            b_tok = tl.load(pi_ws + b_pos, mask=col_ok, other=0).to(tl.int64)
            s = tl.zeros((BLOCK_M, BLOCK_M), dtype=tl.float32)
            for c0 in range(0, C, BLOCK_C):
                cc = c0 + tl.arange(0, BLOCK_C)
                c_ok = cc < C
                ua = tl.load(u_base + a_tok[:, None] * C + cc[None, :],
                             mask=row_ok[:, None] & c_ok[None, :], other=0.0)
                ub = tl.load(u_base + b_tok[None, :] * C + cc[:, None],
                             mask=col_ok[None, :] & c_ok[:, None], other=0.0)
                s = tl.dot(ua, ub, s, input_precision="ieee", out_dtype=tl.float32)
            invalid = (rows[:, None] < 0) | (~col_ok[None, :])
            s = tl.where(invalid, float("-inf"), s)
            run_max, run_idx = argmax_update(s, n0, run_max, run_idx)
        tl.store(best_ws + rows, run_max, mask=row_ok)
        tl.store(dst_ws + rows, run_idx, mask=row_ok)
    tl.debug_barrier()

    # ---- 5. every token's slot; sources (is_src) and heads (is_head) ----
    # Vectors "1" cover the ranking positions (pitome/pitome_text) or the A set in edge
    # order (bsm); vectors "2" cover the Bset of bsm (unused otherwise).
    if VARIANT == 2:
        a_ok = idx < NA
        best = tl.load(best_ws + idx, mask=a_ok, other=0.0)
        edge = _desc_order(best, idx, a_ok, BITONIC)  # edge[q] = A position
        base = OFF + NA - R
        is_src1 = a_ok & (idx < R)
        is_head1 = a_ok & (idx >= R)
        tok1 = tl.load(pi_ws + 2 * edge, mask=a_ok, other=0) + OFF
        d = tl.load(dst_ws + edge, mask=is_src1, other=0)
        slot1 = tl.where(is_src1, base + d, OFF + idx - R)
        is_head2 = idx < NB
        tok2 = tl.load(pi_ws + 2 * idx + 1, mask=is_head2, other=0) + OFF
        slot2 = base + idx
        tl.store(slot_out + tok2, slot2, mask=is_head2)
    else:
        base = OFF + N - 2 * R
        if VARIANT == 1:  # A = M[:r], B = M[r:2r]
            is_src1 = idx < R
            is_b = (idx >= R) & (idx < 2 * R)
            a_i = idx
            b_j = idx - R
        else:  # A = M[0::2], B = M[1::2]
            is_src1 = (idx < 2 * R) & (idx % 2 == 0)
            is_b = (idx < 2 * R) & (idx % 2 == 1)
            a_i = idx // 2
            b_j = idx // 2
        is_head1 = tok_ok & (~is_src1)
        tok1 = pi + OFF
        d = tl.load(dst_ws + a_i, mask=is_src1, other=0)
        slot1 = tl.where(is_src1, base + d, tl.where(is_b, base + b_j, OFF + idx - 2 * R))
    tl.store(slot_out + tok1, slot1, mask=is_src1 | is_head1)
    if OFF:  # the class token: slot 0, a group of one at members[0]
        tl.store(slot_out + idx, tl.zeros_like(idx), mask=idx == 0)
        tl.store(mem_out + idx, tl.zeros_like(idx), mask=idx == 0)

    # ---- 6. offsets[g] = g + #{sources with slot < g}; heads; sources ----
    count = tl.histogram(slot1, BLOCK_T, mask=is_src1)
    offs = idx + tl.cumsum(count, 0) - count
    tl.store(off_out + idx, offs, mask=idx < T_OUT)
    tl.store(off_out + T_OUT, T)
    tl.debug_barrier()
    h = tl.load(off_out + slot1, mask=is_head1, other=0)
    tl.store(mem_out + h, tok1, mask=is_head1)
    if VARIANT == 2:
        h2 = tl.load(off_out + slot2, mask=is_head2, other=0)
        tl.store(mem_out + h2, tok2, mask=is_head2)
    # distinct keys: padding entries get distinct values above every real key
    keys = _sort(tl.where(is_src1, slot1 * T + tok1, 2147483647 - BLOCK_T + idx), BITONIC)
    d = keys // T
    s = keys % T
    tl.store(mem_out + d + 1 + idx, s, mask=idx < R)


def supported(metric: torch.Tensor, r: int, variant: str, class_token: bool) -> bool:
    """True when ``plan_fused`` serves this call (else the multi-launch path does)."""
    B, T, _ = metric.shape
    n = T - int(class_token)
    return (variant in FUSED_VARIANTS and metric.dtype in FUSED_DTYPES and B > 0
            and 1 <= n <= FUSED_MAX_T and 1 <= int(r) and 2 * int(r) <= n)


def plan_fused(metric, r, variant, margin, class_token, *, bitonic=None):
    """``(slot, offsets, members)`` int32 in one launch; requires ``supported(...)``.

    ``bitonic``: sort with ``tl.sort`` (True) or the interpreter-friendly counting sort
    (False); by default ``tl.sort`` unless Triton runs through its CPU interpreter.
    """
    if not supported(metric, r, variant, class_token):
        raise ValueError("plan_fused: unsupported arguments (see fused.supported)")
    r = int(r)
    B, T, C = metric.shape
    off = int(class_token)
    m = metric[:, off:]
    N = T - off
    t_out = T - r
    device = metric.device
    block_t = pow2_block(N, 16, FUSED_MAX_T)
    block_m = min(64, block_t)
    u = torch.empty((B, N, C), dtype=torch.float32, device=device)
    wsf = torch.empty((B, 2, block_t), dtype=torch.float32, device=device)
    wsi = torch.empty((B, 2, block_t), dtype=torch.int32, device=device)
    slot = torch.empty((B, T), dtype=torch.int32, device=device)
    offsets = torch.empty((B, t_out + 1), dtype=torch.int32, device=device)
    members = torch.empty((B, T), dtype=torch.int32, device=device)
    if variant == "pitome_text":
        kernel, sigma = 1, 1.0 - float(margin)
        scale = sigma * math.sqrt(2.0 * math.pi)
    else:
        kernel, sigma, scale = 0, 1.0, 1.0
    _fused_plan_kernel[(B,)](
        m, u, wsf, wsi, slot, offsets, members,
        N, C, r, T, t_out, float(N), float(margin), sigma, scale,
        m.stride(0), m.stride(1), m.stride(2),
        VARIANT=FUSED_VARIANTS[variant], KERNEL=kernel, OFF=off,
        LIBDEVICE=HAS_LIBDEVICE and not interpreting(),
        BITONIC=(not interpreting()) if bitonic is None else bool(bitonic),
        BLOCK_T=block_t, BLOCK_M=block_m,
        BLOCK_CN=pow2_block(C, 16, 128), BLOCK_C=pow2_block(C, 16, 32),
        num_warps=8,  # one CTA per batch element; 4 warps spill the 64x64 FMA tiles heavily
    )
    return slot, offsets, members
