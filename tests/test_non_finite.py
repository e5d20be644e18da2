"""NaN and Inf in the metric: a valid plan on every backend (the reference's on the C++
kernels), or, with the finiteness check on, a ValueError naming the metric."""

import pytest
import torch

import pitome_kernels as pk
from _support import DEVICE, runnable_backends

VARIANTS = ["pitome", "pitome_text", "pitome_bsm", "tome"]


def _metrics():
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(2, 20, 8, generator=gen)
    nan_row, inf_entry, nan_entry = base.clone(), base.clone(), base.clone()
    nan_row[0, 3] = float("nan")
    inf_entry[0, 5, 2] = float("inf")
    nan_entry[1, 7, 1] = -float("nan")
    return {"nan row": nan_row, "inf entry": inf_entry, "nan entry": nan_entry}


@pytest.mark.parametrize("backend", runnable_backends())
@pytest.mark.parametrize("variant", VARIANTS)
def test_non_finite_metric_gives_a_valid_plan(backend, variant):
    for name, metric in _metrics().items():
        metric = metric.to(DEVICE)
        p = pk.plan(metric, 5, variant=variant, class_token=True, backend=backend)
        assert p.num_out == 20 - 5, name
        tokens = torch.arange(20, device=DEVICE, dtype=torch.int32).expand(2, -1)
        assert torch.equal(p.members.sort(dim=1).values, tokens), name
        assert bool((p.slot[:, 0] == 0).all()), name  # the class token stays first
        if backend in ("cpu", "reference"):
            want = pk.plan(metric, 5, variant=variant, class_token=True, backend="reference")
            assert torch.equal(p.slot, want.slot) and torch.equal(p.members, want.members), name


@pytest.mark.parametrize("backend", ["auto"] + runnable_backends())
def test_finite_check_names_the_metric(backend):
    metric = _metrics()["inf entry"].to(DEVICE)
    pk.set_finite_check(True)
    try:
        with pytest.raises(ValueError, match="metric holds NaN or Inf"):
            pk.plan(metric, 5, backend=backend)
        with pytest.raises(ValueError, match="metric holds NaN or Inf"):
            pk.energy(metric, margin=0.5, backend=backend)
        finite = torch.randn(2, 20, 8, device=DEVICE)
        assert pk.plan(finite, 5, backend=backend).num_out == 15
    finally:
        pk.set_finite_check(False)
    assert pk.plan(metric, 5, backend=backend).num_out == 15  # off again: no check
