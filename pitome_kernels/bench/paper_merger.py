"""``PaperStyleMerger``: the merger protocol of ``patch`` (``plan``, ``merge_wavg``,
``merge``, ``source``) on the paper-style code of ``paper_style.py``, so a whole model can
run PiToMe the way the paper's code runs it."""

from dataclasses import dataclass

import torch

from ..patch.merger import compose_source
from . import paper_style

_PLANS = {"pitome": paper_style.plan, "pitome_text": paper_style.plan_text, "pitome_bsm": paper_style.plan_bsm}


@dataclass(frozen=True)
class PaperPlan:
    """One layer's paper-style plan: the variant, its index tuple (``paper_style``), whether
    token 0 is a class token, and ``tokens``, the layer's input token count."""

    variant: str
    indices: tuple
    class_token: bool
    tokens: int

    @property
    def slot(self) -> torch.Tensor:
        """int32 ``[B, T]``: the output position of every input token."""
        off = int(self.class_token)
        if self.variant == "pitome_bsm":
            a_idx, b_idx, unm_idx, src_idx, dst_idx = self.indices
            heads = [a_idx.gather(1, unm_idx), b_idx]
            sources, dst = a_idx.gather(1, src_idx), dst_idx
        else:
            protected, sources, b_idx, dst = self.indices
            heads = [protected, b_idx]
        heads = torch.cat(heads, dim=1) + off
        batch, kept = heads.shape
        slot = torch.zeros(batch, self.tokens, dtype=torch.long, device=heads.device)  # class token: slot 0
        slot.scatter_(1, heads, off + torch.arange(kept, device=heads.device).expand(batch, -1))
        slot.scatter_(1, sources + off, off + kept - b_idx.shape[1] + dst)
        return slot.int()


class PaperStyleMerger:
    """Plans and merges with the paper-style PyTorch code (``pitome``, ``pitome_text``,
    ``pitome_bsm``; ``tome`` is refused: see ``tome_style.ToMeStyleMerger``)."""

    name = "paper-style"

    def plan(self, metric: torch.Tensor, r: int, variant: str, margin: float, class_token: bool) -> PaperPlan:
        if variant not in _PLANS:
            raise ValueError(f"variant must be one of {tuple(_PLANS)} for the paper-style code, got {variant!r}")
        with torch.no_grad():
            indices = _PLANS[variant](metric, r, margin, class_token)
        return PaperPlan(variant, indices, class_token, metric.shape[1])

    def merge(self, plan: PaperPlan, x: torch.Tensor, mode: str) -> torch.Tensor:
        """``x`` ``[B, T, K]`` -> ``[B, T - r, K]``; ``mode``: sum, mean or amax."""
        if mode not in ("sum", "mean", "amax"):
            raise ValueError(f"mode must be 'sum', 'mean' or 'amax', got {mode!r}")
        merge = paper_style.merge_bsm if plan.variant == "pitome_bsm" else paper_style.merge
        return merge(plan.indices, x, mode, plan.class_token)

    def merge_wavg(self, plan: PaperPlan, x: torch.Tensor, size: torch.Tensor | None):
        """``(sum(size * x) / sum(size), sum(size))`` over every group; ``size=None``: ones."""
        if size is None:
            size = torch.ones_like(x[..., :1])
        x = self.merge(plan, x * size, "sum")
        size = self.merge(plan, size, "sum")
        return x / size, size

    def source(self, plan: PaperPlan, source_map: torch.Tensor | None) -> torch.Tensor:
        """int32 ``[B, T0]``: the output token holding each original token after ``plan``."""
        return compose_source(plan.slot, source_map)
