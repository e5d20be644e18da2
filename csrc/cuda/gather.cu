// The gradients of the merges and unmerge: every input token reads the row of its output
// slot (one warp per token, lanes over the features); the amax gradient goes one warp per
// group, sharing each feature's gradient among the members equal to the maximum.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include "common.cuh"
#include "kernels.h"

namespace pitome {
namespace cuda {
namespace {

enum Gather : int { kCopy, kSum, kMean, kPrune, kWavg };
constexpr int kRowsPerBlock = 8;  // one warp each

// dst[b, i, :] = f(src[b, slot[b, i], :]): kCopy/kSum as is, kMean / the group's size,
// kPrune only for the group's head (else 0), kWavg * (1 / size_out[g]) * size[i].
template <typename scalar_t, int kKind>
__global__ void gather_kernel(const scalar_t* __restrict__ src, scalar_t* __restrict__ dst,
                              const int32_t* __restrict__ slot, const int32_t* __restrict__ offsets,
                              const int32_t* __restrict__ members, const acc_t<scalar_t>* __restrict__ size,
                              const acc_t<scalar_t>* __restrict__ size_out, int64_t T, int64_t t_out, int64_t K) {
  using acc = acc_t<scalar_t>;
  const int64_t b = blockIdx.y;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (i >= T) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t g = slot[b * T + i];
  const int32_t* off = offsets + b * (t_out + 1);
  acc count = 1, weight = 1;
  bool keep = true;
  if (kKind == kMean) count = static_cast<acc>(off[g + 1] - off[g]);
  if (kKind == kPrune) keep = members[b * T + off[g]] == i;
  if (kKind == kWavg) {
    weight = acc(1) / size_out[b * t_out + g];
    if (size != nullptr) weight = weight * size[b * T + i];
  }
  const scalar_t* row = src + (b * t_out + g) * K;
  scalar_t* out = dst + (b * T + i) * K;
  for (int64_t k = lane; k < K; k += kWarp) {
    acc v = static_cast<acc>(row[k]);
    if (kKind == kMean) v = v / count;
    if (kKind == kPrune && !keep) v = v * acc(0);
    if (kKind == kWavg) v = v * weight;
    out[k] = static_cast<scalar_t>(v);
  }
}

// gx[b, m, :] for the members m of group g: grad_out * (x == out) / (how many members equal out)
template <typename scalar_t>
__global__ void amax_backward_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ x,
                                     const scalar_t* __restrict__ out, scalar_t* __restrict__ gx,
                                     const int32_t* __restrict__ offsets, const int32_t* __restrict__ members,
                                     int64_t T, int64_t t_out, int64_t K) {
  using acc = acc_t<scalar_t>;
  const int64_t b = blockIdx.y;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (g >= t_out) return;
  const int lane = threadIdx.x % kWarp;
  const int32_t* off = offsets + b * (t_out + 1);
  const int32_t* mem = members + b * T;
  const scalar_t* xb = x + b * T * K;
  for (int64_t k = lane; k < K; k += kWarp) {
    const acc top = static_cast<acc>(out[(b * t_out + g) * K + k]);  // exact: compares as scalar_t would
    acc ties = 0;
    for (int32_t m = off[g]; m < off[g + 1]; ++m) ties += static_cast<acc>(xb[mem[m] * K + k]) == top ? acc(1) : acc(0);
    const acc go = static_cast<acc>(grad_out[(b * t_out + g) * K + k]);
    for (int32_t m = off[g]; m < off[g + 1]; ++m) {
      const acc won = static_cast<acc>(xb[mem[m] * K + k]) == top ? acc(1) : acc(0);
      gx[(b * T + mem[m]) * K + k] = static_cast<scalar_t>(go * won / ties);
    }
  }
}

template <int kKind>
at::Tensor gather(const at::Tensor& src_in, const at::Tensor& slot_in, const at::Tensor& offsets_in,
                  const at::Tensor& members_in, const at::Tensor* size, const at::Tensor* size_out) {
  TORCH_CHECK(on_device(src_in), "pitome::cuda: the gradient or merged tensor must be a CUDA tensor");
  const DeviceGuard guard(src_in.device());
  const auto src = src_in.contiguous();
  const auto slot = slot_in.contiguous(), offsets = offsets_in.contiguous(), members = members_in.contiguous();
  const int64_t B = slot.size(0), T = slot.size(1), K = src.size(2), t_out = offsets.size(1) - 1;
  auto dst = at::empty({B, T, K}, src.options());
  if (B == 0 || T == 0) return dst;
  const dim3 grid(blocks_for(T, kRowsPerBlock), B);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, src.scalar_type(), "pitome_cuda_gather", [&] {
    using acc = acc_t<scalar_t>;
    launch(gather_kernel<scalar_t, kKind>, grid, kRowsPerBlock * kWarp,
        src.data_ptr<scalar_t>(), dst.data_ptr<scalar_t>(), slot.data_ptr<int32_t>(), offsets.data_ptr<int32_t>(),
        members.data_ptr<int32_t>(), size ? size->data_ptr<acc>() : nullptr,
        size_out ? size_out->data_ptr<acc>() : nullptr, T, t_out, K);
  });
  return dst;
}

}  // namespace

at::Tensor merge_backward(const at::Tensor& grad_out_in, const at::Tensor& x_in, const at::Tensor& out_in,
                          const at::Tensor& slot, const at::Tensor& offsets_in, const at::Tensor& members_in,
                          c10::string_view mode) {
  if (mode == "sum") return gather<kSum>(grad_out_in, slot, offsets_in, members_in, nullptr, nullptr).to(x_in.scalar_type());
  if (mode == "mean") return gather<kMean>(grad_out_in, slot, offsets_in, members_in, nullptr, nullptr).to(x_in.scalar_type());
  if (mode == "prune") return gather<kPrune>(grad_out_in, slot, offsets_in, members_in, nullptr, nullptr).to(x_in.scalar_type());
  TORCH_CHECK_VALUE(mode == "amax", "mode must be 'sum', 'mean', 'amax' or 'prune', got '", std::string(mode), "'");
  TORCH_CHECK(on_device(x_in), "pitome::cuda::merge_backward: x must be a CUDA tensor");
  const DeviceGuard guard(x_in.device());
  const auto x = x_in.contiguous();
  const auto grad_out = grad_out_in.to(x.scalar_type()).contiguous(), out = out_in.to(x.scalar_type()).contiguous();
  const auto offsets = offsets_in.contiguous(), members = members_in.contiguous();
  const int64_t B = x.size(0), T = x.size(1), K = x.size(2), t_out = offsets.size(1) - 1;
  auto gx = at::empty_like(x);
  if (B == 0 || t_out == 0) return gx;
  const dim3 grid(blocks_for(t_out, kRowsPerBlock), B);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pitome_cuda_amax_backward", [&] {
    launch(amax_backward_kernel<scalar_t>, grid, kRowsPerBlock * kWarp,
        grad_out.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(),
        offsets.data_ptr<int32_t>(), members.data_ptr<int32_t>(), T, t_out, K);
  });
  return gx;
}

at::Tensor merge_wavg_backward(const at::Tensor& grad_out, const c10::optional<at::Tensor>& size_in,
                               const at::Tensor& size_out_in, const at::Tensor& slot, const at::Tensor& offsets,
                               const at::Tensor& members) {
  const auto acc = compute_type(grad_out);
  const int64_t B = slot.size(0), T = slot.size(1);
  const auto size_out = size_out_in.to(acc).reshape({B, offsets.size(1) - 1}).contiguous();
  if (size_in.has_value()) {
    const auto size = size_in->to(acc).reshape({B, T}).contiguous();
    return gather<kWavg>(grad_out, slot, offsets, members, &size, &size_out);
  }
  return gather<kWavg>(grad_out, slot, offsets, members, nullptr, &size_out);
}

at::Tensor unmerge(const at::Tensor& y, const at::Tensor& slot, const at::Tensor& offsets, const at::Tensor& members) {
  return gather<kCopy>(y, slot, offsets, members, nullptr, nullptr);
}

}  // namespace cuda
}  // namespace pitome
