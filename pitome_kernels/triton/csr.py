"""The plan tensors ``(slot, offsets, members)`` assembled from each output slot's head
token and each source's slot (the multi-launch path's last step)."""

import torch
import triton
import triton.language as tl


@triton.jit(do_not_specialize=["T", "T_OUT", "R", "SEARCH_STEPS"])  # token counts: one binary for every T
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


def to_csr(heads, sources, source_slots, tokens, class_token):
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
    """The plan of ``r = 0``: every token a group of one, in place."""
    ar = torch.arange(tokens + 1, dtype=torch.int32, device=device).expand(batch, -1)
    return ar[:, :-1].contiguous(), ar.contiguous(), ar[:, :-1].contiguous()
