"""The public Python API: energy, plan, merge, merge_wavg, unmerge and source tracking."""

import math
from typing import NamedTuple

import torch

from . import _checks
from . import ops as _ops


def _call(name: str, *args):
    """Run op ``name`` on ``args``.

    Under torch.compile, and whenever autograd must record the call, this goes through
    ``torch.ops.pitome.<name>``. A plain eager call that needs no autograd runs the op's
    body directly: the same checks and kernels, minus the dispatcher's round trip back into
    Python (about 8 us of a 12 us merge_wavg call on tiny CPU tensors).
    """
    op, body = _OPS[name]
    # Only the first argument of an op is differentiable (x of the merges, y of unmerge;
    # the metric of energy and plan arrives detached).
    first = args[0]
    if _is_compiling() or (isinstance(first, torch.Tensor) and first.requires_grad and torch.is_grad_enabled()):
        return op(*args)
    return body(*args)


_OPS = {name: (getattr(torch.ops.pitome, name), getattr(_ops, f"{name}_impl"))
        for name in ("energy", "plan", "merge", "merge_wavg", "unmerge")}
_is_compiling = torch.compiler.is_compiling


def _eager_cpu(first, backend):
    """The C++ CPU kernels when a merge can skip even the op body (``first`` a plain CPU
    tensor that autograd need not record, outside torch.compile, backend "auto"/"cpu", the
    extension loaded), else None. About half a microsecond of a 10 us batch-1 merge. The
    kernels check their arguments; on a failure the caller goes the normal way, whose
    checks name the offending argument."""
    if _is_compiling() or (isinstance(first, torch.Tensor) and first.requires_grad and torch.is_grad_enabled()):
        return None
    return _ops.cpu_kernels_for(first, backend)


class MergePlan(NamedTuple):
    """Which token goes where in one merging layer (immutable; not differentiable).

    - ``slot``: int32 ``[B, T]``, the output position of every input token.
    - ``offsets``: int32 ``[B, T_out + 1]`` and ``members``: int32 ``[B, T]``; the input
      tokens of output ``g`` are ``members[offsets[g]:offsets[g + 1]]``, the group's head
      (the token that keeps its place) first, then its sources in ascending index.
    - ``r``: tokens removed (``T_out = T - r``), after ToMe's clamp for ``variant="tome"``.

    A named tuple rather than a frozen dataclass: it is built on every layer, and a tuple is
    built in a third of the time.
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

    ``T' = num_tokens - 1`` with a class token. ``ratio >= 1`` removes nothing.
    """
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
    return math.floor(mergeable - mergeable * ratio)


def energy(metric: torch.Tensor, *, margin: float, kernel: str = "elu", class_token: bool = False,
           backend: str = "auto") -> torch.Tensor:
    """Energy of every mergeable token: float32 ``[B, T']`` (high = safe to merge).

    ``metric``: ``[B, T, C]`` floating. ``kernel``: ``"elu"`` (vision) or ``"gauss"`` (text).
    Not differentiable. Every argument is validated by the op (``ops.py``).
    """
    if type(metric) is not torch.Tensor:
        _checks.tensor("metric", metric, 3)
    if metric.requires_grad:
        metric = metric.detach()
    return _call("energy", metric, margin, kernel, class_token, backend)


def plan(metric: torch.Tensor, r: int, *, variant: str = "pitome", margin: float = 0.5,
         class_token: bool = False, distill_token: bool = False, backend: str = "auto") -> MergePlan:
    """Build the merge plan of one layer from ``metric`` ``[B, T, C]`` removing ``r`` tokens.

    ``variant``: ``"pitome"``, ``"pitome_text"``, ``"pitome_bsm"`` or ``"tome"`` (SPEC.md).
    ``margin`` is ignored by ``"tome"``. Every argument is validated by the op (``ops.py``).
    """
    if type(metric) is not torch.Tensor:
        _checks.tensor("metric", metric, 3)
    if metric.requires_grad:
        metric = metric.detach()
    tensors = None
    cpu = _eager_cpu(metric, backend)
    if cpu is not None and _ops.plan_cpu_ok(r, variant, margin, class_token, distill_token):
        try:  # the kernel directly (about 0.8 us of Python less)
            tensors = cpu.plan(metric, r, variant, margin, class_token, distill_token)
        except _ops.KERNEL_ERRORS:
            pass  # the op's path below names the bad argument
    if tensors is None:
        tensors = _call("plan", metric, r, variant, margin, class_token, distill_token, backend)
    slot, offsets, members = tensors
    # The plan removed r tokens unless ToMe clamped r; then it is T - T_out. (Shapes and the
    # named tuple's own constructor each cost about half a microsecond, a few percent of a
    # batch-1 plan.)
    removed = r if type(r) is int and variant != "tome" else slot.shape[1] - offsets.shape[1] + 1
    return _new_tuple(MergePlan, (slot, offsets, members, removed, variant, class_token))


def _check_plan(value) -> MergePlan:
    if type(value) is not MergePlan and not isinstance(value, MergePlan):
        raise TypeError(f"plan must be a MergePlan (from pitome_kernels.plan), got {type(value).__name__}")
    return value


def merge(plan: MergePlan, x: torch.Tensor, mode: str = "mean", *, backend: str = "auto") -> torch.Tensor:
    """Reduce every group of ``plan``: ``x`` ``[B, T, K]`` -> ``[B, T - r, K]``.

    ``mode``: ``"mean"``, ``"sum"``, ``"amax"`` or ``"prune"`` (heads only). Differentiable in ``x``.
    """
    cpu = _eager_cpu(x, backend)
    if cpu is not None and type(plan) is MergePlan and type(mode) is str:
        try:
            return cpu.merge(x, plan.slot, plan.offsets, plan.members, mode)
        except _ops.KERNEL_ERRORS:
            pass
    p = _check_plan(plan)
    return _call("merge", x, p.slot, p.offsets, p.members, mode, backend)


def merge_wavg(plan: MergePlan, x: torch.Tensor, size: torch.Tensor | None = None, *,
               backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average ``(sum(size * x) / sum(size), sum(size))`` over every group.

    ``x``: ``[B, T, K]``; ``size``: ``[B, T, 1]`` or None (every token stands for one).
    Differentiable in ``x`` only.
    """
    cpu = _eager_cpu(x, backend)
    if cpu is not None and type(plan) is MergePlan:
        try:
            return cpu.merge_wavg(x, size, plan.slot, plan.offsets, plan.members)
        except _ops.KERNEL_ERRORS:
            pass
    p = _check_plan(plan)
    return _call("merge_wavg", x, size, p.slot, p.offsets, p.members, backend)


def unmerge(plan: MergePlan, y: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Copy every merged token back to all its members: ``[B, T - r, K]`` -> ``[B, T, K]``."""
    cpu = _eager_cpu(y, backend)
    if cpu is not None and type(plan) is MergePlan:
        try:
            return cpu.unmerge(y, plan.slot, plan.offsets, plan.members)
        except _ops.KERNEL_ERRORS:
            pass
    p = _check_plan(plan)
    return _call("unmerge", y, p.slot, p.offsets, p.members, backend)


def track_source(plan: MergePlan, source_map: torch.Tensor | None = None) -> torch.Tensor:
    """Compose integer source maps: int32 ``[B, T0]``, the output token holding each original token.

    ``source_map`` is the map before this layer (``[B, T0]`` with values in ``[0, T)``), or
    None when ``plan`` is the first layer (then the result is ``plan.slot``).
    """
    p = _check_plan(plan)
    if source_map is None:
        return p.slot
    _checks.tensor("source_map", source_map, 2, floating=False)
    if source_map.shape[0] != p.slot.shape[0]:
        raise ValueError(f"source_map must have batch {p.slot.shape[0]}, got shape {tuple(source_map.shape)}")
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
        _checks.choice("backend", backend, _checks.BACKENDS)
        return source_matrix(p.slot, p.num_out)
    return _call("merge", source, p.slot, p.offsets, p.members, "amax", backend)
