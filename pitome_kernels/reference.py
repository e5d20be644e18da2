"""The PiToMe semantics in plain PyTorch, written line by line from SPEC.md.

This module is the oracle of every test. It is never optimised and never imported by
the fast backends. Every function here has the same signature as the matching function
of every backend (see ``pitome_kernels/backends.py``):

- ``energy(metric, margin, kernel, class_token) -> float32 [B, T']``
- ``plan(metric, r, variant, margin, class_token, distill_token) -> (slot, offsets, members)``
- ``merge(x, slot, offsets, members, mode) -> [B, T_out, K]``
- ``merge_backward(grad_out, x, out, slot, offsets, members, mode) -> [B, T, K]``
- ``merge_wavg(x, size, slot, offsets, members) -> (x_out, size_out)``
- ``merge_wavg_backward(grad_out, size, size_out, slot, offsets, members) -> [B, T, K]``
- ``unmerge(y, slot, offsets, members) -> [B, T, K]``

A plan is three int32 tensors: ``slot[B, T]`` (output position of every input token),
``offsets[B, T_out + 1]`` and ``members[B, T]`` (the input tokens of output ``g`` are
``members[offsets[g]:offsets[g + 1]]``, the group's head first, then its sources in
ascending token index). Arguments are assumed valid (the op layer checks them).
"""

import math

import torch
import torch.nn.functional as F

__all__ = [
    "similarity",
    "energy",
    "plan",
    "merge",
    "merge_backward",
    "merge_wavg",
    "merge_wavg_backward",
    "unmerge",
]


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """Half precision is computed in float32; float32 and float64 stay as they are."""
    return torch.promote_types(t.dtype, torch.float32)


def similarity(metric: torch.Tensor) -> torch.Tensor:
    """``S = u @ u^T`` with ``u = metric / max(||metric||, 1e-12)``: ``[B, N, C] -> [B, N, N]``."""
    u = F.normalize(metric.to(_compute_dtype(metric)), p=2, dim=-1, eps=1e-12)
    return _dot_products(u, u)


def _dot_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b^T`` (``[B, M, C] x [B, N, C] -> [B, M, N]``) with every entry summed in the same
    order, so that equal rows give equal bits and the result is exactly symmetric (a matmul's
    blocking may round two equal rows' products differently and so decide an exact tie)."""
    rows = max(1, (1 << 22) // max(1, b.shape[1] * a.shape[2]))
    return torch.cat([(a[:, i : i + rows, None, :] * b[:, None, :, :]).sum(-1)
                      for i in range(0, a.shape[1], rows)], dim=1) if a.shape[1] else a.new_zeros(a.shape[0], 0, b.shape[1])


def _energy_from_similarity(sim: torch.Tensor, margin: float, kernel: str) -> torch.Tensor:
    if kernel == "elu":
        return F.elu(sim - margin, alpha=1.0).mean(dim=-1)
    sigma = 1.0 - margin  # kernel == "gauss"
    density = torch.exp(-0.5 * ((1.0 - sim) / sigma) ** 2).mean(dim=-1)
    return density / (sigma * math.sqrt(2.0 * math.pi))


def energy(metric: torch.Tensor, margin: float, kernel: str, class_token: bool) -> torch.Tensor:
    """Energy of every mergeable token: float32 ``[B, T']``."""
    if class_token:
        metric = metric[:, 1:]
    return _energy_from_similarity(similarity(metric), margin, kernel).float()


def _rank_by_energy(sim: torch.Tensor, margin: float, kernel: str) -> torch.Tensor:
    """``pi``: token indices sorted by energy, highest first, ties to the lower index."""
    e = _energy_from_similarity(sim, margin, kernel).float()
    return torch.sort(e, dim=-1, descending=True, stable=True).indices


def _block(sim: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``sim[b, rows[b]][:, cols[b]]`` for every batch element."""
    b = torch.arange(sim.shape[0], device=sim.device)[:, None, None]
    return sim[b, rows[:, :, None], cols[:, None, :]]


def _best_first(best: torch.Tensor) -> torch.Tensor:
    """Positions ordered by ``best`` descending, ties to the lower position."""
    return torch.sort(best, dim=-1, descending=True, stable=True).indices


def _plan_pitome(metric, r, margin, class_token, text):
    off = int(class_token)
    sim = similarity(metric[:, off:])
    pi = _rank_by_energy(sim, margin, "gauss" if text else "elu")
    merge_set, protected = pi[:, : 2 * r], pi[:, 2 * r :]
    if text:
        a, b = merge_set[:, :r], merge_set[:, r:]
    else:
        a, b = merge_set[:, 0::2], merge_set[:, 1::2]
    dst = _block(sim, a, b).argmax(dim=-1)
    heads = torch.cat([protected, b], dim=1) + off
    sources = a + off
    source_slots = off + protected.shape[1] + dst
    return heads, sources, source_slots


def _plan_pitome_bsm(metric, r, margin, class_token):
    off = int(class_token)
    sim = similarity(metric[:, off:])
    pi = _rank_by_energy(sim, margin, "elu")
    a, b = pi[:, 0::2], pi[:, 1::2]
    scores = _block(sim, a, b)
    best, dst = scores.max(dim=-1).values, scores.argmax(dim=-1)
    edge = _best_first(best)
    src, unm = edge[:, :r], edge[:, r:]
    heads = torch.cat([a.gather(1, unm), b], dim=1) + off
    sources = a.gather(1, src) + off
    source_slots = off + unm.shape[1] + dst.gather(1, src)
    return heads, sources, source_slots


def _plan_tome(metric, r, class_token, distill_token):
    batch, tokens, _ = metric.shape
    u = F.normalize(metric.to(_compute_dtype(metric)), p=2, dim=-1, eps=1e-12)
    a_pos = torch.arange(0, tokens, 2, device=metric.device)
    b_pos = torch.arange(1, tokens, 2, device=metric.device)
    scores = _dot_products(u[:, a_pos], u[:, b_pos])
    if class_token:
        scores[:, 0, :] = -math.inf
    if distill_token:
        scores[:, :, 0] = -math.inf
    best = scores.max(dim=-1).values
    dst = scores.argmax(dim=-1)
    edge = _best_first(best)
    src, unm = edge[:, :r], edge[:, r:]
    if class_token:
        unm = unm.sort(dim=-1).values
    n_unm = unm.shape[1]
    b_tokens = b_pos.expand(batch, -1)
    unm_tokens = a_pos[unm]
    # slot of each Bset member, in the output order of SPEC.md
    b_slots = n_unm + torch.arange(b_pos.numel(), device=metric.device)
    if distill_token:
        heads = torch.cat([unm_tokens[:, :1], b_tokens[:, :1], unm_tokens[:, 1:], b_tokens[:, 1:]], 1)
        b_slots[0] = 1
    else:
        heads = torch.cat([unm_tokens, b_tokens], dim=1)
    source_slots = b_slots[dst.gather(1, src)]
    return heads, a_pos[src], source_slots


def _to_csr(heads, sources, source_slots, tokens, class_token):
    """Plan tensors from the head token of every output slot and the slot of every source."""
    batch = heads.shape[0]
    device = heads.device
    if class_token:
        heads = torch.cat([torch.zeros(batch, 1, dtype=heads.dtype, device=device), heads], 1)
    num_out = heads.shape[1]
    slot = torch.empty(batch, tokens, dtype=torch.long, device=device)
    slot.scatter_(1, heads, torch.arange(num_out, device=device).expand(batch, -1))
    slot.scatter_(1, sources, source_slots)
    is_source = torch.zeros(batch, tokens, dtype=torch.long, device=device)
    is_source.scatter_(1, sources, 1)
    # head first, then sources by ascending token index
    key = (slot * 2 + is_source) * tokens + torch.arange(tokens, device=device)
    members = key.argsort(dim=-1)
    counts = torch.zeros(batch, num_out, dtype=torch.long, device=device)
    counts.scatter_add_(1, slot, torch.ones_like(slot))
    offsets = F.pad(counts.cumsum(dim=-1), (1, 0))
    return slot.int(), offsets.int(), members.int()


def identity_plan(batch: int, tokens: int, device) -> tuple:
    """The plan of ``r = 0``: every token its own group, in place."""
    ar = torch.arange(tokens, dtype=torch.int32, device=device).expand(batch, -1).contiguous()
    offsets = torch.arange(tokens + 1, dtype=torch.int32, device=device).expand(batch, -1).contiguous()
    return ar, offsets, ar.clone()


def plan(metric, r, variant, margin, class_token, distill_token):
    """Plan tensors ``(slot, offsets, members)`` for one layer (see the module docstring)."""
    batch, tokens, _ = metric.shape
    if variant == "tome":
        protected = int(class_token) + int(distill_token)
        r = min(r, (tokens - protected) // 2)
    if r <= 0:
        return identity_plan(batch, tokens, metric.device)
    with torch.no_grad():
        if variant == "tome":
            heads, sources, slots = _plan_tome(metric, r, class_token, distill_token)
            return _to_csr(heads, sources, slots, tokens, class_token=False)
        if variant == "pitome_bsm":
            heads, sources, slots = _plan_pitome_bsm(metric, r, margin, class_token)
        else:
            heads, sources, slots = _plan_pitome(metric, r, margin, class_token, variant == "pitome_text")
        return _to_csr(heads, sources, slots, tokens, class_token)


def _gather_tokens(y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``y[b, index[b, i], :]`` for every batch element."""
    return y.gather(1, index.long()[:, :, None].expand(-1, -1, y.shape[-1]))


def _heads(offsets: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    return members.long().gather(1, offsets[:, :-1].long())


def _counts(offsets: torch.Tensor) -> torch.Tensor:
    return (offsets[:, 1:] - offsets[:, :-1]).long()


def _group_reduce(y: torch.Tensor, slot: torch.Tensor, num_out: int, reduce: str) -> torch.Tensor:
    index = slot.long()[:, :, None].expand(-1, -1, y.shape[-1])
    out = torch.zeros(y.shape[0], num_out, y.shape[-1], dtype=y.dtype, device=y.device)
    return out.scatter_reduce(1, index, y, reduce=reduce, include_self=False)


def merge(x, slot, offsets, members, mode):
    """Reduce every group of the plan: ``[B, T, K] -> [B, T_out, K]``."""
    num_out = offsets.shape[1] - 1
    if mode == "prune":
        return _gather_tokens(x, _heads(offsets, members))
    y = x.to(_compute_dtype(x))
    reduce = {"sum": "sum", "mean": "mean", "amax": "amax"}[mode]
    return _group_reduce(y, slot, num_out, reduce).to(x.dtype)


def merge_backward(grad_out, x, out, slot, offsets, members, mode):
    """Gradient of ``merge`` with respect to ``x``.

    ``amax`` shares the gradient evenly among the members equal to the maximum, like
    ``torch.scatter_reduce``.
    """
    g = _gather_tokens(grad_out.to(_compute_dtype(grad_out)), slot)
    if mode == "sum":
        pass
    elif mode == "mean":
        g = g / _counts(offsets).gather(1, slot.long())[:, :, None]
    elif mode == "prune":
        is_head = slot.new_zeros(slot.shape, dtype=torch.bool).scatter_(1, _heads(offsets, members), True)
        g = g * is_head[:, :, None]
    else:  # amax
        winners = (x == _gather_tokens(out, slot)).to(g.dtype)
        ties = _group_reduce(winners, slot, offsets.shape[1] - 1, "sum")
        g = g * winners / _gather_tokens(ties, slot)
    return g.to(x.dtype)


def merge_wavg(x, size, slot, offsets, members):
    """Size-weighted average: ``x' = sum(size * x) / sum(size)``, ``size' = sum(size)``."""
    num_out = offsets.shape[1] - 1
    y = x.to(_compute_dtype(x))
    s = y.new_ones(y.shape[0], y.shape[1], 1) if size is None else size.to(y.dtype)
    size_out = _group_reduce(s, slot, num_out, "sum")
    x_out = _group_reduce(y * s, slot, num_out, "sum") / size_out
    return x_out.to(x.dtype), size_out.to(x.dtype if size is None else size.dtype)


def merge_wavg_backward(grad_out, size, size_out, slot, offsets, members):
    """``dL/dx_i = size_i / size'_g * dL/dx'_g`` (sizes get no gradient)."""
    g = _gather_tokens(grad_out.to(_compute_dtype(grad_out)), slot)
    weight = 1.0 / _gather_tokens(size_out.to(g.dtype), slot)
    if size is not None:
        weight = weight * size.to(g.dtype)
    return (g * weight).to(grad_out.dtype)


def unmerge(y, slot, offsets, members):
    """Copy every merged token back to all its members: ``[B, T_out, K] -> [B, T, K]``."""
    return _gather_tokens(y, slot)
