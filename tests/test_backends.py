"""Every fast backend against the reference: odd/even/tiny T, r = 0 and r = T'/2, class
token on/off, every variant and mode, float32/float64/bfloat16/float16."""

import pytest
import torch

import pitome_kernels as pk
from _support import DEVICE, runnable_backends, well_separated_metric

FAST = [b for b in runnable_backends() if b != "reference"]

# (atol, rtol) for values; half precision rounds the same fp32 result once, so one ulp.
TOLERANCE = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}

# (batch, tokens, channels, dim, r, class_token)
SHAPES = [
    (1, 2, 4, 3, 0, True),
    (1, 3, 4, 3, 1, False),
    (2, 4, 5, 1, 2, False),
    (2, 16, 8, 8, 8, False),
    (3, 17, 8, 5, 8, True),
    (2, 33, 16, 24, 5, True),
    (2, 40, 12, 17, 0, False),
]
SHAPE_IDS = [f"B{b}T{t}C{c}D{d}r{r}cls{int(k)}" for b, t, c, d, r, k in SHAPES]
VARIANTS = ["pitome", "pitome_text", "pitome_bsm", "tome"]


def _assert_plans_equal(got, want):
    for name in ("slot", "offsets", "members"):
        assert torch.equal(getattr(got, name).cpu(), getattr(want, name).cpu()), name
    assert got.r == want.r


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_plan_matches_reference(backend, shape, variant):
    batch, tokens, channels, _, r, class_token = shape
    metric = well_separated_metric(batch, tokens, channels, seed=tokens)
    for distill in ([False, True] if variant == "tome" and class_token else [False]):
        kwargs = dict(variant=variant, margin=0.3, class_token=class_token, distill_token=distill)
        _assert_plans_equal(pk.plan(metric, r, backend=backend, **kwargs),
                            pk.plan(metric, r, backend="reference", **kwargs))


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kernel", ["elu", "gauss"])
def test_energy_matches_reference(backend, dtype, kernel):
    for batch, tokens, channels, _, _, class_token in SHAPES:
        metric = well_separated_metric(batch, tokens, channels, seed=3, dtype=dtype)
        got = pk.energy(metric, margin=0.4, kernel=kernel, class_token=class_token, backend=backend)
        want = pk.energy(metric, margin=0.4, kernel=kernel, class_token=class_token, backend="reference")
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_merges_match_reference(backend, dtype, shape):
    batch, tokens, channels, dim, r, class_token = shape
    atol, rtol = TOLERANCE[dtype]
    p = pk.plan(well_separated_metric(batch, tokens, channels, seed=5), r, class_token=class_token,
                variant="pitome_bsm")
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(batch, tokens, 2 * dim, generator=gen).to(DEVICE, dtype)[..., ::2]  # strided
    size = torch.randint(1, 5, (batch, tokens, 1), generator=gen).to(DEVICE, dtype)

    for mode in ("sum", "mean", "amax", "prune"):
        got = pk.merge(p, x, mode, backend=backend)
        assert got.dtype == dtype
        torch.testing.assert_close(got, pk.merge(p, x, mode, backend="reference"), atol=atol, rtol=rtol)
    for s in (size, None):
        got_x, got_size = pk.merge_wavg(p, x, s, backend=backend)
        want_x, want_size = pk.merge_wavg(p, x, s, backend="reference")
        torch.testing.assert_close(got_x, want_x, atol=atol, rtol=rtol)
        torch.testing.assert_close(got_size, want_size, atol=atol, rtol=rtol)
    y = torch.randn(batch, p.num_out, dim, generator=gen).to(DEVICE, dtype)
    assert torch.equal(pk.unmerge(p, y, backend=backend), pk.unmerge(p, y, backend="reference"))


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_gradients_match_reference(backend, dtype):
    atol, rtol = TOLERANCE[dtype]
    batch, tokens = 2, 21
    p = pk.plan(well_separated_metric(batch, tokens, 8), 7, class_token=True)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(batch, tokens, 6, generator=gen).to(DEVICE, dtype)
    x[:, 3] = x[:, 4]  # ties for amax
    size = torch.randint(1, 5, (batch, tokens, 1), generator=gen).to(DEVICE, dtype)

    def grad(fn, inp):
        inp = inp.detach().requires_grad_()
        out = fn(inp)
        out.backward(torch.ones_like(out) + torch.arange(out.shape[1], device=DEVICE, dtype=dtype)[:, None])
        return inp.grad

    for mode in ("sum", "mean", "amax", "prune"):
        got = grad(lambda t: pk.merge(p, t, mode, backend=backend), x)
        want = grad(lambda t: pk.merge(p, t, mode, backend="reference"), x)
        torch.testing.assert_close(got, want, atol=atol, rtol=rtol)
    got = grad(lambda t: pk.merge_wavg(p, t, size, backend=backend)[0], x)
    want = grad(lambda t: pk.merge_wavg(p, t, size, backend="reference")[0], x)
    torch.testing.assert_close(got, want, atol=atol, rtol=rtol)
    y = torch.randn(batch, p.num_out, 6, generator=gen).to(DEVICE, dtype)
    got = grad(lambda t: pk.unmerge(p, t, backend=backend), y)
    want = grad(lambda t: pk.unmerge(p, t, backend="reference"), y)
    torch.testing.assert_close(got, want, atol=atol, rtol=rtol)


@pytest.mark.parametrize("backend", FAST)
def test_merge_is_bitwise_repeatable(backend):
    p = pk.plan(well_separated_metric(2, 40, 8), 15, class_token=True)
    x = torch.randn(2, 40, 64, device=DEVICE)
    first = pk.merge_wavg(p, x, backend=backend)[0]
    for _ in range(3):
        assert torch.equal(pk.merge_wavg(p, x, backend=backend)[0], first)


@pytest.mark.parametrize("backend", runnable_backends())
def test_empty_feature_dim_gives_sizes_of_width_one(backend):
    """D = 0: the merged x is [B, T_out, 0] and the sizes still [B, T_out, 1] on every backend."""
    p = pk.plan(well_separated_metric(2, 9, 4), 3, backend="reference")
    x = torch.zeros(2, 9, 0, device=DEVICE)
    for size in (None, torch.ones(2, 9, 1, device=DEVICE)):
        out_x, out_size = pk.merge_wavg(p, x, size, backend=backend)
        assert out_x.shape == (2, 6, 0) and out_size.shape == (2, 6, 1)
        torch.testing.assert_close(out_size, p.group_sizes[..., None].to(out_size.dtype))


@pytest.mark.parametrize("backend", runnable_backends())
def test_calls_from_several_threads_agree(backend):
    """Concurrent calls are safe on every backend (the Triton interpreter's run one at a time)."""
    import threading

    metric = well_separated_metric(2, 20, 8, seed=9)
    x = torch.randn(2, 20, 16, device=DEVICE)
    want_plan = pk.plan(metric, 5, backend="reference")
    want = pk.merge_wavg(want_plan, x, backend="reference")[0]
    failures = []

    def work():
        try:
            for _ in range(10):
                p = pk.plan(metric, 5, backend=backend)
                got = pk.merge_wavg(p, x, backend=backend)[0]
                if not torch.equal(p.slot, want_plan.slot) or not torch.allclose(got, want, atol=1e-5):
                    failures.append("mismatch")
        except Exception as exc:  # noqa: BLE001 - every failure is reported by the assertion
            failures.append(repr(exc))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
