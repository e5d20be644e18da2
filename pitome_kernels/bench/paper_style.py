"""The baseline every speed claim is measured against: PiToMe written the way the paper's
code writes it — a full T x T similarity, elementwise passes, argsort, gathers,
``scatter_reduce`` and concatenations, each a separate PyTorch op.

Plans (SPEC.md): ``plan`` (``pitome``), ``plan_text`` (``pitome_text``) and ``plan_bsm``
(``pitome_bsm``). The first two give ``(protected, sources, destinations, dst index)``,
merged by ``merge``; ``plan_bsm`` gives ``(A, Bset, unmerged, merged, dst index)``, merged
by ``merge_bsm``. Indices count the mergeable tokens only (the class token left out).
"""

import math

import torch
import torch.nn.functional as F


def _similarity(metric: torch.Tensor, class_token: bool) -> torch.Tensor:
    if class_token:
        metric = metric[:, 1:]
    u = F.normalize(metric, p=2, dim=-1)
    return u @ u.transpose(-1, -2)


def _match(sim: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """For every source, the index in ``dst`` of its most similar destination."""
    batch, tokens, _ = sim.shape
    scores = sim.gather(-1, dst.unsqueeze(-2).expand(batch, tokens, dst.shape[-1]))
    scores = scores.gather(-2, src.unsqueeze(-1).expand(batch, src.shape[-1], dst.shape[-1]))
    return scores.argmax(dim=-1)


def plan(metric: torch.Tensor, r: int, margin: float, class_token: bool):
    """Indices of the ``pitome`` plan: (protected, sources, destinations, dst index)."""
    sim = _similarity(metric, class_token)
    energy = F.elu(sim - margin).mean(dim=-1)
    order = torch.argsort(energy, dim=-1, descending=True)
    mergeable, protected = order[:, : 2 * r], order[:, 2 * r :]
    src, dst = mergeable[:, 0::2], mergeable[:, 1::2]
    return protected, src, dst, _match(sim, src, dst)


def plan_text(metric: torch.Tensor, r: int, margin: float, class_token: bool):
    """Indices of the ``pitome_text`` plan (gaussian energy, the higher half of the merge set
    merges into the lower half): (protected, sources, destinations, dst index)."""
    sim = _similarity(metric, class_token)
    sigma = 1.0 - margin
    energy = torch.exp(-0.5 * ((1.0 - sim) / sigma) ** 2).mean(dim=-1) / (sigma * math.sqrt(2.0 * math.pi))
    order = torch.argsort(energy, dim=-1, descending=True)
    mergeable, protected = order[:, : 2 * r], order[:, 2 * r :]
    src, dst = mergeable[:, :r], mergeable[:, r:]
    return protected, src, dst, _match(sim, src, dst)


def plan_bsm(metric: torch.Tensor, r: int, margin: float, class_token: bool):
    """Indices of the ``pitome_bsm`` plan: (A, Bset, unmerged rows of A, merged rows of A,
    dst index of each merged row)."""
    sim = _similarity(metric, class_token)
    batch = sim.shape[0]
    energy = F.elu(sim - margin).mean(dim=-1)
    order = torch.argsort(energy, dim=-1, descending=True)
    a_idx, b_idx = order[:, 0::2], order[:, 1::2]
    rows = torch.arange(batch, device=sim.device)[:, None]
    scores = sim[rows, a_idx].gather(-1, b_idx.unsqueeze(-2).expand(batch, a_idx.shape[-1], b_idx.shape[-1]))
    node_max, node_idx = scores.max(dim=-1)
    edge_idx = node_max.argsort(dim=-1, descending=True)
    unm_idx, src_idx = edge_idx[:, r:], edge_idx[:, :r]
    return a_idx, b_idx, unm_idx, src_idx, node_idx.gather(-1, src_idx)


def merge(indices, x: torch.Tensor, mode: str, class_token: bool) -> torch.Tensor:
    """Reduce the groups of a ``plan`` / ``plan_text`` plan (``mode``: sum, mean, amax)."""
    protected, src_idx, dst_idx, match = indices
    if class_token:
        cls, x = x[:, :1], x[:, 1:]
    batch, _, dim = x.shape
    rows = torch.arange(batch, device=x.device)[:, None]
    kept = x[rows, protected]
    src, dst = x[rows, src_idx], x[rows, dst_idx]
    dst = dst.scatter_reduce(-2, match[..., None].expand(-1, -1, dim), src, reduce=mode)
    parts = [cls, kept, dst] if class_token else [kept, dst]
    return torch.cat(parts, dim=1)


def merge_bsm(indices, x: torch.Tensor, mode: str, class_token: bool) -> torch.Tensor:
    """Reduce the groups of a ``plan_bsm`` plan (``mode``: sum, mean, amax)."""
    a_idx, b_idx, unm_idx, src_idx, dst_idx = indices
    if class_token:
        cls, x = x[:, :1], x[:, 1:]
    batch, _, dim = x.shape
    rows = torch.arange(batch, device=x.device)[:, None]
    src, dst = x[rows, a_idx], x[rows, b_idx]
    unm = src.gather(-2, unm_idx[..., None].expand(-1, -1, dim))
    src = src.gather(-2, src_idx[..., None].expand(-1, -1, dim))
    dst = dst.scatter_reduce(-2, dst_idx[..., None].expand(-1, -1, dim), src, reduce=mode)
    parts = [cls, unm, dst] if class_token else [unm, dst]
    return torch.cat(parts, dim=1)


def merge_wavg(indices, x: torch.Tensor, size: torch.Tensor, class_token: bool):
    x = merge(indices, x * size, "sum", class_token)
    size = merge(indices, size, "sum", class_token)
    return x / size, size


def layer(metric, x, size, r: int, margin: float, class_token: bool):
    """Plan then size-weighted merge: one PiToMe layer."""
    with torch.no_grad():
        indices = plan(metric, r, margin, class_token)
    return merge_wavg(indices, x, size, class_token)
