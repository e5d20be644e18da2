"""pytest-benchmark suite for one ViT-B/16 PiToMe layer (metric [B, 197, 64], x [B, 197, 768],
r = 19, class token, sizes). Each benchmark checks its result against the reference, so with ``--benchmark-disable`` (the default in CI) the suite is a correctness run.

Measure: ``pytest benchmarks --benchmark-enable --benchmark-only --benchmark-group-by=param:batch``.
Rows named ``paper`` are the baseline; ``floor-*`` are one ``u @ u^T`` and one ``x.clone()``.
"""

import pytest
import torch
import torch.nn.functional as F

import pitome_kernels as pk
from pitome_kernels.bench import paper_style

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TOKENS, CHANNELS, DIM, R, MARGIN = 197, 64, 768, 19, 0.5
# Triton on CPU means the interpreter: correct but far too slow to time, so leave it out here.
BACKENDS = [b for b in pk.runnable(DEVICE) if not (b == "triton" and DEVICE.type == "cpu")]
BATCHES = [1, 64]


def _inputs(batch):
    gen = torch.Generator().manual_seed(batch)
    metric = torch.randn(batch, TOKENS, CHANNELS, generator=gen).to(DEVICE)
    x = torch.randn(batch, TOKENS, DIM, generator=gen).to(DEVICE)
    size = torch.randint(1, 4, (batch, TOKENS, 1), generator=gen).float().to(DEVICE)
    return metric, x, size


def _check_plan(p, metric, backend, **kw):
    """The timed float32 plan against what the spec promises for random inputs, whose energies
    and similarities lie a few float32 ulps apart at times (each backend's rounding, and each
    CPU ISA clone's, may order those either way; tests/ check float32 plans exactly on
    well-separated inputs): a partition of the tokens with r removed and the class token
    first, energies to 1e-5, and, in float64, exactly the reference's plan."""
    tokens = metric.shape[1]
    assert p.num_out == tokens - R and torch.equal(p.slot[:, 0], torch.zeros_like(p.slot[:, 0]))
    members = p.members.sort(dim=1).values
    assert torch.equal(members, torch.arange(tokens, dtype=members.dtype, device=members.device).expand_as(members))
    kernel = "gauss" if kw.get("variant") == "pitome_text" else "elu"
    margin = kw.get("margin", MARGIN)
    energy = pk.energy(metric, margin=margin, kernel=kernel, class_token=True, backend=backend)
    exact = pk.energy(metric.double(), margin=margin, kernel=kernel, class_token=True, backend="reference")
    torch.testing.assert_close(energy, exact.float(), atol=1e-5, rtol=1e-5)
    got = pk.plan(metric.double(), R, class_token=True, backend=backend, **kw)
    want = pk.plan(metric.double(), R, class_token=True, backend="reference", **kw)
    assert torch.equal(got.slot, want.slot) and torch.equal(got.members, want.members)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("backend", BACKENDS + ["paper"])
def test_layer(benchmark, backend, batch):
    metric, x, size = _inputs(batch)
    if backend == "paper":
        fn = lambda: paper_style.layer(metric, x, size, R, MARGIN, True)  # noqa: E731
    else:
        fn = lambda: pk.merge_wavg(  # noqa: E731
            pk.plan(metric, R, margin=MARGIN, class_token=True, backend=backend), x, size, backend=backend)
    out_x, out_size = benchmark(fn)
    if backend == "paper":
        want = paper_style.layer(metric, x, size, R, MARGIN, True)
    else:  # the reference's merge of the backend's own plan (checked by _check_plan)
        p = pk.plan(metric, R, margin=MARGIN, class_token=True, backend=backend)
        _check_plan(p, metric, backend, margin=MARGIN)
        want = pk.merge_wavg(p, x, size, backend="reference")
    torch.testing.assert_close(out_x, want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_size, want[1])


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("backend", BACKENDS + ["paper", "floor-u@uT"])
def test_plan(benchmark, backend, batch):
    metric, _, _ = _inputs(batch)
    if backend == "floor-u@uT":
        u = F.normalize(metric[:, 1:], dim=-1)
        sim = benchmark(lambda: torch.bmm(u, u.transpose(-1, -2)))
        assert sim.shape == (batch, TOKENS - 1, TOKENS - 1)
        return
    if backend == "paper":
        protected, _, _, _ = benchmark(lambda: paper_style.plan(metric, R, MARGIN, True))
        assert protected.shape == (batch, TOKENS - 1 - 2 * R)
        return
    p = benchmark(lambda: pk.plan(metric, R, margin=MARGIN, class_token=True, backend=backend))
    _check_plan(p, metric, backend, margin=MARGIN)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("backend", BACKENDS + ["paper", "floor-x.clone"])
def test_merge_wavg(benchmark, backend, batch):
    metric, x, size = _inputs(batch)
    if backend == "floor-x.clone":
        assert torch.equal(benchmark(x.clone), x)
        return
    if backend == "paper":
        indices = paper_style.plan(metric, R, MARGIN, True)
        out_x, _ = benchmark(lambda: paper_style.merge_wavg(indices, x, size, True))
    else:
        p = pk.plan(metric, R, margin=MARGIN, class_token=True, backend="reference")
        out_x, _ = benchmark(lambda: pk.merge_wavg(p, x, size, backend=backend))
    assert out_x.shape == (batch, TOKENS - R, DIM)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
@pytest.mark.parametrize("variant", ["pitome_text", "pitome_bsm", "tome"])
def test_plan_variant(benchmark, variant, backend, batch):
    """The other variants' plans (pitome's is test_plan); compare with floor-u@uT there."""
    metric, _, _ = _inputs(batch)
    margin = 0.7 if variant == "pitome_text" else MARGIN
    kw = dict(variant=variant, margin=margin, class_token=True)
    p = benchmark(lambda: pk.plan(metric, R, backend=backend, **kw))
    _check_plan(p, metric, backend, **{k: v for k, v in kw.items() if k != "class_token"})


@pytest.fixture
def cpu_isa(request):
    """Runs the CPU kernels in the clone named by the test's parameter, then restores it."""
    before = pk.cpu_isa()
    yield pk.set_cpu_isa(request.param)
    pk.set_cpu_isa(before)


@pytest.mark.skipif(DEVICE.type != "cpu" or "cpu" not in BACKENDS, reason="the CPU kernels' ISA clones")
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("cpu_isa", ["avx2", "default"], indirect=True)
def test_layer_lower_cpu_isa(benchmark, cpu_isa, batch):
    """The whole layer on the lower ISA clones (the ``cpu`` rows of test_layer run the best one);
    ``cpu_isa`` is the clone that ran, which is the best one where the CPU has no lower."""
    metric, x, size = _inputs(batch)
    out_x, out_size = benchmark(lambda: pk.merge_wavg(
        pk.plan(metric, R, margin=MARGIN, class_token=True, backend="cpu"), x, size, backend="cpu"))
    assert pk.cpu_isa() == cpu_isa
    p = pk.plan(metric, R, margin=MARGIN, class_token=True, backend="cpu")
    _check_plan(p, metric, "cpu", margin=MARGIN)
    want = pk.merge_wavg(p, x, size, backend="reference")
    torch.testing.assert_close(out_x, want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_size, want[1])
