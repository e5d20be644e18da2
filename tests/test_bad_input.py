"""Bad input gets a ValueError/TypeError naming the argument; nothing crashes."""

import pytest
import torch

import pitome_kernels as pk
from _support import DEVICE


@pytest.fixture
def layer():
    metric = torch.randn(2, 11, 8, device=DEVICE)
    x = torch.randn(2, 11, 4, device=DEVICE)
    return metric, x, pk.plan(metric, 3, class_token=True)


@pytest.mark.parametrize(
    "call, error, name",
    [
        (lambda m: pk.plan(m[0], 2), ValueError, "metric"),
        (lambda m: pk.plan(m.long(), 2), TypeError, "metric"),
        (lambda m: pk.plan(m.tolist(), 2), TypeError, "metric"),
        (lambda m: pk.plan(m, -1), ValueError, "r"),
        (lambda m: pk.plan(m, 6), ValueError, "r"),
        (lambda m: pk.plan(m, 6, class_token=True), ValueError, "r"),
        (lambda m: pk.plan(m, 2.0), TypeError, "r"),
        (lambda m: pk.plan(m, True), TypeError, "r"),
        (lambda m: pk.plan(m, 2, variant="bipartite"), ValueError, "variant"),
        (lambda m: pk.plan(m, 2, margin="0.5"), TypeError, "margin"),
        (lambda m: pk.plan(m, 2, margin=float("nan")), ValueError, "margin"),
        (lambda m: pk.plan(m, 2, variant="pitome_text", margin=1.0), ValueError, "margin"),
        (lambda m: pk.plan(m, 2, class_token=1), TypeError, "class_token"),
        (lambda m: pk.plan(m, 2, distill_token=True), ValueError, "distill_token"),
        (lambda m: pk.plan(m, 2, backend="gpu"), ValueError, "backend"),
        (lambda m: pk.plan(m[:, :1], 0, class_token=True), ValueError, "metric"),
        (lambda m: pk.energy(m, margin=0.5, kernel="rbf"), ValueError, "kernel"),
        (lambda m: pk.energy(m[..., 0], margin=0.5), ValueError, "metric"),
        (lambda m: pk.ratio_to_r(11, -0.5), ValueError, "ratio"),
        (lambda m: pk.ratio_to_r(11.0, 0.5), TypeError, "num_tokens"),
    ],
)
def test_bad_plan_arguments(layer, call, error, name):
    metric, _, _ = layer
    with pytest.raises(error, match=name):
        call(metric)


@pytest.mark.parametrize(
    "call, error, name",
    [
        (lambda p, x: pk.merge(p, x[:, :5]), ValueError, "x"),
        (lambda p, x: pk.merge(p, x[:1]), ValueError, "x"),
        (lambda p, x: pk.merge(p, x[0]), ValueError, "x"),
        (lambda p, x: pk.merge(p, x.int()), TypeError, "x"),
        (lambda p, x: pk.merge(p, x, "median"), ValueError, "mode"),
        (lambda p, x: pk.merge(p, x, backend=3), TypeError, "backend"),
        (lambda p, x: pk.merge((p.slot, p.offsets, p.members), x), TypeError, "plan"),
        (lambda p, x: pk.merge_wavg(p, x, x[..., :2]), ValueError, "size"),
        (lambda p, x: pk.merge_wavg(p, x, x[:, :4, :1]), ValueError, "size"),
        (lambda p, x: pk.unmerge(p, x), ValueError, "y"),
        # a plan whose tensors were swapped after planning, and x not a tensor: the eager
        # CPU lane fails in the kernel, then the op's checks name the argument
        (lambda p, x: pk.merge_wavg(p._replace(slot=p.slot.long()), x), TypeError, "slot"),
        (lambda p, x: pk.merge(p._replace(members=p.members[:, :-1]), x), ValueError, "plan tensors"),
        (lambda p, x: pk.merge_wavg(p, x.tolist()), TypeError, "x"),
        (lambda p, x: pk.track_source(p, p.slot.float()), TypeError, "source_map"),
        (lambda p, x: pk.track_source(p, p.slot + 20), ValueError, "source_map values"),
        (lambda p, x: pk.track_source(p, p.slot - 1), ValueError, "source_map values"),
        (lambda p, x: pk.track_source(p, p.slot[:1]), ValueError, "source_map"),
        (lambda p, x: torch.ops.pitome.merge(x, p.slot.long(), p.offsets, p.members), TypeError, "slot"),
        (lambda p, x: torch.ops.pitome.merge(x, p.slot, p.offsets[:1], p.members), ValueError, "plan tensors"),
    ],
)
def test_bad_merge_arguments(layer, call, error, name):
    _, x, p = layer
    with pytest.raises(error, match=name):
        call(p, x)


def test_unavailable_backend_raises():
    metric = torch.randn(1, 5, 4, device="meta")
    with pytest.raises(pk.BackendUnavailableError, match="backend='cpu' needs CPU tensors"):
        pk.plan(metric, 1, backend="cpu")


def test_only_existing_backends_are_named():
    """Every name the backend argument accepts is a registered backend (or "auto")."""
    assert pk.BACKENDS == ("auto",) + tuple(b.name for b in pk.backends.REGISTRY)
    with pytest.raises(ValueError, match="backend must be one of"):
        pk.plan(torch.randn(1, 5, 4), 1, backend="cuda_cpp")


def test_cuda_backend_on_cpu_tensors_says_why():
    with pytest.raises(pk.BackendUnavailableError, match="backend='cuda' needs CUDA tensors"):
        pk.plan(torch.randn(1, 5, 4), 1, backend="cuda")


def test_tome_clamps_r_like_the_original():
    metric = torch.randn(1, 9, 4, device=DEVICE)
    assert pk.plan(metric, 100, variant="tome", class_token=True).r == 4
    assert pk.plan(metric, 100, variant="tome", class_token=True, distill_token=True).r == 3


def test_a_plan_changed_in_place_is_checked_again():
    """A plan's tensors are checked once, then trusted until any of them changes in place."""
    metric = torch.randn(2, 11, 8, device=DEVICE)
    x = torch.randn(2, 11, 4, device=DEVICE)
    p = pk.plan(metric, 3, backend="reference")
    pk.merge(p, x, backend="reference")
    p.members.resize_(2, 10)
    with pytest.raises(ValueError, match="plan tensors disagree"):
        pk.merge(p, x, backend="reference")


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_bad_scalars_are_named_on_every_path(backend):
    """Scalars of the wrong Python type (a bool for r, an int for class_token) are refused,
    also where the kernels check their own arguments."""
    metric = torch.randn(1, 9, 4, device=DEVICE)
    with pytest.raises(TypeError, match="class_token"):
        pk.ops.plan(metric, 2, "pitome", 0.5, 1, False, backend)
    with pytest.raises(TypeError, match="r must be an int"):
        pk.ops.plan(metric, True, "pitome", 0.5, False, False, backend)
    # an int margin is a float
    assert pk.plan(metric, 2, margin=1, backend=backend).r == 2
