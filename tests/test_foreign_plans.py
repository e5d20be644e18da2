"""Plans built or edited by hand are refused with a ValueError on every backend before any
kernel reads them: no out-of-bounds read, no garbage."""

import pytest
import torch

import pitome_kernels as pk
from _support import DEVICE, runnable_backends

BATCH, TOKENS, DIM = 2, 11, 4


def _plan():
    gen = torch.Generator().manual_seed(3)
    metric = torch.randn(BATCH, TOKENS, 8, generator=gen).to(DEVICE)
    return pk.plan(metric, 3, class_token=True, backend="reference")


def _swap_sources_of_two_groups(p):
    members = p.members.clone()
    last = p.offsets[0, -1].item()
    members[0, last - 1], members[0, 0] = members[0, 0].clone(), members[0, last - 1].clone()
    return p._replace(members=members)


def _reverse_a_group(p):
    counts = p.group_sizes[0]
    g = int(torch.nonzero(counts >= 3)[0]) if bool((counts >= 3).any()) else int(torch.nonzero(counts == 2)[0])
    start, stop = int(p.offsets[0, g]), int(p.offsets[0, g + 1])
    members = p.members.clone()
    members[0, start:stop] = members[0, start:stop].flip(0)
    return p._replace(members=members)


FOREIGN = {
    "offsets scaled": lambda p: p._replace(offsets=p.offsets * 2),
    "offsets shifted": lambda p: p._replace(offsets=p.offsets + 1),
    "members out of range": lambda p: p._replace(members=p.members + TOKENS),
    "members negative": lambda p: p._replace(members=p.members - 1),
    "slot out of range": lambda p: p._replace(slot=p.slot + p.num_out),
    "a member listed twice": lambda p: p._replace(members=p.members.index_fill(1, torch.tensor([1], device=DEVICE), 0)),
    "members in the wrong groups": _swap_sources_of_two_groups,
    "a group out of order": _reverse_a_group,
}

CALLS = {
    "merge-sum": lambda p, x, b: pk.merge(p, x, "sum", backend=b),
    "merge-mean": lambda p, x, b: pk.merge(p, x, "mean", backend=b),
    "merge-amax": lambda p, x, b: pk.merge(p, x, "amax", backend=b),
    "merge-prune": lambda p, x, b: pk.merge(p, x, "prune", backend=b),
    "merge_wavg": lambda p, x, b: pk.merge_wavg(p, x, backend=b),
    "unmerge": lambda p, x, b: pk.unmerge(p, x[:, : p.num_out], backend=b),
    "merge_backward": lambda p, x, b: torch.ops.pitome.merge_backward(
        x[:, : p.num_out], x, x[:, : p.num_out], p.slot, p.offsets, p.members, "mean", b),
    "merge_wavg_backward": lambda p, x, b: torch.ops.pitome.merge_wavg_backward(
        x[:, : p.num_out], None, x[:, : p.num_out, :1], p.slot, p.offsets, p.members, b),
}


@pytest.mark.parametrize("backend", runnable_backends())
@pytest.mark.parametrize("damage", list(FOREIGN))
def test_foreign_plan_is_refused(backend, damage):
    p = FOREIGN[damage](_plan())
    x = torch.randn(BATCH, TOKENS, DIM, device=DEVICE)
    for name, call in CALLS.items():
        with pytest.raises(ValueError, match="invalid plan|plan tensors|offsets"):
            call(p, x, backend)


@pytest.mark.parametrize("backend", runnable_backends())
def test_a_valid_hand_made_plan_is_accepted(backend):
    """A plan rebuilt from its tensors (not the plan op's own) is checked once and then used."""
    p = _plan()
    copy = pk.MergePlan(p.slot.clone(), p.offsets.clone(), p.members.clone(), p.r, p.variant, p.class_token)
    x = torch.randn(BATCH, TOKENS, DIM, device=DEVICE)
    torch.testing.assert_close(pk.merge(copy, x, "sum", backend=backend), pk.merge(p, x, "sum", backend="reference"))


def test_plans_made_by_the_plan_op_are_not_read_again():
    """The plan op's outputs are known valid: merging with them reads no plan data."""
    from pitome_kernels import _plan_checks

    p = _plan()
    calls = []
    original = _plan_checks._contents_problem
    _plan_checks._contents_problem = lambda *a: calls.append(a) or original(*a)
    try:
        pk.merge(p, torch.randn(BATCH, TOKENS, DIM, device=DEVICE), backend="reference")
        assert calls == []
        foreign = p._replace(slot=p.slot.clone())
        pk.merge(foreign, torch.randn(BATCH, TOKENS, DIM, device=DEVICE), backend="reference")
        pk.merge(foreign, torch.randn(BATCH, TOKENS, DIM, device=DEVICE), backend="reference")
        assert len(calls) == 1  # checked once, then known
    finally:
        _plan_checks._contents_problem = original


@pytest.mark.parametrize("backend", runnable_backends())
def test_non_contiguous_plan_tensors_are_accepted(backend):
    p = _plan()
    strided = lambda t: t.t().contiguous().t()  # noqa: E731 - the same values, column-major
    q = p._replace(slot=strided(p.slot), offsets=strided(p.offsets), members=strided(p.members))
    assert not q.slot.is_contiguous()
    x = torch.randn(BATCH, TOKENS, DIM, device=DEVICE)
    for mode in ("sum", "mean", "amax", "prune"):
        assert torch.equal(pk.merge(q, x, mode, backend=backend), pk.merge(p, x, mode, backend=backend))
    assert torch.equal(pk.merge_wavg(q, x, backend=backend)[0], pk.merge_wavg(p, x, backend=backend)[0])
    y = x[:, : p.num_out]
    assert torch.equal(pk.unmerge(q, y, backend=backend), pk.unmerge(p, y, backend=backend))
