"""Property-based differential tests: random shapes, r, flags, variants, modes, dtypes and
metric structures (random, copies of a token, clusters, one-hot), every runnable backend
against the reference. ``PITOME_HYPOTHESIS_PROFILE=long`` runs many more examples."""

import os

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

import pitome_kernels as pk  # noqa: E402
from _support import DEVICE, runnable_backends  # noqa: E402

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("PITOME_HYPOTHESIS_PROFILE", "ci"))

BACKENDS = [b for b in runnable_backends() if b != "reference"]
VARIANTS = ["pitome", "pitome_text", "pitome_bsm", "tome"]
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@st.composite
def layers(draw, max_tokens=600):
    """(metric, x, size, r, variant, class_token, distill_token) of one layer."""
    variant = draw(st.sampled_from(VARIANTS))
    class_token = draw(st.booleans())
    distill_token = variant == "tome" and class_token and draw(st.booleans())
    tokens = draw(st.integers(1 + int(class_token) + int(distill_token), max_tokens))
    batch = draw(st.integers(1, 3))
    channels = draw(st.integers(1, 40))
    dim = draw(st.integers(0, 24))
    mergeable = tokens - int(class_token)
    r = draw(st.integers(0, tokens if variant == "tome" else mergeable // 2))
    seed = draw(st.integers(0, 2**31 - 1))
    structure = draw(st.sampled_from(["random", "copies", "clusters", "one-hot"]))
    gen = torch.Generator().manual_seed(seed)
    # float64 metrics: the reference's plan is then decided by the values, not by rounding
    metric = torch.randn(batch, tokens, channels, generator=gen, dtype=torch.float64)
    if structure == "copies":
        # copies of one token: every tie among them is exact on every backend. Copies of
        # several tokens would also tie values that are equal only in exact arithmetic (the
        # self-similarities of two copied tokens), which rounding orders (see SPEC.md).
        src = torch.randint(0, tokens, (1,), generator=gen)
        dst = torch.randint(0, tokens, (tokens // 3 + 1,), generator=gen)
        metric[:, dst] = metric[:, src]
    elif structure == "clusters":
        centres = torch.randn(batch, 4, channels, generator=gen, dtype=torch.float64)
        which = torch.randint(0, 4, (tokens,), generator=gen)
        metric = centres[:, which] + 1e-3 * metric
    elif structure == "one-hot":
        metric = torch.nn.functional.one_hot(torch.randint(0, channels, (batch, tokens), generator=gen),
                                             channels).to(torch.float64)
    x = torch.randn(batch, tokens, dim, generator=gen)
    size = torch.randint(1, 5, (batch, tokens, 1), generator=gen).float()
    return metric.to(DEVICE), x.to(DEVICE), size.to(DEVICE), r, variant, class_token, distill_token


def _plan(layer, backend):
    metric, _, _, r, variant, class_token, distill_token = layer
    return pk.plan(metric, r, variant=variant, margin=0.4 if variant == "pitome_text" else 0.5,
                   class_token=class_token, distill_token=distill_token, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@given(layer=layers())
def test_plan_equals_the_reference(backend, layer):
    got, want = _plan(layer, backend), _plan(layer, "reference")
    assert got.r == want.r
    for name in ("slot", "offsets", "members"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


@pytest.mark.parametrize("backend", BACKENDS)
@given(layer=layers(max_tokens=200), mode=st.sampled_from(["mean", "sum", "amax", "prune", "wavg", "unmerge"]),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]), with_size=st.booleans())
def test_merges_equal_the_reference(backend, layer, mode, dtype, with_size):
    p = _plan(layer, "reference")
    x, size = layer[1].to(dtype), layer[2].to(dtype) if with_size else None
    tol = dict(atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])
    if mode == "wavg":
        got, want = pk.merge_wavg(p, x, size, backend=backend), pk.merge_wavg(p, x, size, backend="reference")
        torch.testing.assert_close(got[0], want[0], **tol)
        torch.testing.assert_close(got[1], want[1], **tol)
    elif mode == "unmerge":
        y = x[:, : p.num_out]
        assert torch.equal(pk.unmerge(p, y, backend=backend), pk.unmerge(p, y, backend="reference"))
    else:
        torch.testing.assert_close(pk.merge(p, x, mode, backend=backend), pk.merge(p, x, mode, backend="reference"),
                                   **tol)


@given(layer=layers(max_tokens=300))
def test_reference_similarity_is_exactly_symmetric_and_equal_for_copies(layer):
    """The oracle's S: S_ij == S_ji to the bit, and copies of a token get identical rows
    (a matmul's blocking may round them differently and so decide an exact tie)."""
    from pitome_kernels.reference import similarity
    metric = layer[0]
    s = similarity(metric)
    assert torch.equal(s, s.transpose(-1, -2))
    _, first = torch.unique(metric[0], dim=0, return_inverse=True)
    lead = torch.zeros_like(first)
    for i in range(first.numel() - 1, -1, -1):
        lead[first == first[i]] = i
    assert torch.equal(s[0], s[0, lead][:, lead])
