"""The Python layer's cost per eager call: each public function on a 5-token input beside
the bare C++ kernel it ends in (``pitome_kernels._C``), so the difference of the two rows of
one op is the overhead of the API, the op table and the argument checks.

Measure: ``pytest benchmarks/test_bench_overhead.py --benchmark-enable --benchmark-only
--benchmark-group-by=param:op``. With ``--benchmark-disable`` both sides run once and must
agree.
"""

import pytest
import torch

import pitome_kernels as pk

pytestmark = pytest.mark.skipif(pk.available("cpu", "cpu") is not None, reason="needs the C++ extension")


def _calls():
    from pitome_kernels import _C

    metric = torch.randn(1, 5, 4)
    x = torch.randn(1, 5, 4)
    p = pk.plan(metric, 1)
    tensors = (p.slot, p.offsets, p.members)
    return {
        "plan": (lambda: pk.plan(metric, 1).slot,
                 lambda: _C.cpu_plan(metric, 1, "pitome", 0.5, False, False)[0]),
        "merge": (lambda: pk.merge(p, x, "mean"), lambda: _C.cpu_merge(x, *tensors, "mean")),
        "merge_wavg": (lambda: pk.merge_wavg(p, x)[0], lambda: _C.cpu_merge_wavg(x, None, *tensors)[0]),
        "unmerge": (lambda: pk.unmerge(p, x[:, :4]), lambda: _C.cpu_unmerge(x[:, :4], *tensors)),
    }


@pytest.mark.parametrize("path", ["api", "kernel"])
@pytest.mark.parametrize("op", ["plan", "merge", "merge_wavg", "unmerge"])
def test_eager_call(benchmark, op, path):
    api, kernel = _calls()[op]
    out = benchmark(api if path == "api" else kernel)
    assert torch.equal(out, kernel())
