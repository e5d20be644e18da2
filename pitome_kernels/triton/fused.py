"""Fused small-T plans: metric -> (slot, offsets, members) in ONE kernel launch.

For ``T' <= FUSED_MAX_T`` mergeable tokens and the variants ``pitome``, ``pitome_text``
and ``pitome_bsm``, one program per batch element runs every step of the multi-launch
path of ``plan.py`` back to back, separated by CTA barriers. Steps 1, 2 and 4 call the
same jit helpers as the multi-launch kernels, with the same tile sizes (``launch.py``),
so they produce the same bits:

1. unit rows (``normalize.normalize_rows``, float32) into a scratch buffer;
2. energies (``energy.energy_rows``) into scratch;
3. rank: ``sort.desc_order`` of the energies: descending, ties to the lower index, as
   ``torch.sort(stable=True)`` orders them on the multi-launch path;
4. split + matching (``matching.match_rows``) with the A/B token lists read straight from
   the ranking;
5. ``pitome_bsm``: A ordered by ``best`` descending (``desc_order`` again), the first
   ``r`` merge;
6. CSR: every token's slot is scattered into ``slot``; group sizes by ``tl.histogram`` over
   the sources' slots and an exclusive ``tl.cumsum`` give ``offsets``; heads go to
   ``members[offsets[g]]``; the sources, sorted by ``slot * T + token``, go to
   ``members[slot + 1 + k]`` (k = rank in that sort), i.e. after their head in ascending
   token index, the order ``csr.to_csr`` writes.

Live state per program is O(T') vectors (at most a few ``BLOCK_T`` int64/int32/float32
vectors) plus ``64 x 64`` similarity tiles; the unit rows, the energies, the ranking and
the matching results live in global scratch (``[B, T', C]`` float32 and ``[B, 2, BLOCK_T]``
float32/int32) written and re-read by the same program. No host synchronisation; every
shape follows from ``T`` and ``r``.

float64 metrics (and ``tome``) take the multi-launch path: ``best`` would need a 64-bit
sort key plus an index.
"""

import torch
import triton
import triton.language as tl

from .energy import energy_rows, epilogue_args
from .launch import dot_chunk, gpu_arch, norm_chunk, pow2_block, token_tile, use_bitonic, use_libdevice
from .matching import match_rows
from .normalize import normalize_rows
from .sort import desc_order, sort_distinct

FUSED_MAX_T = 1024
VARIANT_PITOME: tl.constexpr = tl.constexpr(0)
VARIANT_TEXT: tl.constexpr = tl.constexpr(1)
VARIANT_BSM: tl.constexpr = tl.constexpr(2)
FUSED_VARIANTS = {
    "pitome": VARIANT_PITOME.value,
    "pitome_text": VARIANT_TEXT.value,
    "pitome_bsm": VARIANT_BSM.value,
}
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit(do_not_specialize=["N", "R", "T", "T_OUT"])  # token counts: one binary for every T
def _fused_plan_kernel(
    m_ptr, u_ptr, wsf_ptr, wsi_ptr, slot_ptr, offsets_ptr, members_ptr,
    N, C, R, T, T_OUT, n_float, margin, sigma, scale,
    stride_mb, stride_mn, stride_mc,
    VARIANT: tl.constexpr, KERNEL: tl.constexpr, OFF: tl.constexpr, LIBDEVICE: tl.constexpr,
    BITONIC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_CN: tl.constexpr,
    BLOCK_C: tl.constexpr,
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

    # ---- 1. unit rows ----
    for m0 in range(0, N, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        row_tok = rows[:, None].to(tl.int64)
        normalize_rows(m_base + row_tok * stride_mn, u_base + row_tok * C, rows < N, C, stride_mc,
                       stride_uc=1, ACC=tl.float32, PRECISE=True, BLOCK_C=BLOCK_CN)
    tl.debug_barrier()

    # ---- 2. energy ----
    for m0 in range(0, N, BLOCK_M):
        energy_rows(u_base, e_ws, m0 + tl.arange(0, BLOCK_M), N, C, n_float, margin, sigma, scale,
                    stride_un=C, stride_uc=1, stride_en=1, KERNEL=KERNEL, ACC=tl.float32, PRECISE=True,
                    LIBDEVICE=LIBDEVICE, BLOCK_N=BLOCK_M, BLOCK_C=BLOCK_C)
    tl.debug_barrier()

    # ---- 3. rank: pi = tokens by energy descending, ties to the lower index ----
    idx = tl.arange(0, BLOCK_T)
    tok_ok = idx < N
    energies = tl.load(e_ws + idx, mask=tok_ok, other=0.0)
    pi = desc_order(energies, idx, tok_ok, BITONIC)
    tl.store(pi_ws + idx, pi)
    tl.debug_barrier()

    # ---- 4. split + matching: A and B are strided runs of pi, M[0::2] and M[1::2] (bsm:
    # pi[0::2] and pi[1::2]) or M[:r] and M[r:2r] (text) ----
    if VARIANT == VARIANT_BSM:
        NA = (N + 1) // 2
        NB = N // 2
    else:
        NA = R
        NB = R
    if VARIANT == VARIANT_TEXT:
        b_list = pi_ws + R
        step = 1
    else:
        b_list = pi_ws + 1
        step = 2
    for m0 in range(0, NA, BLOCK_M):
        match_rows(u_base, m0 + tl.arange(0, BLOCK_M), pi_ws, step, NA, b_list, step, NB, C,
                   stride_un=C, stride_uc=1, best_out=best_ws, stride_sn=1, dst_out=dst_ws, stride_dn=1,
                   MASK_ROW0=False, MASK_COL0=False, ACC=tl.float32, BLOCK_N=BLOCK_M, BLOCK_C=BLOCK_C)
    tl.debug_barrier()

    # ---- 5. every token's slot; sources (is_src) and heads (is_head) ----
    # Vectors "1" cover the ranking positions (pitome/pitome_text) or the A set in edge
    # order (bsm); vectors "2" cover the Bset of bsm (unused otherwise).
    if VARIANT == VARIANT_BSM:
        a_ok = idx < NA
        best = tl.load(best_ws + idx, mask=a_ok, other=0.0)
        edge = desc_order(best, idx, a_ok, BITONIC)  # edge[q] = A position
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
        if VARIANT == VARIANT_TEXT:  # A = M[:r], B = M[r:2r]
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
    if VARIANT == VARIANT_BSM:
        h2 = tl.load(off_out + slot2, mask=is_head2, other=0)
        tl.store(mem_out + h2, tok2, mask=is_head2)
    # distinct keys: padding entries get distinct values above every real key
    keys = sort_distinct(tl.where(is_src1, slot1 * T + tok1, 2147483647 - BLOCK_T + idx), BITONIC)
    d = keys // T
    s = keys % T
    tl.store(mem_out + d + 1 + idx, s, mask=idx < R)


def supported(metric: torch.Tensor, r: int, variant: str, class_token: bool) -> bool:
    """True when ``plan_fused`` serves this call (else the multi-launch path does)."""
    B, T, _ = metric.shape
    n = T - int(class_token)
    return (variant in FUSED_VARIANTS and metric.dtype in FUSED_DTYPES and B > 0
            and 1 <= n <= FUSED_MAX_T and 1 <= int(r) and 2 * int(r) <= n)


def _launch_options(arch, block_t: int) -> dict:
    """One CTA of 16 warps per batch element. ptxas, left to itself, capped the kernel at 64
    registers and spilled on sm_80, and on sm_90/sm_100 for BLOCK_T <= 32; there it gets
    128 registers per thread (``python -m pitome_kernels compile-check``)."""
    if arch is None or arch < 90 or block_t <= 32:
        return {"num_warps": 16, "maxnreg": 128}
    return {"num_warps": 16}


def plan_fused(metric, r, variant, margin, class_token, *, bitonic=None):
    """``(slot, offsets, members)`` int32 in one launch; requires ``supported(...)``.

    ``bitonic``: sort with ``tl.sort`` (True) or the counting sort (False); by default
    ``launch.use_bitonic()``: ``tl.sort`` unless Triton runs through its CPU interpreter.
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
    u = torch.empty((B, N, C), dtype=torch.float32, device=device)
    wsf = torch.empty((B, 2, block_t), dtype=torch.float32, device=device)
    wsi = torch.empty((B, 2, block_t), dtype=torch.int32, device=device)
    slot = torch.empty((B, T), dtype=torch.int32, device=device)
    offsets = torch.empty((B, t_out + 1), dtype=torch.int32, device=device)
    members = torch.empty((B, T), dtype=torch.int32, device=device)
    kernel, sigma, scale = epilogue_args(margin, "gauss" if variant == "pitome_text" else "elu")
    _fused_plan_kernel[(B,)](
        m, u, wsf, wsi, slot, offsets, members,
        N, C, r, T, t_out, float(N), float(margin), sigma, scale,
        m.stride(0), m.stride(1), m.stride(2),
        VARIANT=FUSED_VARIANTS[variant], KERNEL=kernel, OFF=off, LIBDEVICE=use_libdevice(),
        BITONIC=use_bitonic() if bitonic is None else bool(bitonic),
        BLOCK_T=block_t, BLOCK_M=token_tile(N), BLOCK_CN=norm_chunk(C), BLOCK_C=dot_chunk(C),
        **_launch_options(gpu_arch(device), block_t),
    )
    return slot, offsets, members
