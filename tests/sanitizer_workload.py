"""A small run of every Triton kernel on the GPU, for compute-sanitizer (memcheck,
racecheck) in ``make gpu-check``: each variant's plan (fused and multi-launch paths),
every merge mode, the wavg merge, the backward kernels and unmerge, at an odd token count
so that every tile has a masked edge."""

import torch

from pitome_kernels import triton as tt
from pitome_kernels.triton.plan import plan_multi_launch

torch.manual_seed(0)
B, T, C, K = 2, 77, 40, 96
for dtype in (torch.float32, torch.bfloat16):
    metric = torch.randn(B, T, C, device="cuda", dtype=dtype)
    x = torch.randn(B, T, K, device="cuda", dtype=dtype)
    size = torch.rand(B, T, 1, device="cuda", dtype=dtype) + 0.5
    tt.energy(metric, 0.5, "elu", True)
    for variant in ("pitome", "pitome_text", "pitome_bsm", "tome"):
        for make in (tt.plan, plan_multi_launch):
            p = make(metric, 19, variant, 0.5, True, variant == "tome")
            for mode in ("sum", "mean", "amax", "prune"):
                out = tt.merge(x, *p, mode)
                tt.merge_backward(torch.ones_like(out), x, out, *p, mode)
            out, size_out = tt.merge_wavg(x, size, *p)
            tt.merge_wavg_backward(torch.ones_like(out), size, size_out, *p)
            tt.unmerge(out, *p)
torch.cuda.synchronize()
print("sanitizer workload ran")
