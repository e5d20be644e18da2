"""The public Python API: energy, plan, merge, merge_wavg, unmerge and source tracking.

Each function is a thin wrapper over one op of ``ops.py``, which validates the arguments
(errors name the argument) and runs the chosen backend's kernel.
"""

import math
from fractions import Fraction
from typing import NamedTuple

import torch

from . import _checks
from . import backends as _backends
from . import ops as _ops


class MergePlan(NamedTuple):
    """Which token goes where in one merging layer (immutable; not differentiable).

    - ``slot``: int32 ``[B, T]``, the output position of every input token.
    - ``offsets``: int32 ``[B, T_out + 1]`` and ``members``: int32 ``[B, T]``; the input
      tokens of output ``g`` are ``members[offsets[g]:offsets[g + 1]]``, the group's head
      (the token that keeps its place) first, then its sources in ascending index.
    - ``r``: tokens removed (``T_out = T - r``), after ToMe's clamp for ``variant="tome"``.

    A named tuple rather than a frozen dataclass: it is built on every layer, and a tuple is
    cheaper to build.
    """

    slot: torch.Tensor
    offsets: torch.Tensor
    members: torch.Tensor
    r: int
    variant: str
    class_token: bool

    @property
    def num_tokens(self) -> int:
        return self.slot.shape[1]

    @property
    def num_out(self) -> int:
        return self.offsets.shape[1] - 1

    @property
    def heads(self) -> torch.Tensor:
        """int32 ``[B, T_out]``: the head token of every output slot."""
        return self.members.gather(1, self.offsets[:, :-1].long())

    @property
    def group_sizes(self) -> torch.Tensor:
        """int32 ``[B, T_out]``: how many input tokens every output token merges."""
        return self.offsets[:, 1:] - self.offsets[:, :-1]


_new_tuple = tuple.__new__  # a MergePlan without its generated __new__'s overhead


def ratio_to_r(num_tokens: int, ratio: float, class_token: bool = False) -> int:
    """Tokens removed by a layer keeping ``ratio`` of them: ``floor(T' - T' * ratio)``.

    ``T' = num_tokens - 1`` with a class token. ``ratio >= 1`` removes nothing. The formula
    is evaluated exactly on the decimal ``ratio`` is written as (``0.9`` is nine tenths), in
    integers: under ``torch.compile(dynamic=True)`` a symbolic ``num_tokens`` then gives a
    symbolic ``r`` without a guard on a float.
    """
    if not isinstance(num_tokens, torch.SymInt):
        num_tokens = _checks.integer("num_tokens", num_tokens)
    _checks.flag("class_token", class_token)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise TypeError(f"ratio must be a float, got {type(ratio).__name__}")
    if not 0.0 <= ratio or math.isnan(ratio):
        raise ValueError(f"ratio must be >= 0 (the fraction of tokens kept), got {ratio}")
    mergeable = num_tokens - int(class_token)
    if mergeable < 1:
        raise ValueError(f"num_tokens={num_tokens} leaves no mergeable token (class_token={class_token})")
    if ratio >= 1.0:
        return 0
    kept = Fraction(repr(float(ratio)))
    return mergeable * (kept.denominator - kept.numerator) // kept.denominator


def set_finite_check(enabled: bool) -> None:
    """Make ``plan`` and ``energy`` refuse a metric holding NaN or Inf with a ValueError (for
    debugging: the check reads the metric, which on a GPU waits for it). Off by default, or
    on with ``PITOME_CHECK_FINITE=1``. Without it a non-finite metric still gives a valid
    plan (a partition of the tokens), but which tokens merge is unspecified."""
    _checks.finite_check[0] = _checks.flag("enabled", enabled)


def energy(metric: torch.Tensor, *, margin: float, kernel: str = "elu", class_token: bool = False,
           backend: str = "auto") -> torch.Tensor:
    """Energy of every mergeable token: float32 ``[B, T']`` (high = safe to merge).

    ``metric``: ``[B, T, C]`` floating. ``kernel``: ``"elu"`` (vision) or ``"gauss"`` (text).
    Not differentiable.
    """
    return _ops.energy(_detached(metric), margin, kernel, class_token, backend)


def plan(metric: torch.Tensor, r: int, *, variant: str = "pitome", margin: float = 0.5,
         class_token: bool = False, distill_token: bool = False, backend: str = "auto") -> MergePlan:
    """Build the merge plan of one layer from ``metric`` ``[B, T, C]`` removing ``r`` tokens.

    ``variant``: ``"pitome"``, ``"pitome_text"``, ``"pitome_bsm"`` or ``"tome"`` (SPEC.md).
    ``margin`` is ignored by ``"tome"``.
    """
    slot, offsets, members = _ops.plan(_detached(metric), r, variant, margin, class_token, distill_token, backend)
    # ToMe may clamp r: the plan then removed T - T_out tokens.
    removed = r if type(r) is int and variant != "tome" else slot.shape[1] - offsets.shape[1] + 1
    return _new_tuple(MergePlan, (slot, offsets, members, removed, variant, class_token))


def _detached(metric):
    """Plans and energies are not differentiable: the metric enters detached."""
    return metric.detach() if isinstance(metric, torch.Tensor) and metric.requires_grad else metric


def _check_plan(value) -> MergePlan:
    """``value`` when it is a MergePlan (its tensors are checked by the op that reads them)."""
    if not isinstance(value, MergePlan):
        raise TypeError(f"plan must be a MergePlan (from pitome_kernels.plan), got {type(value).__name__}")
    return value


def merge(plan: MergePlan, x: torch.Tensor, mode: str = "mean", *, backend: str = "auto") -> torch.Tensor:
    """Reduce every group of ``plan``: ``x`` ``[B, T, K]`` -> ``[B, T - r, K]``.

    ``mode``: ``"mean"``, ``"sum"``, ``"amax"`` or ``"prune"`` (heads only). Differentiable in ``x``.
    """
    if type(plan) is not MergePlan:
        plan = _check_plan(plan)
    return _ops.merge(x, plan[0], plan[1], plan[2], mode, backend)


def merge_wavg(plan: MergePlan, x: torch.Tensor, size: torch.Tensor | None = None, *,
               backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average ``(sum(size * x) / sum(size), sum(size))`` over every group.

    ``x``: ``[B, T, K]``; ``size``: ``[B, T, 1]`` or None (every token stands for one).
    Differentiable in ``x`` only.
    """
    if type(plan) is not MergePlan:
        plan = _check_plan(plan)
    return _ops.merge_wavg(x, size, plan[0], plan[1], plan[2], backend)


def unmerge(plan: MergePlan, y: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Copy every merged token back to all its members: ``[B, T - r, K]`` -> ``[B, T, K]``."""
    if type(plan) is not MergePlan:
        plan = _check_plan(plan)
    return _ops.unmerge(y, plan[0], plan[1], plan[2], backend)


def track_source(plan: MergePlan, source_map: torch.Tensor | None = None) -> torch.Tensor:
    """Compose integer source maps: int32 ``[B, T0]``, the output token holding each original token.

    ``source_map`` is the map before this layer (``[B, T0]`` with values in ``[0, T)``), or
    None when ``plan`` is the first layer (then the result is ``plan.slot``). The map's
    values are checked (on a GPU this waits for them).
    """
    p = _check_plan(plan)
    if source_map is None:
        return p.slot
    _checks.tensor("source_map", source_map, 2, floating=False)
    batch, tokens = p.slot.shape
    if source_map.shape[0] != batch:
        raise ValueError(f"source_map must have batch {batch}, got shape {tuple(source_map.shape)}")
    if source_map.device != p.slot.device:
        raise ValueError(f"source_map is on {source_map.device} but the plan is on {p.slot.device}")
    if source_map.numel() and bool(((source_map < 0) | (source_map >= tokens)).any()):
        raise ValueError(f"source_map values must lie in [0, T = {tokens}), the plan's input tokens")
    return p.slot.gather(1, source_map.long())


def source_matrix(source_map: torch.Tensor, num_out: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The official 0/1 layout ``[B, num_out, T0]`` of an integer source map ``[B, T0]``."""
    _checks.tensor("source_map", source_map, 2, floating=False)
    rows = torch.arange(num_out, device=source_map.device, dtype=source_map.dtype)
    return (rows[None, :, None] == source_map[:, None, :]).to(dtype)


def merge_source(plan: MergePlan, source: torch.Tensor | None = None, *, backend: str = "auto") -> torch.Tensor:
    """Source tracking in the official layout: 0/1 ``[B, T - r, T0]``, row ``j`` marks the
    original tokens inside output token ``j``.

    ``source`` is the previous layer's ``[B, T, T0]`` matrix, or None for the first layer.
    Built from the plan's integer map; use ``track_source`` to keep only the maps.
    """
    p = _check_plan(plan)
    if source is None:
        _backends.check_name(backend)
        return source_matrix(p.slot, p.num_out)
    return _ops.merge(source, p.slot, p.offsets, p.members, "amax", backend)
