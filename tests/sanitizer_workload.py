"""A small run of every GPU kernel, for compute-sanitizer (memcheck, racecheck) in
``make gpu-check``: each variant's plan (Triton's fused and multi-launch paths, and the CUDA
backend where it is built), every merge mode, the wavg merge, the backward kernels and
unmerge, at an odd token count so that every tile has a masked edge."""

import torch

import pitome_kernels as pk
from pitome_kernels import triton as tt
from pitome_kernels.triton.plan import plan_multi_launch

torch.manual_seed(0)
B, T, C, K = 2, 77, 40, 96
PLANS = [tt.plan, plan_multi_launch]
TABLES = [tt]
if pk.backends.has_cuda_kernels():
    PLANS.append(torch.ops.pitome.cuda_plan)
    TABLES.append(pk.backends.PrefixedKernels(torch.ops.pitome, "cuda_"))
for dtype in (torch.float32, torch.bfloat16, torch.float64):  # float64: the CUDA multi-launch plan
    metric = torch.randn(B, T, C, device="cuda", dtype=dtype)
    x = torch.randn(B, T, K, device="cuda", dtype=dtype)
    size = torch.rand(B, T, 1, device="cuda", dtype=dtype) + 0.5
    for table in TABLES:
        table.energy(metric, 0.5, "elu", True)
    for variant in ("pitome", "pitome_text", "pitome_bsm", "tome"):
        for make in PLANS:
            p = make(metric, 19, variant, 0.5, True, variant == "tome")
            for table in TABLES:
                for mode in ("sum", "mean", "amax", "prune"):
                    out = table.merge(x, *p, mode)
                    table.merge_backward(torch.ones_like(out), x, out, *p, mode)
                out, size_out = table.merge_wavg(x, size, *p)
                table.merge_wavg_backward(torch.ones_like(out), size, size_out, *p)
                table.unmerge(out, *p)
torch.cuda.synchronize()
print(f"sanitizer workload ran ({len(PLANS)} plan paths, {len(TABLES)} kernel tables)")
