"""Checks of a plan's three tensors, ``slot[B, T]``, ``offsets[B, T_out + 1]`` and
``members[B, T]`` (int32), each run once per plan.

- ``plan_tensors``: their types, dtypes, shapes and devices (metadata only, every call).
- ``plan_contents``: what the kernels rely on to stay in bounds (offsets from 0 to T,
  every group non-empty, members a permutation of the tokens, each member's slot its
  group, a group's sources after its head in ascending order). It reads the tensors, so on
  a GPU it waits for them: it runs for plans the package did not make, once.

Plans that passed, and the plans the plan op returns, are remembered by their slot tensor
(weakly) together with the version counters of all three tensors, which every in-place
change bumps (data and metadata alike): a changed plan is checked again.
"""

import weakref

import torch

from ._checks import tensor

_Tensor = torch.Tensor
_INT32 = torch.int32

# id(slot) -> [weakref(slot), offsets, members, versions, (B, T, T_out, device), contents checked]
_known: dict = {}


def _entry(slot, offsets, members):
    entry = _known.get(id(slot))
    if (entry is not None and entry[0]() is slot and entry[1] is offsets and entry[2] is members
            and entry[3] == (slot._version, offsets._version, members._version)):
        return entry
    return None


def remember(slot, offsets, members, info: tuple, contents_checked: bool) -> None:
    """Record plan tensors whose metadata (and, if ``contents_checked``, contents) are valid."""
    if type(slot) is not _Tensor:  # fake and functional tensors under torch.compile are not kept
        return
    key = id(slot)
    _known[key] = [weakref.ref(slot, lambda _, key=key: _known.pop(key, None)), offsets, members,
                   (slot._version, offsets._version, members._version), info, contents_checked]


def plan_tensors(slot, offsets, members) -> tuple:
    """``(B, T, T_out, device)`` of valid plan tensors (their metadata); else a TypeError or
    ValueError naming what is wrong."""
    entry = _entry(slot, offsets, members)
    if entry is not None:
        return entry[4]
    if not (isinstance(slot, _Tensor) and isinstance(offsets, _Tensor) and isinstance(members, _Tensor)
            and slot.dtype is _INT32 and offsets.dtype is _INT32 and members.dtype is _INT32):
        for name, t in (("slot", slot), ("offsets", offsets), ("members", members)):
            tensor(name, t, 2, floating=False)
            if t.dtype != torch.int32:
                raise TypeError(f"{name} must be int32, got {t.dtype}")
    shape, off_shape = slot.shape, offsets.shape
    if not (len(shape) == 2 and len(off_shape) == 2 and members.shape == shape and off_shape[0] == shape[0]):
        raise ValueError(f"plan tensors disagree: slot {tuple(shape)}, offsets {tuple(off_shape)}, "
                         f"members {tuple(members.shape)} (want [B, T], [B, T_out + 1], [B, T])")
    if not 2 <= off_shape[1] <= shape[1] + 1:
        raise ValueError(f"offsets must be [B, T_out + 1] with 1 <= T_out <= T, got {tuple(off_shape)}")
    device = slot.device
    if offsets.device != device or members.device != device:
        raise ValueError(f"plan tensors are on different devices: slot {device}, offsets {offsets.device}, "
                         f"members {members.device}")
    info = (shape[0], shape[1], off_shape[1] - 1, device)
    remember(slot, offsets, members, info, contents_checked=False)
    return info


def plan_contents(slot, offsets, members) -> None:
    """A ValueError unless the plan's contents are consistent (see the module docstring).
    Call after ``plan_tensors``."""
    entry = _entry(slot, offsets, members)
    if entry is not None and entry[5]:
        return
    problem = _contents_problem(slot, offsets, members)
    if problem is not None:
        raise ValueError(f"invalid plan: {problem} (pass plans made by pitome_kernels.plan)")
    remember(slot, offsets, members, plan_tensors(slot, offsets, members), contents_checked=True)


def _contents_problem(slot, offsets, members):
    """The first broken property of a plan, or None; one wait for the device at the end."""
    batch, tokens = slot.shape
    num_out = offsets.shape[1] - 1
    off, mem, grp = offsets.long(), members.long(), slot.long()
    pos = torch.arange(tokens, device=slot.device).expand(batch, tokens)
    in_range = lambda t, hi: (t >= 0) & (t < hi)  # noqa: E731
    # clamped copies keep the gathers in bounds; out-of-range entries are reported below
    mem_c, off_c = mem.clamp(0, max(tokens - 1, 0)), off.clamp(0, tokens)
    group_of_pos = torch.searchsorted(off_c[:, 1:].contiguous(), pos.contiguous(), right=True)
    is_head = torch.zeros(batch, tokens + 1, dtype=torch.bool, device=slot.device)
    is_head.scatter_(1, off_c[:, :-1], True)
    is_head = is_head[:, :tokens]
    follows_source = ~is_head[:, 1:] & ~is_head[:, :-1]
    checks = {
        "offsets must start at 0": (off[:, 0] == 0).all(),
        f"offsets must end at T = {tokens}": (off[:, -1] == tokens).all(),
        "offsets must increase strictly (every group has a member)": (off[:, 1:] > off[:, :-1]).all(),
        f"members must lie in [0, T = {tokens})": in_range(mem, tokens).all(),
        f"slot must lie in [0, T_out = {num_out})": in_range(grp, num_out).all(),
        "members must hold every token once": (mem_c.sort(dim=1).values == pos).all(),
        "slot[m] must be the group that lists member m": (grp.gather(1, mem_c) == group_of_pos).all(),
        "a group's sources must follow its head in ascending order":
            (~follows_source | (mem_c[:, 1:] > mem_c[:, :-1])).all(),
    }
    passed = torch.stack(list(checks.values())).tolist()
    return next((name for name, ok in zip(checks, passed) if not ok), None)
