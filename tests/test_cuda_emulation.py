"""The CUDA kernels (csrc/cuda) run on the CPU through the emulator (csrc/emulation): every
thread a fiber, barriers and warp shuffles honoured, the fiber order forward, reverse or
shuffled. They must equal the reference as on a GPU: the golden vectors, plans bitwise on
well-separated metrics, merges and their gradients in every dtype. A GPU run still checks
what emulation cannot: timing, memory ordering between blocks, the device math library."""

import pytest
import torch

from pitome_kernels import reference
from _cuda_emulation import emulated_cuda
from _support import golden_r, load_golden, well_separated_metric

VARIANTS = ("pitome", "pitome_text", "pitome_bsm", "tome")
ORDERS = ("forward", "reverse", "shuffle")
_, CASES = load_golden()


@pytest.fixture(scope="module")
def emu():
    module = emulated_cuda()
    yield module
    module.set_schedule("forward")


@pytest.fixture(params=ORDERS)
def order(request, emu):
    emu.set_schedule(request.param, 7)
    return request.param


# --- the emulator itself -------------------------------------------------------------------


def test_barriers_and_shuffles_are_honoured(emu, order):
    rotated = emu.run_selftest("rotate", 3)
    assert rotated == [b * 1000 + (t + 1) % 64 for b in range(3) for t in range(64)]
    assert emu.run_selftest("warp_sum", 1) == [32 * 31 // 2] * 32 + [32 * 31 // 2 + 32 * 32] * 32


def test_a_missing_barrier_changes_the_result_with_the_order(emu):
    results = {}
    for order in ("forward", "reverse"):
        emu.set_schedule(order)
        results[order] = emu.run_selftest("rotate_without_barrier", 2)
    assert results["forward"] != results["reverse"]


@pytest.mark.parametrize("name,message", [
    ("barrier_against_shuffle", "cannot go on"),
    ("shuffle_after_exit", "lanes have exited"),
])
def test_what_would_hang_or_be_undefined_raises(emu, name, message):
    with pytest.raises(RuntimeError, match=message):
        emu.run_selftest(name, 1)


def test_kernels_refuse_tensors_of_other_devices(emu):
    with pytest.raises(RuntimeError, match="metric must be a CUDA tensor"):
        emu.cuda_energy(torch.randn(1, 4, 3, device="meta"), 0.5, "elu", False)
    for plan in (emu.cuda_plan, emu.cuda_fused_plan, emu.cuda_multi_launch_plan):
        with pytest.raises(RuntimeError, match="metric must be a CUDA tensor"):
            plan(torch.randn(1, 8, 3, device="meta"), 2, "pitome", 0.5, False, False)


# --- the CUDA kernels ----------------------------------------------------------------------


def _case_id(case):
    return f"{case['variant']}-{case['mode']}-T{case['input'][1]}-cls{int(case['class_token'])}-r{case['ratio']}"


@pytest.mark.parametrize("case", CASES, ids=[f"{k}-{_case_id(c)}" for k, c in enumerate(CASES)])
def test_golden_case(golden, emu, case):
    inputs, _ = golden
    item = inputs[tuple(case["input"])]
    metric, x, size = item["metric"], item["x"], item["size"]
    variant, cls = case["variant"], case["class_token"]
    if "energy" in case:
        kernel = "gauss" if variant == "pitome_text" else "elu"
        torch.testing.assert_close(emu.cuda_energy(metric, case["margin"], kernel, cls), case["energy"],
                                   atol=1e-5, rtol=1e-5)
    plan = emu.cuda_plan(metric, golden_r(case), variant, case["margin"], cls, case["distill_token"])
    assert plan[1].shape[1] - 1 == metric.shape[1] - case["r"]
    mode = case["mode"]
    if mode == "wavg":
        out_x, out_size = emu.cuda_merge_wavg(x, size if case["use_size"] else None, *plan)
        torch.testing.assert_close(out_x, case["out_x"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out_size, case["out_size"], atol=1e-5, rtol=1e-5)
    elif mode == "source":
        eye = torch.eye(metric.shape[1]).expand(x.shape[0], -1, -1)
        assert torch.equal(emu.cuda_merge(eye, *plan, "amax").to(case["out_source"].dtype), case["out_source"])
    else:
        torch.testing.assert_close(emu.cuda_merge(x, *plan, mode), case["out_x"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("batch,tokens,channels", [(2, 2, 3), (2, 17, 8), (2, 197, 64), (1, 577, 80), (1, 1025, 32)])
@pytest.mark.parametrize("class_token", [False, True])
def test_plans_equal_the_reference(emu, order, variant, batch, tokens, channels, class_token):
    metric = well_separated_metric(batch, tokens, channels, seed=tokens, dtype=torch.float64, device="cpu")
    n = tokens - int(class_token)
    rs = sorted({r for r in (1, n // 4, n // 2) if r <= n // 2}) if tokens < 500 else [n // 4]
    for r in rs:
        args = (metric, r, variant, 0.5, class_token, variant == "tome" and class_token)
        got, want = emu.cuda_plan(*args), reference.plan(*args)
        for name, a, b in zip(("slot", "offsets", "members"), got, want):
            assert torch.equal(a, b), (name, r)


FUSED_VARIANTS = ("pitome", "pitome_text", "pitome_bsm", "tome")


def _metric_with_ties(batch, tokens, channels, dtype, seed):
    """Random rows, a third of them copies of others (exact ties in energy and matching)."""
    gen = torch.Generator().manual_seed(seed)
    metric = torch.randn(batch, tokens, channels, generator=gen)
    copies = torch.randint(0, tokens, (batch, tokens // 3), generator=gen)
    targets = torch.randint(0, tokens, (batch, tokens // 3), generator=gen)
    for row in range(batch):
        metric[row, targets[row]] = metric[row, copies[row]]
    return metric.to(dtype)


def _fused_equals_multi_launch(emu, metric, variant, class_token, rs, distill=False):
    for r in rs:
        assert emu.cuda_fused_plan_applies(metric, r, variant, class_token, distill)
        fused = emu.cuda_fused_plan(metric, r, variant, 0.5, class_token, distill)
        steps = emu.cuda_multi_launch_plan(metric, r, variant, 0.5, class_token, distill)
        for name, a, b in zip(("slot", "offsets", "members"), fused, steps):
            assert torch.equal(a, b), (name, r)


@pytest.mark.parametrize("variant", FUSED_VARIANTS)
@pytest.mark.parametrize("dtype,schedule", [(torch.float32, "forward"), (torch.float32, "reverse"),
                                            (torch.float32, "shuffle"), (torch.float16, "shuffle"),
                                            (torch.bfloat16, "forward")])
@pytest.mark.parametrize("tokens", [3, 4, 33, 197])
@pytest.mark.parametrize("class_token", [False, True])
def test_fused_plan_is_the_multi_launch_plan_bit_for_bit(emu, variant, dtype, schedule, tokens, class_token):
    emu.set_schedule(schedule, tokens)
    metric = _metric_with_ties(2, tokens, 24, dtype, seed=tokens)
    n = tokens - int(class_token)
    rs = sorted({r for r in (1, n // 3, n // 2) if 1 <= r <= n // 2})
    _fused_equals_multi_launch(emu, metric, variant, class_token, rs)
    if variant == "tome" and class_token and tokens > 3:  # with a distillation token too
        _fused_equals_multi_launch(emu, metric, variant, True, [r for r in rs if r <= (tokens - 2) // 2], distill=True)


@pytest.mark.parametrize("variant", FUSED_VARIANTS)
def test_fused_plan_at_its_largest_size(emu, variant):
    emu.set_schedule("shuffle", 1)
    metric = _metric_with_ties(1, 1024, 16, torch.float32, seed=5)
    _fused_equals_multi_launch(emu, metric, variant, True, [1, 511])


@pytest.mark.parametrize("variant", FUSED_VARIANTS)
@pytest.mark.parametrize("tokens,class_token", [(65, True), (197, True), (256, False)])
def test_fused_plans_equal_the_reference(emu, variant, tokens, class_token):
    metric = well_separated_metric(3, tokens, 64, seed=tokens, device="cpu")
    r = (tokens - int(class_token)) // 3
    args = (metric, r, variant, 0.6, class_token, variant == "tome" and class_token)
    for a, b in zip(emu.cuda_plan(*args), reference.plan(*args)):
        assert torch.equal(a, b)


def test_plan_takes_the_fused_path_only_where_it_applies(emu):
    small = well_separated_metric(1, 1024, 32, seed=1, device="cpu")
    large = well_separated_metric(1, 1025, 32, seed=2, device="cpu")
    assert emu.cuda_fused_plan_applies(small, 10, "pitome", False, False)
    assert emu.cuda_fused_plan_applies(small, 2000, "tome", True, True)  # ToMe clamps r first
    assert not emu.cuda_fused_plan_applies(large, 10, "pitome", False, False)
    assert not emu.cuda_fused_plan_applies(small.double(), 10, "pitome", False, False)
    assert not emu.cuda_fused_plan_applies(small, 0, "pitome", False, False)
    assert not emu.cuda_fused_plan_applies(small, 513, "pitome", False, False)
    for metric in (small, large, small.double()):
        args = (metric, 10, "pitome_bsm", 0.5, False, False)
        got = emu.cuda_plan(*args)
        want = emu.cuda_fused_plan(*args) if metric is small else emu.cuda_multi_launch_plan(*args)
        assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("kernel", ["elu", "gauss"])
@pytest.mark.parametrize("channels", [1, 33, 64])
def test_energy_agrees_with_the_reference(emu, dtype, kernel, channels):
    metric = torch.randn(3, 70, channels, dtype=dtype)
    margin = 0.5 if kernel == "elu" else 0.75
    torch.testing.assert_close(emu.cuda_energy(metric, margin, kernel, True),
                               reference.energy(metric, margin, kernel, True), atol=1e-5, rtol=1e-5)


def _plan_and_inputs(dtype, dim, tokens=61, r=20):
    metric = well_separated_metric(2, tokens, 16, seed=3, device="cpu")
    plan = reference.plan(metric, r, "pitome", 0.5, True, False)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, tokens, dim, generator=gen).to(dtype)
    size = (torch.rand(2, tokens, 1, generator=gen) + 0.5).to(dtype)
    return plan, x, size


def _tolerance(dtype):
    return dict(atol=2e-2, rtol=2e-2) if dtype in (torch.float16, torch.bfloat16) else {}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("dim", [1, 33, 200])
def test_merges_agree_with_the_reference(emu, order, dtype, dim):
    plan, x, size = _plan_and_inputs(dtype, dim)
    for mode in ("sum", "mean", "amax", "prune"):
        torch.testing.assert_close(emu.cuda_merge(x, *plan, mode), reference.merge(x, *plan, mode),
                                   **_tolerance(dtype))
    for s in (None, size):
        got, want = emu.cuda_merge_wavg(x, s, *plan), reference.merge_wavg(x, s, *plan)
        torch.testing.assert_close(got[0], want[0], **_tolerance(dtype))
        torch.testing.assert_close(got[1], want[1], **_tolerance(dtype))
    y = x[:, : plan[1].shape[1] - 1]
    assert torch.equal(emu.cuda_unmerge(y, *plan), reference.unmerge(y, *plan))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("dim", [1, 40])
def test_gradients_agree_with_the_reference(emu, order, dtype, dim):
    plan, x, size = _plan_and_inputs(dtype, dim)
    # ties inside groups, so the amax gradient has maxima to share
    x[:, 1::3] = x[:, 2::3][:, : x[:, 1::3].shape[1]]
    num_out = plan[1].shape[1] - 1
    grad = torch.randn(2, num_out, dim).to(dtype)
    for mode in ("sum", "mean", "amax", "prune"):
        out = reference.merge(x, *plan, mode)
        torch.testing.assert_close(emu.cuda_merge_backward(grad, x, out, *plan, mode),
                                   reference.merge_backward(grad, x, out, *plan, mode), **_tolerance(dtype))
    for s in (None, size):
        _, size_out = reference.merge_wavg(x, s, *plan)
        torch.testing.assert_close(emu.cuda_merge_wavg_backward(grad, s, size_out, *plan),
                                   reference.merge_wavg_backward(grad, s, size_out, *plan), **_tolerance(dtype))


def test_empty_inputs(emu):
    metric = torch.randn(0, 9, 4)
    assert emu.cuda_energy(metric, 0.5, "elu", True).shape == (0, 8)
    slot, offsets, members = emu.cuda_plan(torch.randn(2, 9, 4), 0, "pitome", 0.5, True, False)
    assert torch.equal(slot, torch.arange(9, dtype=torch.int32).expand(2, -1))
    x = torch.randn(2, 9, 0)
    assert emu.cuda_merge(x, slot, offsets, members, "mean").shape == (2, 9, 0)
