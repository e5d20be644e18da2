"""ToMe's bipartite soft matching written the way ToMe's own code writes it (Bolya et al.,
ICLR 2023): even tokens against odd tokens, one ``a @ b^T``, a max and an argsort, then
gathers, ``scatter_reduce`` and a concatenation per merge — the baseline that ``variant="tome"``
of this package is timed against in whole models.

Output order (SPEC.md, ``tome``): ``[unmerged A, Bset]``; with a class token the unmerged A
tokens are in ascending position, so the class token stays first.
"""

import math
from dataclasses import dataclass

import torch

from ..patch.merger import compose_source


@dataclass(frozen=True)
class ToMePlan:
    """One layer's matching: ``r`` (after the clamp), and for the even tokens (A) the rows
    kept (``unm_idx``), the rows merged (``src_idx``) and the odd token (index in Bset) each
    merged row joins (``dst_idx``); ``tokens`` is the layer's input token count."""

    r: int
    unm_idx: torch.Tensor | None
    src_idx: torch.Tensor | None
    dst_idx: torch.Tensor | None
    tokens: int

    @property
    def slot(self) -> torch.Tensor:
        """int32 ``[B, T]``: the output position of every input token."""
        if self.r == 0:
            raise ValueError("a plan that merges nothing has no slot map; the layer is the identity")
        batch, kept = self.unm_idx.shape
        device = self.unm_idx.device
        odd = torch.arange(1, self.tokens, 2, device=device)
        slot = torch.empty(batch, self.tokens, dtype=torch.long, device=device)
        slot.scatter_(1, 2 * self.unm_idx, torch.arange(kept, device=device).expand(batch, -1))
        slot[:, odd] = kept + torch.arange(odd.numel(), device=device)
        slot.scatter_(1, 2 * self.src_idx, kept + self.dst_idx)
        return slot.int()


def bipartite_soft_matching(metric: torch.Tensor, r: int, class_token: bool = False) -> ToMePlan:
    """Match ``r`` even tokens of ``metric`` ``[B, T, C]`` to odd ones (``r`` is clamped to
    ``(T - protected) // 2``; the class token, when present, never merges)."""
    tokens = metric.shape[1]
    r = min(r, (tokens - int(class_token)) // 2)
    if r <= 0:
        return ToMePlan(0, None, None, None, tokens)
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[..., ::2, :], metric[..., 1::2, :]
        scores = a @ b.transpose(-1, -2)
        if class_token:
            scores[..., 0, :] = -math.inf
        node_max, node_idx = scores.max(dim=-1)
        edge_idx = node_max.argsort(dim=-1, descending=True)
        unm_idx, src_idx = edge_idx[..., r:], edge_idx[..., :r]
        dst_idx = node_idx.gather(-1, src_idx)
        if class_token:
            unm_idx = unm_idx.sort(dim=-1).values
    return ToMePlan(r, unm_idx, src_idx, dst_idx, tokens)


def merge(plan: ToMePlan, x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Reduce every group of ``plan``: ``[B, T, K]`` -> ``[B, T - r, K]`` (sum, mean, amax)."""
    if plan.r == 0:
        return x
    src, dst = x[..., ::2, :], x[..., 1::2, :]
    channels = x.shape[-1]
    unm = src.gather(-2, plan.unm_idx[..., None].expand(-1, -1, channels))
    src = src.gather(-2, plan.src_idx[..., None].expand(-1, -1, channels))
    dst = dst.scatter_reduce(-2, plan.dst_idx[..., None].expand(-1, -1, channels), src, reduce=mode)
    return torch.cat([unm, dst], dim=1)


def merge_wavg(plan: ToMePlan, x: torch.Tensor, size: torch.Tensor | None = None):
    """ToMe's size-weighted average: ``(sum(size * x) / sum(size), sum(size))``."""
    if size is None:
        size = torch.ones_like(x[..., :1])
    x = merge(plan, x * size, "sum")
    size = merge(plan, size, "sum")
    return x / size, size


class ToMeStyleMerger:
    """The merger protocol of ``patch`` on ToMe's code: always ToMe (``variant`` and
    ``margin`` are ignored)."""

    name = "tome-style"

    def plan(self, metric: torch.Tensor, r: int, variant: str, margin: float, class_token: bool) -> ToMePlan:
        return bipartite_soft_matching(metric, r, class_token)

    def merge(self, plan: ToMePlan, x: torch.Tensor, mode: str) -> torch.Tensor:
        if mode not in ("sum", "mean", "amax"):
            raise ValueError(f"mode must be 'sum', 'mean' or 'amax', got {mode!r}")
        return merge(plan, x, mode)

    def merge_wavg(self, plan: ToMePlan, x: torch.Tensor, size: torch.Tensor | None):
        return merge_wavg(plan, x, size)

    def source(self, plan: ToMePlan, source_map: torch.Tensor | None) -> torch.Tensor:
        """int32 ``[B, T0]``: the output token holding each original token after ``plan``."""
        return compose_source(plan.slot, source_map)

