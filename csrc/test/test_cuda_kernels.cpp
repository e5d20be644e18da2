// C++ test of the CUDA kernels, run by ctest where the library is built with
// PITOME_BUILD_CUDA=ON: the ops pitome::cuda_* (through the dispatcher, as a libtorch
// program calls them) against pitome::cpu_* on the same inputs. Without a CUDA device it
// reports itself skipped (exit code 77, ctest's SKIP_RETURN_CODE).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <cstdio>
#include <cstdlib>
#include <tuple>

#include "expect.h"

using Plan = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using PlanFn = Plan(const at::Tensor&, int64_t, c10::string_view, double, bool, bool);
using EnergyFn = at::Tensor(const at::Tensor&, double, c10::string_view, bool);
using MergeFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           c10::string_view);
using WavgFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const c10::optional<at::Tensor>&,
                                                  const at::Tensor&, const at::Tensor&, const at::Tensor&);
using UnmergeFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&);

template <typename Fn>
static c10::TypedOperatorHandle<Fn> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Fn>();
}

static bool close(const at::Tensor& a, const at::Tensor& b, double tol) {
  return at::allclose(a.cpu().to(at::kFloat), b.cpu().to(at::kFloat), tol, tol);
}

int main() {
  if (!at::hasCUDA() || at::detail::getCUDAHooks().getNumGPUs() == 0) {
    std::printf("pitome_cuda_test: no CUDA device, skipped\n");
    return 77;
  }
  at::manual_seed(0);
  const int64_t batch = 3, tokens = 41, channels = 16, dim = 24, r = 10;
  auto metric = at::randn({batch, tokens, channels});
  auto x = at::randn({batch, tokens, dim});
  auto size = at::randint(1, 4, {batch, tokens, 1}).to(at::kFloat);
  auto metric_d = metric.to(at::kCUDA), x_d = x.to(at::kCUDA), size_d = size.to(at::kCUDA);

  auto energy_cpu = op<EnergyFn>("pitome::cpu_energy"), energy_cuda = op<EnergyFn>("pitome::cuda_energy");
  for (const char* kernel : {"elu", "gauss"}) {
    auto e = energy_cuda.call(metric_d, 0.5, kernel, true);
    EXPECT(e.is_cuda() && e.scalar_type() == at::kFloat);
    EXPECT(close(e, energy_cpu.call(metric, 0.5, kernel, true), 1e-5));
  }

  auto plan_cpu = op<PlanFn>("pitome::cpu_plan"), plan_cuda = op<PlanFn>("pitome::cuda_plan");
  auto merge_cuda = op<MergeFn>("pitome::cuda_merge"), merge_cpu = op<MergeFn>("pitome::cpu_merge");
  auto wavg_cuda = op<WavgFn>("pitome::cuda_merge_wavg"), wavg_cpu = op<WavgFn>("pitome::cpu_merge_wavg");
  auto unmerge_cuda = op<UnmergeFn>("pitome::cuda_unmerge");
  for (const char* variant : {"pitome", "pitome_text", "pitome_bsm", "tome"}) {
    auto [slot, offsets, members] = plan_cuda.call(metric_d, r, variant, 0.5, true, false);
    auto [slot_c, offsets_c, members_c] = plan_cpu.call(metric, r, variant, 0.5, true, false);
    // random Gaussian metrics have no ties: the plans are equal
    EXPECT(slot.is_cuda() && slot.cpu().equal(slot_c));
    EXPECT(offsets.cpu().equal(offsets_c) && members.cpu().equal(members_c));

    auto [x_out, size_out] = wavg_cuda.call(x_d, size_d, slot, offsets, members);
    auto [x_ref, size_ref] = wavg_cpu.call(x, size, slot_c, offsets_c, members_c);
    EXPECT(close(x_out, x_ref, 1e-5) && close(size_out, size_ref, 0.0));
    for (const char* mode : {"sum", "mean", "amax", "prune"}) {
      EXPECT(close(merge_cuda.call(x_d, slot, offsets, members, mode),
                   merge_cpu.call(x, slot_c, offsets_c, members_c, mode), 1e-5));
    }
    auto back = unmerge_cuda.call(x_out, slot, offsets, members);  // every token reads its slot's row
    EXPECT(back.equal(x_out.gather(1, slot.to(at::kLong).unsqueeze(-1).expand({batch, tokens, dim}))));
  }
  auto half = metric_d.to(at::kHalf);
  auto [slot_h, offsets_h, members_h] = plan_cuda.call(half, r, "pitome", 0.5, true, false);
  auto merged_h = merge_cuda.call(x_d.to(at::kHalf), slot_h, offsets_h, members_h, "mean");
  EXPECT(merged_h.scalar_type() == at::kHalf && merged_h.size(1) == tokens - r);

  if (failures == 0) std::printf("pitome_cuda_test: all checks passed\n");
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
