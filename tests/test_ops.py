"""torch.library conformance of every op: opcheck, gradcheck (float64), torch.compile."""

import pytest
import torch

import pitome_kernels as pk
from _support import DEVICE, runnable_backends, well_separated_metric

BACKENDS = runnable_backends()


def _layer_inputs(dtype=torch.float32, requires_grad=False, batch=2, tokens=13, dim=5):
    metric = well_separated_metric(batch, tokens, 8, seed=1)
    p = pk.plan(metric, 4, class_token=True, backend="reference")
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, tokens, dim, generator=gen, dtype=torch.float64).to(DEVICE, dtype)
    size = torch.randint(1, 4, (batch, tokens, 1), generator=gen).to(DEVICE, dtype)
    return metric, p, x.requires_grad_(requires_grad), size


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_energy_and_plan(backend):
    metric, _, _, _ = _layer_inputs()
    for kernel in ("elu", "gauss"):
        torch.library.opcheck(torch.ops.pitome.energy.default, (metric, 0.3, kernel, True, backend))
    for variant in ("pitome", "pitome_text", "pitome_bsm", "tome"):
        torch.library.opcheck(torch.ops.pitome.plan.default, (metric, 3, variant, 0.3, True, False, backend))
    torch.library.opcheck(torch.ops.pitome.plan.default, (metric, 3, "tome", 0.0, True, True, backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["mean", "sum", "amax", "prune"])
def test_opcheck_merge(backend, mode):
    _, p, x, _ = _layer_inputs(requires_grad=True)
    args = (x, p.slot, p.offsets, p.members, mode, backend)
    torch.library.opcheck(torch.ops.pitome.merge.default, args)
    out = torch.ops.pitome.merge(*args).detach()
    grad = torch.randn_like(out)
    torch.library.opcheck(
        torch.ops.pitome.merge_backward.default,
        (grad, x.detach(), out, p.slot, p.offsets, p.members, mode, backend),
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_size", [True, False])
def test_opcheck_merge_wavg_and_unmerge(backend, with_size):
    _, p, x, size = _layer_inputs(requires_grad=True)
    size = size if with_size else None
    torch.library.opcheck(torch.ops.pitome.merge_wavg.default, (x, size, p.slot, p.offsets, p.members, backend))
    y, size_out = torch.ops.pitome.merge_wavg(x.detach(), size, p.slot, p.offsets, p.members, backend)
    torch.library.opcheck(
        torch.ops.pitome.merge_wavg_backward.default,
        (torch.randn_like(y), size, size_out, p.slot, p.offsets, p.members, backend),
    )
    torch.library.opcheck(
        torch.ops.pitome.unmerge.default, (y.requires_grad_(), p.slot, p.offsets, p.members, backend)
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["mean", "sum", "amax", "prune"])
def test_gradcheck_merge(backend, mode):
    _, p, x, _ = _layer_inputs(dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: pk.merge(p, t, mode, backend=backend), (x,))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_size", [True, False])
def test_gradcheck_merge_wavg(backend, with_size):
    _, p, x, size = _layer_inputs(dtype=torch.float64, requires_grad=True)
    size = size if with_size else None
    assert torch.autograd.gradcheck(lambda t: pk.merge_wavg(p, t, size, backend=backend)[0], (x,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_unmerge(backend):
    _, p, x, _ = _layer_inputs(dtype=torch.float64)
    y = pk.merge(p, x, "mean", backend=backend).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: pk.unmerge(p, t, backend=backend), (y,))


def test_amax_gradient_shared_among_ties():
    """Like torch.scatter_reduce: equal maxima split the gradient evenly."""
    _, p, _, _ = _layer_inputs()
    x = torch.zeros(2, 13, 3, device=DEVICE, requires_grad=True)
    pk.merge(p, x, "amax").sum().backward()
    expected = 1.0 / pk.unmerge(p, p.group_sizes[..., None].float())
    torch.testing.assert_close(x.grad, expected.expand_as(x))


@pytest.mark.parametrize("backend", ["auto"] + BACKENDS)
def test_compile_plan_then_merge_wavg(backend):
    metric, _, x, size = _layer_inputs(tokens=33, dim=16)

    def layer(metric, x, size):
        p = pk.plan(metric, 8, variant="pitome", margin=0.25, class_token=True, backend=backend)
        return pk.merge_wavg(p, x, size, backend=backend)

    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True)
    got_x, got_size = compiled(metric, x, size)
    want_x, want_size = layer(metric, x, size)
    torch.testing.assert_close(got_x, want_x)
    torch.testing.assert_close(got_size, want_size)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["mean", "sum", "amax", "prune"])
def test_gradgradcheck_merge(backend, mode):
    """Second-order gradients: the backward ops have autograd formulas of their own."""
    _, p, x, _ = _layer_inputs(dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: pk.merge(p, t, mode, backend=backend), (x,))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_size", [True, False])
def test_gradgradcheck_merge_wavg_and_unmerge(backend, with_size):
    _, p, x, size = _layer_inputs(dtype=torch.float64, requires_grad=True)
    size = size if with_size else None
    assert torch.autograd.gradgradcheck(lambda t: pk.merge_wavg(p, t, size, backend=backend)[0], (x,))
    y = pk.merge(p, x, "mean", backend=backend).detach().requires_grad_()
    assert torch.autograd.gradgradcheck(lambda t: pk.unmerge(p, t, backend=backend), (y,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_backward_raises_no_warning(backend):
    """The backward ops' own autograd is used: torch has no fallback to warn about."""
    import warnings

    _, p, x, _ = _layer_inputs(dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (g,) = torch.autograd.grad(pk.merge(p, x, "mean", backend=backend).square().sum(), x, create_graph=True)
        g.sum().backward()


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_compile_dynamic_serves_every_token_count_with_one_graph(backend):
    """r computed from a symbolic T (exact integer ratio_to_r, a SymInt r in the schema):
    one graph for every T, no recompilation, equal to eager."""
    from torch._dynamo.testing import CompileCounter

    def layer(metric, x):
        r = pk.ratio_to_r(metric.shape[1], 0.9, class_token=True)
        p = pk.plan(metric, r, class_token=True, backend=backend)
        return pk.merge_wavg(p, x, backend=backend)[0]

    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(layer, backend=counter, fullgraph=True, dynamic=True)
    for tokens in (197, 101, 50, 33):
        metric = well_separated_metric(2, tokens, 8, seed=tokens)
        x = torch.randn(2, tokens, 16, device=DEVICE)
        got, want = compiled(metric, x), layer(metric, x)
        assert got.shape == (2, tokens - pk.ratio_to_r(tokens, 0.9, class_token=True), 16)
        torch.testing.assert_close(got, want)
    assert counter.frame_count == 1


def test_ratio_to_r_is_exact_for_written_decimals():
    """The decimal as written, not its binary float: 0.9 of 10 removes exactly one token."""
    import math
    from fractions import Fraction

    assert pk.ratio_to_r(10, 0.9) == 1 and pk.ratio_to_r(197, 0.9, class_token=True) == 19
    for ratio in (0.9, 0.75, 0.5, 0.33, 0.95, 0.875, 0.1, 0.99):
        kept = Fraction(str(ratio))
        for tokens in range(1, 400):
            assert pk.ratio_to_r(tokens, ratio) == math.floor(tokens * (1 - kept))
