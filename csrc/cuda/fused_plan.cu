// The whole plan of "pitome", "pitome_text" and "pitome_bsm" in one launch, one block per
// batch row, for T <= kFusedMaxT tokens: unit rows (to a global scratch), energies, the
// ranking by a block sort in shared memory, the split, the matching, the bipartite order of
// "pitome_bsm", and the CSR (a second block sort of (slot, is source, token) keys). The
// rows, energies and matches use the expressions of the multi-launch kernels (rows.cuh), so
// the plan is the multi-launch path's, bit for bit.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <limits>

#include "block_sort.cuh"
#include "common.cuh"
#include "kernels.h"
#include "rows.cuh"

namespace pitome {
namespace cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kBlockWarps = kThreads / kWarp;

enum Variant : int { kPitome, kText, kBsm };

template <typename scalar_t, int kVariant>
__global__ void __launch_bounds__(kThreads)
    fused_plan_kernel(const scalar_t* __restrict__ metric, float* __restrict__ unit, int32_t* __restrict__ slot_out,
                      int32_t* __restrict__ offsets_out, int32_t* __restrict__ members_out, int T, int C, int r,
                      int off, float margin, float sigma, float scale) {
  constexpr bool kGauss = kVariant == kText;
  __shared__ float keys[kFusedMaxT];  // energies, then the best similarities ("pitome_bsm")
  __shared__ int pos[kFusedMaxT];     // the ranking, then the order of A ("pitome_bsm")
  __shared__ int a_tok[kFusedMaxT / 2], b_tok[kFusedMaxT / 2], dst[kFusedMaxT / 2];
  __shared__ float best[kFusedMaxT / 2];
  __shared__ int csr_key[kFusedMaxT], csr_pos[kFusedMaxT];
  const int64_t b = blockIdx.x;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int n = T - off;
  const float ninf = -std::numeric_limits<float>::infinity();
  const scalar_t* m = metric + (b * T + off) * C;
  float* u = unit + b * n * C;

  for (int i = warp; i < n; i += kBlockWarps) normalize_row(m + int64_t(i) * C, u + int64_t(i) * C, C, lane);
  __syncthreads();

  // energies, ranked: descending, ties to the lower token
  int width = 1;
  while (width < n) width *= 2;
  for (int i = warp; i < n; i += kBlockWarps) {
    float sum = 0;
    for (int j = lane; j < n; j += kWarp)
      sum += energy_term<float, kGauss>(dot_row(u + int64_t(i) * C, u + int64_t(j) * C, C), margin, sigma);
    const float energy = energy_of_row<float, kGauss>(sum, n, scale);
    if (lane == 0) keys[i] = energy, pos[i] = i;
  }
  for (int i = n + threadIdx.x; i < width; i += kThreads) keys[i] = ninf, pos[i] = i;
  block_sort<DescendingStable>(keys, pos, width);

  // A and B: alternate ranks (the first 2r, or all for "pitome_bsm"), or halves of the first 2r (text)
  const int num_a = kVariant == kBsm ? (n + 1) / 2 : r, num_b = kVariant == kBsm ? n / 2 : r;
  for (int p = threadIdx.x; p < num_a; p += kThreads) a_tok[p] = pos[kVariant == kText ? p : 2 * p];
  for (int q = threadIdx.x; q < num_b; q += kThreads) b_tok[q] = pos[kVariant == kText ? r + q : 2 * q + 1];
  __syncthreads();

  // every A token's first most similar B token
  for (int p = warp; p < num_a; p += kBlockWarps) {
    float v = ninf;
    int64_t at = num_b;
    for (int q = lane; q < num_b; q += kWarp) {
      const float s = dot_row(u + int64_t(a_tok[p]) * C, u + int64_t(b_tok[q]) * C, C);
      if (at == num_b || beats(s, int64_t(q), v, at)) v = s, at = q;
    }
    warp_argmax(v, at, int64_t(num_b));
    if (lane == 0) best[p] = v, dst[p] = static_cast<int>(at);
  }
  if (kVariant == kBsm) {  // A ordered by best similarity: the first r merge
    __syncthreads();
    int width_a = 1;
    while (width_a < num_a) width_a *= 2;
    for (int p = threadIdx.x; p < width_a; p += kThreads) keys[p] = p < num_a ? best[p] : ninf, pos[p] = p;
    block_sort<DescendingStable>(keys, pos, width_a);
  } else {
    __syncthreads();
  }

  // every token's output slot; heads are [class], then kept tokens in order, then B
  const int kept = kVariant == kBsm ? num_a - r : n - 2 * r;
  auto assign = [&](int token, int slot, int is_source) {
    slot_out[b * T + token] = slot;
    csr_key[token] = (slot * 2 + is_source) * T + token;
  };
  for (int k = threadIdx.x; k < kept; k += kThreads)
    assign(off + (kVariant == kBsm ? a_tok[pos[r + k]] : pos[2 * r + k]), off + k, 0);
  for (int q = threadIdx.x; q < num_b; q += kThreads) assign(off + b_tok[q], off + kept + q, 0);
  for (int j = threadIdx.x; j < r; j += kThreads) {
    const int p = kVariant == kBsm ? pos[j] : j;
    assign(off + a_tok[p], off + kept + dst[p], 1);
  }
  if (off != 0 && threadIdx.x == 0) assign(0, 0, 0);
  int width_t = 1;
  while (width_t < T) width_t *= 2;
  for (int t = threadIdx.x; t < width_t; t += kThreads) {
    if (t >= T) csr_key[t] = std::numeric_limits<int>::max();
    csr_pos[t] = t;
  }
  block_sort<AscendingKey>(csr_key, csr_pos, width_t);

  // members in key order: each group's head, then its sources by token; offsets where slots change
  const int t_out = T - r;
  int32_t* offsets = offsets_out + b * (t_out + 1);
  for (int p = threadIdx.x; p < T; p += kThreads) {
    const int key = csr_key[p], group = key / (2 * T);
    members_out[b * T + p] = key % T;
    if (p == 0 || csr_key[p - 1] / (2 * T) != group) offsets[group] = p;
  }
  if (threadIdx.x == 0) offsets[t_out] = T;
}

template <int kVariant>
void launch_fused(const at::Tensor& metric, at::Tensor& unit, at::Tensor& slot, at::Tensor& offsets,
                  at::Tensor& members, int64_t r, int64_t off, double margin) {
  const int64_t B = metric.size(0), T = metric.size(1), C = metric.size(2);
  const double sigma = 1.0 - margin, scale = sigma * std::sqrt(2.0 * 3.14159265358979323846);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, metric.scalar_type(), "pitome_cuda_fused_plan", [&] {
    launch(fused_plan_kernel<scalar_t, kVariant>, dim3(B), dim3(kThreads), metric.data_ptr<scalar_t>(),
           unit.data_ptr<float>(), slot.data_ptr<int32_t>(), offsets.data_ptr<int32_t>(),
           members.data_ptr<int32_t>(), int(T), int(C), int(r), int(off), float(margin), float(sigma), float(scale));
  });
}

}  // namespace

bool fused_plan_applies(const at::Tensor& metric, int64_t r, c10::string_view variant, bool class_token) {
  const int64_t n = metric.size(1) - class_token;
  return metric.scalar_type() != at::kDouble && metric.size(1) <= kFusedMaxT && r >= 1 && 2 * r <= n &&
         metric.size(2) <= std::numeric_limits<int>::max() &&
         (variant == "pitome" || variant == "pitome_text" || variant == "pitome_bsm");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_plan(const at::Tensor& metric_in, int64_t r,
                                                          c10::string_view variant, double margin,
                                                          bool class_token) {
  const auto metric = metric_in.contiguous();
  const int64_t B = metric.size(0), T = metric.size(1), C = metric.size(2), off = class_token;
  const auto int_options = metric.options().dtype(at::kInt);
  auto unit = at::empty({B, T - off, C}, metric.options().dtype(at::kFloat));
  auto slot = at::empty({B, T}, int_options), members = at::empty({B, T}, int_options);
  auto offsets = at::empty({B, T - r + 1}, int_options);
  if (B == 0) return {slot, offsets, members};
  if (variant == "pitome")
    launch_fused<kPitome>(metric, unit, slot, offsets, members, r, off, margin);
  else if (variant == "pitome_text")
    launch_fused<kText>(metric, unit, slot, offsets, members, r, off, margin);
  else
    launch_fused<kBsm>(metric, unit, slot, offsets, members, r, off, margin);
  return {slot, offsets, members};
}

}  // namespace cuda
}  // namespace pitome
