"""Plans: energy ranking, split, matching, and the CSR assembly kernel.

Everything runs on the device with shapes that follow from ``T`` and ``r`` alone (no
``.item()``, no host copies), so a plan captures in a CUDA graph. Ranking uses
``torch.sort(stable=True)`` (ties to the lower index); matching is the tiled running
argmax of ``matching.py``; the CSR tensors are written by ``_csr_kernel``.

``plan`` takes the single-launch path of ``fused.py`` for ``pitome``, ``pitome_text`` and
``pitome_bsm`` when ``1 <= r``, ``2r <= T' <= fused.FUSED_MAX_T`` and the metric is
float32/float16/bfloat16; otherwise (``tome``, float64, larger ``T'``) the multi-launch
path above. ``plan_multi_launch`` and ``plan_fused`` force either path.
"""

import torch
import triton
import triton.language as tl

from .energy import energy_from_unit, normalize
from .fused import plan_fused as _plan_fused_kernel
from .fused import supported as fused_supported
from .matching import match

VARIANTS = ("pitome", "pitome_text", "pitome_bsm", "tome")


@triton.jit
def _csr_kernel(
    heads_ptr, keys_ptr, slot_ptr, offsets_ptr, members_ptr,
    T, T_OUT, R, SEARCH_STEPS,
    HEAD_SHIFT: tl.constexpr, BLOCK: tl.constexpr,
):
    """One program = one block of output slots and one block of sources of one batch row.

    ``keys[k] = dst_k * T + src_k`` sorted ascending: source ``k`` goes to
    ``members[dst_k + 1 + k]`` (its group's head sits at ``offsets[g] = g + lo(g)`` with
    ``lo(g) = #{k : dst_k < g}``, found by binary search).
    """
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    keys = keys_ptr + b * R
    slot = slot_ptr + b * T
    members = members_ptr + b * T
    # --- output slots g (and offsets[T_OUT] = T) ---
    g = pid * BLOCK + tl.arange(0, BLOCK)
    g_ok = g <= T_OUT
    target = g.to(tl.int64) * T
    lo = tl.zeros((BLOCK,), dtype=tl.int32)
    hi = tl.zeros((BLOCK,), dtype=tl.int32) + R
    for _ in range(SEARCH_STEPS):
        active = lo < hi
        mid = (lo + hi) // 2
        v = tl.load(keys + mid, mask=active & g_ok, other=0)
        go_right = active & (v < target)
        lo = tl.where(go_right, mid + 1, lo)
        hi = tl.where(active & (~go_right), mid, hi)
    off = g + lo
    tl.store(offsets_ptr + b * (T_OUT + 1) + g, off, mask=g_ok)
    h_ok = g < T_OUT
    if HEAD_SHIFT:  # class token: slot 0 is token 0, the rest come from ``heads``
        h = tl.load(heads_ptr + b * (T_OUT - 1) + g - 1, mask=h_ok & (g > 0), other=0).to(tl.int32) + 1
        h = tl.where(g == 0, 0, h)
    else:
        h = tl.load(heads_ptr + b * T_OUT + g, mask=h_ok, other=0).to(tl.int32)
    tl.store(members + off, h, mask=h_ok)
    tl.store(slot + h, g, mask=h_ok)
    # --- sources k ---
    k = pid * BLOCK + tl.arange(0, BLOCK)
    k_ok = k < R
    key = tl.load(keys + k, mask=k_ok, other=0)
    d = (key // T).to(tl.int32)
    s = (key % T).to(tl.int32)
    tl.store(members + d + 1 + k, s, mask=k_ok)
    tl.store(slot + s, d, mask=k_ok)


def _to_csr(heads, sources, source_slots, tokens, class_token):
    """``(slot, offsets, members)`` int32 from the head of every slot and each source's slot.

    ``heads``/``sources`` hold token indices relative to the first mergeable token (the
    class token, when present, is slot 0 and is added here).
    """
    B = heads.shape[0]
    R = sources.shape[1]
    num_out = heads.shape[1] + int(class_token)
    off = int(class_token)
    device = heads.device
    keys = (source_slots.long() * tokens + (sources.long() + off)).sort(dim=-1).values.contiguous()
    heads = heads.contiguous()
    slot = torch.empty((B, tokens), dtype=torch.int32, device=device)
    offsets = torch.empty((B, num_out + 1), dtype=torch.int32, device=device)
    members = torch.empty((B, tokens), dtype=torch.int32, device=device)
    if B == 0:
        return slot, offsets, members
    BLOCK = 128
    grid = (triton.cdiv(max(num_out + 1, R), BLOCK), B)
    _csr_kernel[grid](
        heads, keys, slot, offsets, members,
        tokens, num_out, R, max(R, 1).bit_length() + 1,
        HEAD_SHIFT=bool(class_token), BLOCK=BLOCK,
    )
    return slot, offsets, members


def identity_plan(batch: int, tokens: int, device):
    ar = torch.arange(tokens, dtype=torch.int32, device=device).expand(batch, -1).contiguous()
    offsets = torch.arange(tokens + 1, dtype=torch.int32, device=device).expand(batch, -1).contiguous()
    return ar, offsets, ar.clone()


def _rank(u, margin, kernel):
    e = energy_from_unit(u, margin, kernel)
    return torch.sort(e, dim=-1, descending=True, stable=True).indices


def _plan_pitome(metric, r, margin, class_token, text):
    off = int(class_token)
    u = normalize(metric[:, off:])
    n = u.shape[1]
    pi = _rank(u, margin, "gauss" if text else "elu")
    merge_set, protected = pi[:, : 2 * r], pi[:, 2 * r:]
    if text:
        a, b = merge_set[:, :r], merge_set[:, r:]
    else:
        a, b = merge_set[:, 0::2], merge_set[:, 1::2]
    _, dst = match(u, a, b)
    heads = torch.cat([protected, b], dim=1)
    source_slots = off + (n - 2 * r) + dst
    return heads, a, source_slots


def _plan_pitome_bsm(metric, r, margin, class_token):
    off = int(class_token)
    u = normalize(metric[:, off:])
    pi = _rank(u, margin, "elu")
    a, b = pi[:, 0::2], pi[:, 1::2]
    best, dst = match(u, a, b)
    edge = torch.sort(best, dim=-1, descending=True, stable=True).indices
    src, unm = edge[:, :r], edge[:, r:]
    heads = torch.cat([a.gather(1, unm), b], dim=1)
    source_slots = off + unm.shape[1] + dst.gather(1, src)
    return heads, a.gather(1, src), source_slots


def _plan_tome(metric, r, class_token, distill_token):
    batch, tokens, _ = metric.shape
    device = metric.device
    u = normalize(metric)
    a_pos = torch.arange(0, tokens, 2, device=device)
    b_pos = torch.arange(1, tokens, 2, device=device)
    best, dst = match(u, a_pos.expand(batch, -1), b_pos.expand(batch, -1),
                      mask_row0=class_token, mask_col0=distill_token)
    edge = torch.sort(best, dim=-1, descending=True, stable=True).indices
    src, unm = edge[:, :r], edge[:, r:]
    if class_token:
        unm = unm.sort(dim=-1).values
    n_unm = unm.shape[1]
    b_tokens = b_pos.expand(batch, -1)
    unm_tokens = a_pos[unm]
    b_slots = n_unm + torch.arange(b_pos.numel(), device=device)
    if distill_token:
        heads = torch.cat([unm_tokens[:, :1], b_tokens[:, :1], unm_tokens[:, 1:], b_tokens[:, 1:]], 1)
        b_slots[0] = 1
    else:
        heads = torch.cat([unm_tokens, b_tokens], dim=1)
    source_slots = b_slots[dst.gather(1, src)]
    return heads, a_pos[src], source_slots


def plan(metric, r, variant, margin, class_token, distill_token):
    """Plan tensors ``(slot, offsets, members)`` (int32) for one layer."""
    if fused_supported(metric, r, variant, class_token):
        return plan_fused(metric, r, variant, margin, class_token, distill_token)
    return plan_multi_launch(metric, r, variant, margin, class_token, distill_token)


def plan_fused(metric, r, variant, margin, class_token, distill_token):
    """The single-launch path (``fused.py``); only where ``fused.supported`` holds."""
    with torch.no_grad():
        return _plan_fused_kernel(metric.detach(), r, variant, margin, class_token)


def plan_multi_launch(metric, r, variant, margin, class_token, distill_token):
    """The multi-launch path (normalise, energy, sort, matching, sort, CSR), any shape."""
    batch, tokens, _ = metric.shape
    r = int(r)
    if variant == "tome":
        protected = int(class_token) + int(distill_token)
        r = min(r, (tokens - protected) // 2)
    if r <= 0:
        return identity_plan(batch, tokens, metric.device)
    with torch.no_grad():
        metric = metric.detach()
        if variant == "tome":
            heads, sources, slots = _plan_tome(metric, r, class_token, distill_token)
            return _to_csr(heads, sources, slots, tokens, class_token=False)
        if variant == "pitome_bsm":
            heads, sources, slots = _plan_pitome_bsm(metric, r, margin, class_token)
        elif variant in ("pitome", "pitome_text"):
            heads, sources, slots = _plan_pitome(metric, r, margin, class_token, variant == "pitome_text")
        else:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        return _to_csr(heads, sources, slots, tokens, class_token)
