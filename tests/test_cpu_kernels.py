"""The C++ CPU kernels at model sizes: the tiled energy's block and thread splits, the
cost-balanced merge partition and the rows threads take from each other, every ISA clone,
thread-count invariance, and the memory of a 16,384-token plan. (tests/test_backends.py
covers the small and odd shapes.)"""

import json
import os
import subprocess
import sys

import pytest
import torch

import pitome_kernels as pk
from pitome_kernels.cpu_isa import CPU_ISAS
from _support import well_separated_metric

pytestmark = pytest.mark.skipif(pk.available("cpu", torch.device("cpu")) is not None,
                                reason="the C++ extension is not loaded")

VARIANTS = ["pitome", "pitome_text", "pitome_bsm", "tome"]


def _margin(variant):
    return 0.7 if variant == "pitome_text" else 0.5


def _plan(metric, r, variant, backend):
    return pk.plan(metric, r, variant=variant, margin=_margin(variant), class_token=True, backend=backend)


def _assert_same_plan(got, want):
    for name in ("slot", "offsets", "members"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


# float64 keeps every energy gap far above rounding, so plans must match exactly even at
# T' = 1099, where the energy runs over many tile blocks and both threads.
@pytest.mark.parametrize("tokens", [197, 577, 1100])
@pytest.mark.parametrize("variant", VARIANTS)
def test_plan_matches_reference_at_model_sizes(tokens, variant):
    metric = well_separated_metric(2, tokens, 64, seed=tokens, dtype=torch.float64)
    r = (tokens - 1) // 2 if variant == "pitome_bsm" else (tokens - 1) // 10
    _assert_same_plan(_plan(metric, r, variant, "cpu"), _plan(metric, r, variant, "reference"))


@pytest.mark.parametrize("tokens", [197, 1100])
@pytest.mark.parametrize("kernel", ["elu", "gauss"])
def test_energy_float32_at_model_sizes(tokens, kernel):
    metric = well_separated_metric(2, tokens, 64, seed=7)
    margin = 0.7 if kernel == "gauss" else 0.5
    got = pk.energy(metric, margin=margin, kernel=kernel, class_token=True, backend="cpu")
    want = pk.energy(metric.double(), margin=margin, kernel=kernel, class_token=True, backend="reference")
    torch.testing.assert_close(got, want.float(), atol=1e-5, rtol=1e-5)


# The ELU's exp runs without its range clamps while margin <= 80 (S - margin >= -81 where
# it is used) and with them above: both sides of the switch, and margins where exp
# underflows (S - margin < -87.3) or every z > 0.
@pytest.mark.parametrize("margin", [-90.0, -1.0, 79.5, 80.0, 80.5, 86.0, 88.5, 200.0])
def test_energy_elu_margins_across_the_exp_range(margin):
    metric = well_separated_metric(2, 197, 64, seed=3)
    got = pk.energy(metric, margin=margin, class_token=True, backend="cpu")
    want = pk.energy(metric.double(), margin=margin, class_token=True, backend="reference")
    torch.testing.assert_close(got, want.float(), atol=1e-5, rtol=1e-5)


# Duplicated one-hot tokens: ToMe's scores (every even token's best similarity) tie bit for
# bit, so the ranking must put the lower index first: T = 150 ranks 75 scores with the
# vector sort (up to 256 values), T = 600 ranks 300 with the radix sort.
@pytest.mark.parametrize("tokens", [150, 600])
def test_tome_ranking_breaks_exact_ties_toward_the_lower_index(tokens):
    g = torch.Generator().manual_seed(tokens)
    cluster = torch.randint(0, 5, (2, tokens), generator=g)
    metric = torch.nn.functional.one_hot(cluster, 16).float() * 3.0
    for r in (1, tokens // 8, tokens // 2 - 2):
        _assert_same_plan(_plan(metric, r, "tome", "cpu"), _plan(metric, r, "tome", "reference"))


# With a team of threads the ranking is sorted in runs (one per thread) and merged, and
# ToMe's A rows are split between the threads (each normalising B itself): every team size
# (runs of 99, 66, 40, 25 rows at T' = 196; 100 down to 38 at T' = 300) must give the
# one-thread plan, and the reference's.
@pytest.mark.parametrize("tokens", [197, 301])
@pytest.mark.parametrize("variant", VARIANTS)
def test_plan_for_every_team_size(tokens, variant):
    metric = well_separated_metric(1, tokens, 64, seed=tokens)
    r = (tokens - 1) // 4
    want = _plan(metric, r, variant, "reference")
    threads = torch.get_num_threads()
    try:
        for team in (1, 2, 3, 5, 8):
            torch.set_num_threads(team)
            _assert_same_plan(_plan(metric, r, variant, "cpu"), want)
    finally:
        torch.set_num_threads(threads)


# ToMe's matching reads the metric's even and odd rows in place (row stride 2C), converting
# float16/bfloat16 rows on the way; the distillation token's column is masked.
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("distill_token", [False, True])
def test_tome_plan_from_strided_rows(dtype, distill_token):
    metric = well_separated_metric(1, 301, 48, seed=11).to(dtype)
    kw = dict(variant="tome", class_token=True, distill_token=distill_token)
    threads = torch.get_num_threads()
    try:
        for team in (1, 2):
            torch.set_num_threads(team)
            got = pk.plan(metric, 70, backend="cpu", **kw)
            _assert_same_plan(got, pk.plan(metric, 70, backend="reference", **kw))
    finally:
        torch.set_num_threads(threads)


def _merge_all(p, x, size):
    outs = [pk.merge(p, x, mode, backend="cpu") for mode in ("mean", "sum", "amax", "prune")]
    return outs + list(pk.merge_wavg(p, x, size, backend="cpu")) + [pk.unmerge(p, outs[0], backend="cpu")]


@pytest.mark.parametrize("batch", [1, 3])
def test_results_do_not_depend_on_thread_count(batch):
    metric = well_separated_metric(batch, 197, 64, seed=3)
    x = torch.randn(batch, 197, 768, generator=torch.Generator().manual_seed(4))
    size = torch.randint(1, 4, (batch, 197, 1), generator=torch.Generator().manual_seed(5)).float()
    threads = torch.get_num_threads()

    def run():
        p = _plan(metric, 19, "pitome", "cpu")
        e = pk.energy(metric, margin=0.5, class_token=True, backend="cpu")
        return p, e, _merge_all(p, x, size)

    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(2)
        two = run()
    finally:
        torch.set_num_threads(threads)
    _assert_same_plan(one[0], two[0])
    assert torch.equal(one[1], two[1])
    for a, b in zip(one[2], two[2]):
        assert torch.equal(a, b)  # bitwise: fixed member order, no atomics


def test_rows_shared_between_threads_are_each_written_once():
    """8 threads on this machine's cores are preempted mid-call, so threads finish their
    shares at different times and take rows from each other's; every output must still
    equal the one-thread result bitwise. Before each call a NaN-filled buffer of the output's
    size is freed, so that a row nobody wrote would (very likely) read NaN."""
    metric = well_separated_metric(4, 197, 64, seed=21)
    gen = torch.Generator().manual_seed(22)
    x = torch.randn(4, 197, 768, generator=gen)
    size = torch.randint(1, 4, (4, 197, 1), generator=gen).float()
    p = _plan(metric, 60, "pitome", "cpu")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        want = _merge_all(p, x, size)
        torch.set_num_threads(8)
        for _ in range(30):
            for t in want:
                torch.full_like(t, float("nan"))
            got = _merge_all(p, x, size)
            for a, b in zip(got, want):
                assert torch.equal(a, b)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dim", [40, 64, 100, 200])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_group_sums_at_every_width(dim, dtype):
    """float32 groups take a 64-feature register path on AVX-512, then the generic loop for
    the rest of the row; every width and dtype must match the reference."""
    metric = well_separated_metric(2, 150, 32, seed=dim)
    gen = torch.Generator().manual_seed(dim)
    x = torch.randn(2, 150, dim, generator=gen).to(dtype)
    size = torch.randint(1, 5, (2, 150, 1), generator=gen).to(dtype)
    p = _plan(metric, 70, "pitome_bsm", "reference")
    tol = dict(atol=1e-5, rtol=1e-5) if dtype != torch.bfloat16 else dict(atol=1e-2, rtol=1e-2)
    for mode in ("sum", "mean"):
        torch.testing.assert_close(pk.merge(p, x, mode, backend="cpu"), pk.merge(p, x, mode, backend="reference"),
                                   **tol)
    for got, want in zip(pk.merge_wavg(p, x, size, backend="cpu"), pk.merge_wavg(p, x, size, backend="reference")):
        torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("mode", ["mean", "sum", "amax", "prune", "wavg"])
def test_merge_and_backward_at_model_size(mode):
    metric = well_separated_metric(2, 197, 64, seed=11)
    p = _plan(metric, 48, "pitome_bsm", "reference")
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(2, 197, 768, generator=gen)
    size = torch.randint(1, 5, (2, 197, 1), generator=gen).float()
    grads = []
    outs = []
    for backend in ("cpu", "reference"):
        xb = x.clone().requires_grad_()
        if mode == "wavg":
            out, out_size = pk.merge_wavg(p, xb, size, backend=backend)
            outs.append((out, out_size))
        else:
            out = pk.merge(p, xb, mode, backend=backend)
            outs.append((out,))
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        grads.append(xb.grad)
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-5)


_ISA_SCRIPT = """
import json, torch, pitome_kernels as pk
g = torch.Generator().manual_seed(0)
m = torch.randn(2, 300, 64, generator=g, dtype=torch.float64)
x = torch.randn(2, 300, 40, generator=g)
out = {}
for v in ("pitome", "pitome_text", "pitome_bsm", "tome"):
    kw = dict(variant=v, margin=0.7 if v == "pitome_text" else 0.5, class_token=True)
    a, b = pk.plan(m, 60, backend="cpu", **kw), pk.plan(m, 60, backend="reference", **kw)
    out[v] = all(torch.equal(getattr(a, n), getattr(b, n)) for n in ("slot", "offsets", "members"))
e = pk.energy(m.float(), margin=0.5, class_token=True, backend="cpu")
out["energy_err"] = (e - pk.energy(m, margin=0.5, class_token=True, backend="reference").float()).abs().max().item()
p = pk.plan(m, 60, margin=0.5, class_token=True, backend="reference")
out["wavg_err"] = (pk.merge_wavg(p, x, backend="cpu")[0] - pk.merge_wavg(p, x, backend="reference")[0]).abs().max().item()
print(json.dumps(out))
"""


@pytest.fixture
def restore_isa():
    before = pk.cpu_isa()
    yield
    pk.set_cpu_isa(before)


# Each clone runs vectors of its own register width (16, 8 or 4 floats) and register tiles
# of 8 or 4 rows: C = 19 and 37 leave feature tails, T' = 196 and 299 leave short row
# blocks and diagonal tiles of every offset, and 299 keys go past the vector sort's 256.
@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("tokens,channels", [(197, 64), (197, 19), (300, 37), (23, 64)])
def test_every_isa_clone_set_at_run_time_matches_reference(isa, tokens, channels, restore_isa):
    used = pk.set_cpu_isa(isa)
    assert pk.cpu_isa() == used
    assert used == max(isa, pk.supported_cpu_isa(), key=CPU_ISAS.index)  # CPU_ISAS: best first
    metric = well_separated_metric(2, tokens, channels, seed=channels, dtype=torch.float64)
    for variant in VARIANTS:
        r = (tokens - 1) // 2 if variant == "pitome_bsm" else (tokens - 1) // 5
        _assert_same_plan(_plan(metric, r, variant, "cpu"), _plan(metric, r, variant, "reference"))
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        m = metric.to(dtype)
        for kernel, margin in (("elu", 0.5), ("gauss", 0.7)):
            got = pk.energy(m, margin=margin, kernel=kernel, class_token=True, backend="cpu")
            want = pk.energy(m.double(), margin=margin, kernel=kernel, class_token=True, backend="reference")
            torch.testing.assert_close(got, want.float(), atol=1e-5, rtol=1e-5)
    # the same clone is bitwise repeatable
    m = metric.float()
    assert torch.equal(pk.energy(m, margin=0.5, backend="cpu"), pk.energy(m, margin=0.5, backend="cpu"))


# The merges' row kernels take 4 vectors of features a step (64, 32 or 16 floats): K = 773
# and 40 leave tails for the generic loops; groups of one member are copied whole.
@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("features", [773, 40])
def test_every_isa_clone_merges_match_reference(isa, features, restore_isa):
    pk.set_cpu_isa(isa)
    g = torch.Generator().manual_seed(features)
    metric = torch.randn(2, 197, 64, generator=g)
    x = torch.randn(2, 197, features, generator=g)
    size = torch.randint(1, 4, (2, 197, 1), generator=g).float()
    p = pk.plan(metric, 40, margin=0.5, class_token=True, backend="reference")
    for mode in ("mean", "sum", "amax", "prune"):
        torch.testing.assert_close(pk.merge(p, x, mode, backend="cpu"), pk.merge(p, x, mode, backend="reference"),
                                   atol=1e-5, rtol=1e-5)
    for got, want in zip(pk.merge_wavg(p, x, size, backend="cpu"), pk.merge_wavg(p, x, size, backend="reference")):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    y = torch.randn(2, 197 - 40, features, generator=g)
    assert torch.equal(pk.unmerge(p, y, backend="cpu"), pk.unmerge(p, y, backend="reference"))


def test_set_cpu_isa_rejects_unknown_names(restore_isa):
    before = pk.cpu_isa()
    with pytest.raises(ValueError, match="isa must be one of"):
        pk.set_cpu_isa("sse4")
    assert pk.cpu_isa() == before


@pytest.mark.parametrize("isa", ["avx2", "default"])
def test_lower_isa_clones_match_reference(isa):
    """PITOME_CPU_ISA forces a lower clone of the vector kernels (the best one runs above)."""
    env = dict(os.environ, PITOME_CPU_ISA=isa)
    proc = subprocess.run([sys.executable, "-c", _ISA_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(out[v] for v in VARIANTS), out
    assert out["energy_err"] < 1e-5 and out["wavg_err"] < 1e-5, out


# Identical tokens (identical metric rows) must get the same energy to the bit, so that
# their tie goes to the lower index as in the reference (torch.sort, stable): each row's
# energy is summed in an order that does not depend on where the row sits (a tile's row
# or column side, the diagonal tile, a full or a short register tile, the remainder
# block), and its similarities do not either. Each group copies its first token (in
# mergeable-token indices) onto the others: within and across register tiles, across tile
# blocks (block 0 holds the n % 32 rows left over, n % 16 in float64) and, at T = 600, in
# units of both threads' shares.
_COPIES = {
    20: [(5, 13), (2, 3)],
    77: [(0, -1), (3, 4), (9, 40), (33, 17), (12, 13)],
    600: [(0, -1), (3, 22, 23), (7, 300), (100, 101), (575, 590), (40, 47)],
}
_CHANNELS = {20: 8, 77: 19, 600: 64}


def _with_copies(tokens, seed, class_token, groups, dtype=torch.float32):
    off = int(class_token)
    n = tokens - off
    gen = torch.Generator().manual_seed(seed)
    metric = torch.randn(2 if tokens == 600 else 1, tokens, _CHANNELS[tokens], generator=gen, dtype=torch.float64)
    groups = [[k % n for k in group] for group in groups]
    for first, *copies in groups:
        for k in copies:
            metric[:, k + off] = metric[:, first + off]
    return metric.to(dtype), groups


@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("tokens", [20, 77, 600])
@pytest.mark.parametrize("class_token", [False, True])
def test_identical_tokens_get_bitwise_equal_energies(isa, tokens, class_token, restore_isa):
    pk.set_cpu_isa(isa)
    for seed in range(50 if tokens == 20 else 4):
        base, groups = _with_copies(tokens, seed, class_token, _COPIES[tokens])
        for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            for kernel, margin in (("elu", 0.5), ("gauss", 0.7)):
                e = pk.energy(base.to(dtype), margin=margin, kernel=kernel, class_token=class_token, backend="cpu")
                for first, *copies in groups:
                    for k in copies:
                        assert torch.equal(e[:, first], e[:, k]), (seed, dtype, kernel, first, k, e[:, first], e[:, k])


def _exact_metric(batch, tokens, channels, seed):
    """Integer rows of norm 8 (C < 64) or 16 (C = 64): u = metric / norm and every u_i . u_j
    are exact in float16/bfloat16 and up, summed in any order."""
    gen = torch.Generator().manual_seed(seed)
    top, norm2 = (3, 256) if channels == 64 else (4 if channels < 16 else 3, 64)
    rows = []
    while sum(len(x) for x in rows) < batch * tokens:
        x = torch.randint(-top, top + 1, (8192, channels), generator=gen)
        rows.append(x[(x * x).sum(1) == norm2])
    return torch.cat(rows)[: batch * tokens].view(batch, tokens, channels).double()


# ... and so every plan with tied tokens is the reference's: the ranking, the heads and
# protected tokens, the members and the slots. On metrics whose similarities are exact
# (only the energies' sums round) and on random ones.
@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("tokens,dtype", [(20, torch.float32), (20, torch.float64), (77, torch.bfloat16),
                                          (600, torch.float64)])
@pytest.mark.parametrize("class_token", [False, True])
@pytest.mark.parametrize("exact", [True, False], ids=["exact", "random"])
def test_plans_with_identical_tokens_equal_the_reference(isa, tokens, dtype, class_token, exact, restore_isa):
    pk.set_cpu_isa(isa)
    off = int(class_token)
    n = tokens - off
    for seed in range({20: 50, 77: 4, 600: 2}[tokens]):
        batch = 2 if tokens == 600 else 1
        if exact:
            base = _exact_metric(batch, tokens, _CHANNELS[tokens], seed)
        else:
            gen = torch.Generator().manual_seed(seed)
            base = torch.randn(batch, tokens, _CHANNELS[tokens], generator=gen, dtype=torch.float64)
        for first, *copies in _COPIES[tokens]:
            metric = base.clone()
            for k in copies:
                metric[:, k % n + off] = metric[:, first % n + off]
            metric = metric.to(dtype)
            for variant in VARIANTS:
                for r in (1, n // 4, n // 2):
                    kw = dict(variant=variant, margin=_margin(variant), class_token=class_token)
                    got = pk.plan(metric, r, backend="cpu", **kw)
                    want = pk.plan(metric, r, backend="reference", **kw)
                    for name in ("slot", "offsets", "members"):
                        assert torch.equal(getattr(got, name), getattr(want, name)), (seed, first, variant, r, name)


# One-channel rows normalise to exactly +-1, as the reference divides them (not to within an
# ulp of it, which a multiply by the reciprocal gives): all their similarities are then
# exact ties, which go to the lower index as in the reference. (Two thirds of the rows are
# positive: with as many negative rows, the + and - rows' energies would be equal sums of
# differently ordered terms, a tie only in exact arithmetic, which rounding decides.)
@pytest.mark.parametrize("isa", CPU_ISAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("tokens", [5, 33, 197, 600])
def test_one_channel_plans_equal_the_reference(isa, dtype, tokens, restore_isa):
    pk.set_cpu_isa(isa)
    gen = torch.Generator().manual_seed(tokens)
    signs = torch.where(torch.arange(tokens) <= 2 * tokens // 3, 1.0, -1.0).double()
    signs = torch.stack([signs[torch.randperm(tokens, generator=gen)] for _ in range(2)])[..., None]
    # magnitudes over many binades, so that most reciprocals round
    metric = signs * torch.exp(5 * torch.randn(2, tokens, 1, generator=gen, dtype=torch.float64))
    metric = metric.to(dtype)
    for variant in VARIANTS:
        for class_token in (False, True):
            r = (tokens - int(class_token)) // 3
            kw = dict(variant=variant, margin=_margin(variant), class_token=class_token)
            got, want = pk.plan(metric, r, backend="cpu", **kw), pk.plan(metric, r, backend="reference", **kw)
            for name in ("slot", "offsets", "members"):
                assert torch.equal(getattr(got, name), getattr(want, name)), (variant, class_token, name)


_MEMORY_SCRIPT = """
import json, torch, pitome_kernels as pk
def peak_mib():
    with open("/proc/self/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) / 1024
metric = torch.randn(2, 16384, 64)
pk.plan(metric[:, :64], 8, variant="pitome_bsm", class_token=True, backend="cpu")  # warm up
before = peak_mib()
p = pk.plan(metric, 8191, variant="pitome_bsm", class_token=True, backend="cpu")
grown = peak_mib() - before
sizes = p.group_sizes
print(json.dumps({"grown": grown, "out": p.num_out, "members": int(sizes.sum()), "min": int(sizes.min())}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="peak RSS is read from /proc (Linux)")
def test_16k_token_plan_memory_is_linear():
    """B=2, T=16,384, C=64: S would take 2 GiB; the plan must raise peak memory < 256 MiB."""
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["out"] == 16384 - 8191 and out["members"] == 2 * 16384 and out["min"] >= 1, out
    assert out["grown"] < 256, f"peak RSS grew by {out['grown']:.1f} MiB"


@pytest.mark.parametrize("variant", ["pitome", "pitome_bsm", "pitome_text", "tome"])
@pytest.mark.parametrize("case", ["nan_token", "nan_entry", "inf_entry", "zero_token"])
@pytest.mark.parametrize("class_token", [False, True])
def test_plans_of_non_finite_and_zero_tokens_equal_the_reference(variant, case, class_token):
    """NaN energies and similarities rank first and win the matching (torch.sort and
    torch.argmax do so), a zero token's norm is clamped: the plan still equals the
    reference's, through the vector lane reductions as well."""
    gen = torch.Generator().manual_seed(5)
    m = torch.randn(2, 60, 16, generator=gen)
    if case == "nan_token":
        m[0, 7] = float("nan")
    elif case == "nan_entry":
        m[1, 11, 3] = float("nan")
        m[0, 30, 0] = float("nan")
    elif case == "inf_entry":
        m[0, 5, 2] = float("inf")
        m[1, 8, 1] = -float("inf")
    else:
        m[0, 3] = 0
        m[1, 40] = 0
    got = pk.plan(m, 10, variant=variant, class_token=class_token, backend="cpu")
    want = pk.plan(m, 10, variant=variant, class_token=class_token, backend="reference")
    for a, b in zip(got[:3], want[:3]):
        assert torch.equal(a, b)


def test_kernels_raise_named_type_and_value_errors():
    """The C++ kernels check their own arguments (C++ callers get the same errors): a wrong
    dtype is a TypeError, a wrong shape or value a ValueError, each naming the argument."""
    metric = torch.randn(2, 11, 8)
    x = torch.randn(2, 11, 4)
    slot, offsets, members = torch.ops.pitome.cpu_plan(metric, 3, "pitome", 0.5, True, False)
    with pytest.raises(TypeError, match="int32"):
        torch.ops.pitome.cpu_merge(x, slot.long(), offsets, members, "mean")
    with pytest.raises(ValueError, match=r"slot must be \[B, T\]"):
        torch.ops.pitome.cpu_merge(x[:, :5], slot, offsets, members, "mean")
    with pytest.raises(ValueError, match="mode"):
        torch.ops.pitome.cpu_merge(x, slot, offsets, members, "median")
    with pytest.raises(ValueError, match="invalid plan"):
        torch.ops.pitome.cpu_merge(x, slot, offsets, members.flip(1).contiguous(), "mean")
    with pytest.raises(TypeError, match="metric"):
        torch.ops.pitome.cpu_energy(metric.int(), 0.5, "elu", False)


@pytest.mark.parametrize("r", [2**62, 2**63 - 1])
def test_huge_r_is_refused_without_overflow(r):
    """2r would overflow int64: the check compares r with T' / 2 instead."""
    with pytest.raises(ValueError, match="2r <= T'"):
        torch.ops.pitome.cpu_plan(torch.randn(1, 9, 4), r, "pitome", 0.5, False, False)
