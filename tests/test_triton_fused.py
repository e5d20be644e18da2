"""The fused single-launch plan kernel (``pitome_kernels/triton/fused.py``).

Checked against the reference (exact plan tensors), against the multi-launch Triton path,
on exact energy ties, and on the dispatch of ``plan``. Without CUDA the kernel runs
through Triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``, set before triton is
imported); there ``tl.sort`` is replaced by an equivalent counting sort (the interpreter
emulates the bitonic network element by element, which is far slower), except in the tests
that ask for ``bitonic=True``. The sm_90 lowering of the kernel is checked by
``test_kernels_lower_for_sm90`` in test_triton_backend.py.
"""

import importlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")

from pitome_kernels import reference  # noqa: E402

fused = importlib.import_module("pitome_kernels.triton.fused")
tplan = importlib.import_module("pitome_kernels.triton.plan")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
VARIANTS = ("pitome", "pitome_text", "pitome_bsm")
LIMIT = fused.FUSED_MAX_T


def _margin(variant):
    return 0.7 if variant == "pitome_text" else 0.4


def _kernel(variant):
    return "gauss" if variant == "pitome_text" else "elu"


def assert_plan_equal(actual, expected):
    for name, a, e in zip(("slot", "offsets", "members"), actual, expected):
        assert a.dtype == torch.int32, name
        assert a.shape == e.shape, name
        assert torch.equal(a.cpu(), e.cpu()), f"{name} differs:\n{a}\n{e}"


def _randn_metric(B, T, C, seed, dtype, variant=None, class_token=False):
    """Gaussian tokens (drawn in float64, then cast). With ``variant``: the first seed from
    ``seed`` on whose float64 energies (of the cast tokens) are at least 2e-6 * max|E| apart
    (~30 float32 ulps, far more than float32 rounding), so that every backend must rank them alike."""
    for s in range(seed, seed + 50):
        g = torch.Generator().manual_seed(s)
        metric = torch.randn(B, T, C, generator=g, dtype=torch.float64).to(dtype)
        if variant is None:
            break
        e = reference.energy(metric.double(), _margin(variant), _kernel(variant), class_token).double()
        e = e.sort(dim=-1).values
        if e.shape[-1] < 2 or (e[:, 1:] - e[:, :-1]).min() > 2e-6 * e.abs().max():
            break
    else:
        raise AssertionError("no well-separated seed found")
    return metric.to(DEVICE)


def _codebook_metric(B, n, class_token, seed, dtype, K=24, C=32):
    """``n`` mergeable tokens drawn (with random multiplicities) from ``K`` random codewords
    with four entries ``+-1/2`` each, scaled by random powers of two.

    Everything upstream of the energy sums is exact in every dtype and every backend:
    ``u`` = the codeword, ``S`` = a multiple of 1/4. Duplicates therefore have bit-equal
    energies (exact ties, broken toward the lower index) and matching scores tie exactly;
    distinct codewords must be separated by far more than float32 rounding, which is
    asserted in float64 below. This gives well-separated random inputs at T' = 1024,
    where plain Gaussian tokens always have energies within a few ulps of each other.
    """
    g = torch.Generator().manual_seed(seed)
    rows, codes = [], []
    for _ in range(B):
        book = torch.zeros(K, C, dtype=torch.float64)
        for k in range(K):
            pos = torch.randperm(C, generator=g)[:4]
            book[k, pos] = 0.5 * (torch.randint(0, 2, (4,), generator=g) * 2 - 1).double()
        cuts = (torch.randperm(n - 1, generator=g)[: K - 1] + 1).sort().values
        sizes = torch.diff(torch.cat([torch.tensor([0]), cuts, torch.tensor([n])]))
        which = torch.repeat_interleave(torch.arange(K), sizes)[torch.randperm(n, generator=g)]
        scale = torch.pow(2.0, torch.randint(-3, 4, (n, 1), generator=g).double())
        tokens = book[which]
        if class_token:
            tokens = torch.cat([torch.randn(1, C, generator=g, dtype=torch.float64), tokens])
            scale = torch.cat([torch.ones(1, 1, dtype=torch.float64), scale])
        rows.append(tokens * scale)
        codes.append(book[which])
    return torch.stack(rows).to(DEVICE, dtype), torch.stack(codes)


def _min_energy_gap(codes, margin, kernel):
    """Smallest float64 energy gap between tokens of different codewords."""
    e = reference._energy_from_similarity(codes @ codes.transpose(1, 2), margin, kernel)
    gap = float("inf")
    for b in range(codes.shape[0]):
        order = e[b].argsort()
        es, cs = e[b][order], codes[b][order]
        differ = (cs[1:] != cs[:-1]).any(-1)
        if differ.any():
            gap = min(gap, (es[1:] - es[:-1])[differ].min().item())
    return gap


def _check(metric, r, variant, class_token, bitonic=None):
    """The plan of ``triton.plan`` (which takes the fused path for every r > 0 here, see
    test_supported_and_dispatch) or of ``plan_fused(bitonic=...)`` equals the reference."""
    args = (metric, r, variant, _margin(variant), class_token, False)
    assert fused.supported(metric, r, variant, class_token) == (r > 0)
    if bitonic is None:
        got = tplan.plan(*args)
    else:
        got = fused.plan_fused(metric, r, variant, _margin(variant), class_token, bitonic=bitonic)
    assert_plan_equal(got, reference.plan(*args))


# ----------------------------------------------------------------------------- vs the reference
def _random_cases():
    cases = []
    for variant in VARIANTS:
        for class_token in (False, True):
            for n in (1, 2, 3, 16, 17, 64, 129):
                if n == 2:
                    # T' = 2: both energies are equal in exact arithmetic (S is symmetric,
                    # S_00 = S_11 = 1), so rounding alone orders them; no two backends can be
                    # asked to agree on that (exact ties are tested below).
                    continue
                # fp32 everywhere; the half types on a rotating subset (interpreter time)
                dtypes = [torch.float32]
                if n in (16, 129) or (n == 17 and class_token):
                    dtypes.append(torch.float16 if class_token else torch.bfloat16)
                if n == 64 and not class_token:
                    dtypes += [torch.float16, torch.bfloat16]
                for dtype in dtypes:
                    cases.append((variant, class_token, n, dtype))
    return cases


@pytest.mark.parametrize("variant,class_token,n,dtype", _random_cases())
def test_fused_matches_reference_random(variant, class_token, n, dtype):
    T = n + int(class_token)
    metric = _randn_metric(2, T, 12 if n < 64 else 40, 100 * n + int(class_token), dtype, variant, class_token)
    for r in sorted({0, 1, n // 2}):
        if 2 * r <= n:
            _check(metric, r, variant, class_token)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("class_token,dtype", [(True, torch.float32), (False, torch.bfloat16),
                                               (True, torch.float16)])
def test_fused_matches_reference_at_limit(variant, class_token, dtype):
    """T' = FUSED_MAX_T: well-separated random codebook tokens (see ``_codebook_metric``)."""
    metric, codes = _codebook_metric(1, LIMIT, class_token, seed=0, dtype=dtype)
    gap = _min_energy_gap(codes, _margin(variant), _kernel(variant))
    assert gap > 2e-5, f"test input not well separated (gap {gap:.2e}); pick another seed"
    rs = (1, LIMIT // 2) if dtype == torch.float32 else (LIMIT // 3,)
    for r in rs:
        _check(metric, r, variant, class_token)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_matches_reference_codebook_mid(variant):
    """Codebook tokens across tile boundaries (T' = 200: 4 row/column tiles, BLOCK_T = 256)."""
    metric, codes = _codebook_metric(2, 200, True, seed=3, dtype=torch.float32, K=12)
    assert _min_energy_gap(codes, _margin(variant), _kernel(variant)) > 2e-5
    for r in (1, 37, 100):
        _check(metric, r, variant, True)


# ----------------------------------------------------------------------------- vs multi-launch
@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_equals_multi_launch(variant):
    """Both Triton paths on the same inputs (the limit, and a plain Gaussian case) give the
    same plan: both call the same normalise, energy and matching helpers with the same tile
    sizes, so their energies and scores agree bit for bit."""
    metric, _ = _codebook_metric(1, LIMIT, False, seed=1, dtype=torch.float32)
    args = (metric, LIMIT // 3, variant, _margin(variant), False, False)
    assert_plan_equal(tplan.plan_fused(*args), tplan.plan_multi_launch(*args))
    metric = _randn_metric(3, 98, 24, 7, torch.bfloat16, variant, True)
    args = (metric, 30, variant, _margin(variant), True, False)
    assert_plan_equal(tplan.plan_fused(*args), tplan.plan_multi_launch(*args))


# ----------------------------------------------------------------------------- ties
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("class_token", [False, True])
def test_fused_ties(variant, class_token):
    """Exact ties break toward the lower index: every token identical (all energies and all
    scores tie), and one-hot clusters of distinct sizes across several column tiles."""
    n = 150
    T = n + int(class_token)
    same = torch.ones(2, T, 8, device=DEVICE) * 3.0
    g = torch.Generator().manual_seed(5)
    sizes = torch.tensor([7, 18, 29, 41, 55])
    cluster = torch.repeat_interleave(torch.arange(5), sizes)
    which = torch.stack([cluster[torch.randperm(n, generator=g)] for _ in range(2)])
    onehot = torch.nn.functional.one_hot(which, 16).float() * 3.0
    if class_token:
        onehot = torch.cat([torch.randn(2, 1, 16, generator=g), onehot], 1)
    for metric in (same, onehot.to(DEVICE)):
        for r in (1, n // 4, n // 2):
            _check(metric, r, variant, class_token)


# ----------------------------------------------------------------------------- the GPU sort
@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_bitonic_sort_path(variant):
    """The ``tl.sort`` path (the GPU default) also runs under the interpreter: small sizes,
    duplicates included (codebook tokens)."""
    metric = _randn_metric(2, 18, 12, 17, torch.float32, variant, True)
    for r in (1, 8):
        _check(metric, r, variant, True, bitonic=True)
    metric, _ = _codebook_metric(1, 40, False, seed=2, dtype=torch.float32, K=6)
    _check(metric, 20, variant, False, bitonic=True)


# ----------------------------------------------------------------------------- dispatch
def test_supported_and_dispatch(monkeypatch):
    m = torch.zeros(2, LIMIT + 1, 8, device=DEVICE)
    assert fused.supported(m, 3, "pitome", True)
    assert not fused.supported(m, 3, "pitome", False)  # T' = LIMIT + 1
    assert not fused.supported(m, 0, "pitome", True)  # r = 0: the identity plan
    assert not fused.supported(m, 3, "tome", True)
    assert not fused.supported(m.double(), 3, "pitome_bsm", True)
    assert not fused.supported(m[:, :9], 5, "pitome_text", True)  # 2r > T'
    assert not fused.supported(m[:0], 1, "pitome", True)  # empty batch
    calls = []
    real = tplan._plan_fused_kernel
    monkeypatch.setattr(tplan, "_plan_fused_kernel", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    metric = _randn_metric(2, 20, 8, 3, torch.float32)
    for variant in (*VARIANTS, "tome"):
        args = (metric, 5, variant, 0.5, True, False)
        assert_plan_equal(tplan.plan(*args), reference.plan(*args))
    assert calls == list(VARIANTS)
