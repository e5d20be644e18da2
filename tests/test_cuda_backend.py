"""The CUDA C++ backend (csrc/cuda). Where the extension was built with CUDA, its ops are in
the dispatcher (the CUDA lane of CI checks this without a GPU). On a GPU: plans equal the
reference's, values agree to rounding, CUDA and Triton agree, a layer captures in a CUDA
graph; golden vectors, gradcheck and opcheck cover it through test_golden/test_ops, which
run every runnable backend (opcheck through the public ops). Without a GPU, the same kernels
run on the CPU through the emulator (test_cuda_emulation.py)."""

import pytest
import torch

import pitome_kernels as pk
from _support import well_separated_metric

OPS = ("energy", "plan", "merge", "merge_backward", "merge_wavg", "merge_wavg_backward", "unmerge")
VARIANTS = ("pitome", "pitome_text", "pitome_bsm", "tome")

built = pytest.mark.skipif(not pk.backends.has_cuda_kernels(), reason="the extension was built without CUDA")
on_gpu = pytest.mark.skipif(not (torch.cuda.is_available() and pk.backends.has_cuda_kernels()),
                            reason="needs a CUDA GPU and the extension built with CUDA")


@built
def test_cuda_ops_are_in_the_dispatcher():
    for op in OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pitome::cuda_{op}", "CUDA"), op


def _plans_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip((a.slot, a.offsets, a.members), (b.slot, b.offsets, b.members)))


@on_gpu
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("tokens,channels", [(2, 3), (17, 8), (197, 64), (577, 80), (1025, 64), (4100, 16)])
@pytest.mark.parametrize("class_token", [False, True])
def test_plans_equal_the_reference(variant, tokens, channels, class_token):
    metric = well_separated_metric(2, tokens, channels, seed=tokens, dtype=torch.float64, device="cuda")
    n = tokens - int(class_token)
    for r in sorted({1, n // 4, n // 2} - {0}):
        kw = dict(variant=variant, class_token=class_token, distill_token=variant == "tome" and class_token)
        assert _plans_equal(pk.plan(metric, r, backend="cuda", **kw), pk.plan(metric, r, backend="reference", **kw))


@on_gpu
@pytest.mark.parametrize("variant", ["pitome", "pitome_text", "pitome_bsm"])
@pytest.mark.parametrize("tokens", [17, 197, 577])
def test_fused_plans_equal_the_reference(variant, tokens):
    """float32 metrics of up to 1024 tokens take the single-launch plan."""
    metric = well_separated_metric(4, tokens, 64, seed=tokens, device="cuda")
    for r in (1, tokens // 3):
        kw = dict(variant=variant, class_token=True)
        assert _plans_equal(pk.plan(metric, r, backend="cuda", **kw), pk.plan(metric, r, backend="reference", **kw))


@on_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("kernel", ["elu", "gauss"])
def test_energy_agrees_with_the_reference(dtype, kernel):
    metric = torch.randn(3, 197, 64, device="cuda", dtype=dtype)
    margin = 0.5 if kernel == "elu" else 0.75
    got = pk.energy(metric, margin=margin, kernel=kernel, class_token=True, backend="cuda")
    want = pk.energy(metric, margin=margin, kernel=kernel, class_token=True, backend="reference")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@on_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("dim", [1, 33, 768])
def test_merges_agree_with_the_reference(dtype, dim):
    metric = well_separated_metric(2, 197, 64, device="cuda")
    p = pk.plan(metric, 50, class_token=True, backend="reference")
    x = torch.randn(2, 197, dim, device="cuda", dtype=dtype)
    size = torch.rand(2, 197, 1, device="cuda", dtype=dtype) + 0.5
    tol = dict(atol=2e-2, rtol=2e-2) if dtype in (torch.float16, torch.bfloat16) else {}
    for mode in ("sum", "mean", "amax", "prune"):
        torch.testing.assert_close(pk.merge(p, x, mode, backend="cuda"), pk.merge(p, x, mode, backend="reference"),
                                   **tol)
    for s in (None, size):
        got, want = pk.merge_wavg(p, x, s, backend="cuda"), pk.merge_wavg(p, x, s, backend="reference")
        torch.testing.assert_close(got[0], want[0], **tol)
        torch.testing.assert_close(got[1], want[1], **tol)
    y = x[:, : p.num_out]
    assert torch.equal(pk.unmerge(p, y, backend="cuda"), pk.unmerge(p, y, backend="reference"))


@on_gpu
def test_cuda_and_triton_agree():
    if pk.available("triton", "cuda") is not None:
        pytest.skip(pk.available("triton", "cuda"))
    metric = well_separated_metric(4, 197, 64, device="cuda")
    x = torch.randn(4, 197, 768, device="cuda")
    for variant in VARIANTS:
        a = pk.plan(metric, 40, variant=variant, class_token=True, backend="cuda")
        b = pk.plan(metric, 40, variant=variant, class_token=True, backend="triton")
        assert _plans_equal(a, b), variant
        torch.testing.assert_close(pk.merge_wavg(a, x, backend="cuda")[0], pk.merge_wavg(b, x, backend="triton")[0])


@on_gpu
def test_layer_captures_in_a_cuda_graph():
    metric = torch.randn(4, 197, 64, device="cuda")
    x = torch.randn(4, 197, 384, device="cuda")

    def layer():
        p = pk.plan(metric, 40, class_token=True, backend="cuda")
        return pk.merge_wavg(p, x, backend="cuda")[0]

    layer()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = layer()
    metric.copy_(torch.randn_like(metric))
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, layer())


@on_gpu
def test_the_dispatcher_ops_are_the_backend():
    """torch.ops.pitome.cuda_* (what C++ callers use) give what backend="cuda" gives."""
    metric = torch.randn(2, 29, 16, device="cuda")
    slot, offsets, members = torch.ops.pitome.cuda_plan(metric, 7, "pitome", 0.5, True, False)
    p = pk.plan(metric, 7, class_token=True, backend="cuda")
    assert all(torch.equal(a, b) for a, b in zip((slot, offsets, members), (p.slot, p.offsets, p.members)))
    x = torch.randn(2, 29, 12, device="cuda")
    assert torch.equal(torch.ops.pitome.cuda_merge(x, slot, offsets, members, "mean"),
                       pk.merge(p, x, "mean", backend="cuda"))
