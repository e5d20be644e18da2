// The forward merges (merge: sum, mean, amax, prune; merge_wavg): one warp per output group,
// its lanes over the features, the group's members read in plan order (head first).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <cmath>
#include <limits>

#include "common.cuh"
#include "kernels.h"

namespace pitome {
namespace cuda {
namespace {

enum Mode : int { kSum, kMean, kAmax, kPrune, kWavg };
constexpr int kGroupsPerBlock = 8;  // one warp each

// out[b, g, :] = the mode's reduce over members[offsets[g] : offsets[g + 1]] of x[b, m, :];
// kWavg: weighted by size[b, m] (compute dtype), den written to size_out[b, g].
template <typename scalar_t, int kMode>
__global__ void merge_kernel(const scalar_t* __restrict__ x, const acc_t<scalar_t>* __restrict__ size,
                             scalar_t* __restrict__ out, acc_t<scalar_t>* __restrict__ size_out,
                             const int32_t* __restrict__ offsets, const int32_t* __restrict__ members, int64_t T,
                             int64_t t_out, int64_t K) {
  using acc = acc_t<scalar_t>;
  const int64_t b = blockIdx.y;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kGroupsPerBlock + threadIdx.x / kWarp;
  if (g >= t_out) return;
  const int lane = threadIdx.x % kWarp;
  const int32_t* off = offsets + b * (t_out + 1);
  const int32_t* mem = members + b * T;
  const int32_t begin = off[g], end = off[g + 1];
  const scalar_t* xb = x + b * T * K;
  acc den = 0;
  if (kMode == kWavg) {
    for (int32_t m = begin; m < end; ++m) den += size[b * T + mem[m]];
    if (lane == 0) size_out[b * t_out + g] = den;
  }
  for (int64_t k = lane; k < K; k += kWarp) {
    acc a;
    if (kMode == kPrune) {
      a = static_cast<acc>(xb[mem[begin] * K + k]);
    } else if (kMode == kAmax) {
      a = -std::numeric_limits<acc>::infinity();
      for (int32_t m = begin; m < end; ++m) {
        const acc v = static_cast<acc>(xb[mem[m] * K + k]);
        if (v > a || v != v) a = v;  // NaN propagates, as torch's amax
        if (a != a) break;
      }
    } else {
      a = 0;
      for (int32_t m = begin; m < end; ++m) {
        const acc v = static_cast<acc>(xb[mem[m] * K + k]);
        a += kMode == kWavg ? v * size[b * T + mem[m]] : v;
      }
      if (kMode == kMean) a = a / static_cast<acc>(end - begin);
      if (kMode == kWavg) a = a / den;
    }
    out[(b * t_out + g) * K + k] = static_cast<scalar_t>(a);
  }
}

template <int kMode>
void launch_merge(const at::Tensor& x, const at::Tensor* size, at::Tensor& out, at::Tensor* size_out,
                  const at::Tensor& offsets, const at::Tensor& members) {
  const int64_t B = x.size(0), T = x.size(1), K = x.size(2), t_out = offsets.size(1) - 1;
  if (B == 0 || t_out == 0) return;
  const dim3 grid(blocks_for(t_out, kGroupsPerBlock), B);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pitome_cuda_merge", [&] {
    using acc = acc_t<scalar_t>;
    launch(merge_kernel<scalar_t, kMode>, grid, kGroupsPerBlock * kWarp,
        x.data_ptr<scalar_t>(), size ? size->data_ptr<acc>() : nullptr, out.data_ptr<scalar_t>(),
        size_out ? size_out->data_ptr<acc>() : nullptr, offsets.data_ptr<int32_t>(), members.data_ptr<int32_t>(), T,
        t_out, K);
  });
}

}  // namespace

at::Tensor merge(const at::Tensor& x_in, const at::Tensor& slot, const at::Tensor& offsets_in,
                 const at::Tensor& members_in, c10::string_view mode) {
  TORCH_CHECK(on_device(x_in), "pitome::cuda::merge: x must be a CUDA tensor");
  const DeviceGuard guard(x_in.device());
  const auto x = x_in.contiguous();
  const auto offsets = offsets_in.contiguous(), members = members_in.contiguous();
  auto out = at::empty({x.size(0), offsets.size(1) - 1, x.size(2)}, x.options());
  if (mode == "sum")
    launch_merge<kSum>(x, nullptr, out, nullptr, offsets, members);
  else if (mode == "mean")
    launch_merge<kMean>(x, nullptr, out, nullptr, offsets, members);
  else if (mode == "amax")
    launch_merge<kAmax>(x, nullptr, out, nullptr, offsets, members);
  else if (mode == "prune")
    launch_merge<kPrune>(x, nullptr, out, nullptr, offsets, members);
  else
    TORCH_CHECK_VALUE(false, "mode must be 'sum', 'mean', 'amax' or 'prune', got '", std::string(mode), "'");
  return out;
}

std::tuple<at::Tensor, at::Tensor> merge_wavg(const at::Tensor& x_in, const c10::optional<at::Tensor>& size_in,
                                              const at::Tensor& slot, const at::Tensor& offsets_in,
                                              const at::Tensor& members_in) {
  TORCH_CHECK(on_device(x_in), "pitome::cuda::merge_wavg: x must be a CUDA tensor");
  const DeviceGuard guard(x_in.device());
  const auto x = x_in.contiguous();
  const auto offsets = offsets_in.contiguous(), members = members_in.contiguous();
  const int64_t B = x.size(0), T = x.size(1), t_out = offsets.size(1) - 1;
  const auto acc_options = x.options().dtype(compute_type(x));
  const auto size = size_in.has_value() ? size_in->to(compute_type(x)).reshape({B, T}).contiguous()
                                        : at::ones({B, T}, acc_options);
  auto out = at::empty({B, t_out, x.size(2)}, x.options());
  auto size_out = at::empty({B, t_out}, acc_options);
  launch_merge<kWavg>(x, &size, out, &size_out, offsets, members);
  const auto size_dtype = size_in.has_value() ? size_in->scalar_type() : x.scalar_type();
  return {out, size_out.to(size_dtype).view({B, t_out, 1})};
}

}  // namespace cuda
}  // namespace pitome
