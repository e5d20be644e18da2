// The whole plan in one launch, one block per batch row, for T <= kFusedMaxT tokens: unit
// rows (to a global scratch), energies, the ranking by a block sort in shared memory, the
// split, the matching, the bipartite order of "pitome_bsm" and "tome", and the CSR (a block
// sort of (slot, is source, token) keys). The
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

enum Variant : int { kPitome, kText, kBsm, kTome };

// flags: bit 0 masks A's first token (ToMe's class token), bit 1 B's first (distillation).
template <typename scalar_t, int kVariant>
__global__ void __launch_bounds__(kThreads)
    fused_plan_kernel(const scalar_t* __restrict__ metric, float* __restrict__ unit, int32_t* __restrict__ slot_out,
                      int32_t* __restrict__ offsets_out, int32_t* __restrict__ members_out, int T, int C, int r,
                      int off, int flags, float margin, float sigma, float scale) {
  constexpr bool kGauss = kVariant == kText, kAlternate = kVariant == kBsm || kVariant == kTome;
  __shared__ float keys[kFusedMaxT];  // energies, then the best similarities (kAlternate)
  __shared__ int pos[kFusedMaxT];     // the ranking, then the order of A (kAlternate)
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

  if (kVariant != kTome) {  // energies, ranked: descending, ties to the lower token
    for (int i = warp; i < n; i += kBlockWarps) {
      float sum = 0;
      for (int j = lane; j < n; j += kWarp)
        sum += energy_term<float, kGauss>(dot_row(u + int64_t(i) * C, u + int64_t(j) * C, C), margin, sigma);
      const float energy = energy_of_row<float, kGauss>(sum, n, scale);
      if (lane == 0) keys[i] = energy, pos[i] = i;
    }
    const int width = sort_width(n);
    for (int i = n + threadIdx.x; i < width; i += kThreads) keys[i] = ninf, pos[i] = i;
    block_sort<DescendingStable>(keys, pos, width);
  }

  // A and B: alternate ranks (the first 2r, or all for "pitome_bsm"), halves of the first 2r
  // (text), or alternate tokens (ToMe)
  const int num_a = kAlternate ? (n + 1) / 2 : r, num_b = kAlternate ? n / 2 : r;
  for (int p = threadIdx.x; p < num_a; p += kThreads)
    a_tok[p] = kVariant == kTome ? 2 * p : pos[kVariant == kText ? p : 2 * p];
  for (int q = threadIdx.x; q < num_b; q += kThreads)
    b_tok[q] = kVariant == kTome ? 2 * q + 1 : pos[kVariant == kText ? r + q : 2 * q + 1];
  __syncthreads();

  // every A token's first most similar B token
  for (int p = warp; p < num_a; p += kBlockWarps) {
    float v = ninf;
    int64_t at = num_b;
    for (int q = lane; q < num_b; q += kWarp) {
      const bool masked = kVariant == kTome && (((flags & 1) && p == 0) || ((flags & 2) && q == 0));
      const float s = masked ? ninf : dot_row(u + int64_t(a_tok[p]) * C, u + int64_t(b_tok[q]) * C, C);
      if (at == num_b || beats(s, int64_t(q), v, at)) v = s, at = q;
    }
    warp_argmax(v, at, int64_t(num_b));
    if (lane == 0) best[p] = v, dst[p] = static_cast<int>(at);
  }
  __syncthreads();
  const int kept = kAlternate ? num_a - r : n - 2 * r;  // A tokens (or protected tokens) that stay
  if (kAlternate) {  // A ordered by best similarity: the first r merge
    const int width = sort_width(num_a);
    for (int p = threadIdx.x; p < width; p += kThreads) keys[p] = p < num_a ? best[p] : ninf, pos[p] = p;
    block_sort<DescendingStable>(keys, pos, width);
    if (kVariant == kTome && (flags & 1)) {  // with a class token, ToMe keeps A's survivors in token order
      const int width_kept = sort_width(kept);
      for (int k = threadIdx.x; k < width_kept; k += kThreads)
        a_tok[k] = k < kept ? pos[r + k] : std::numeric_limits<int>::max(), b_tok[k] = k;
      block_sort<AscendingKey>(a_tok, b_tok, width_kept);
    }
  }

  // every token's output slot; the heads are, in order: [class], the kept tokens, B (ToMe
  // with a distillation token: the first kept, B's first, the other kept, the other B)
  auto assign = [&](int token, int slot, int is_source) {
    slot_out[b * T + token] = slot;
    csr_key[token] = (slot * 2 + is_source) * T + token;
  };
  const bool distill = kVariant == kTome && (flags & 2);
  auto b_slot = [&](int q) { return distill && q == 0 ? 1 : off + kept + q; };
  for (int k = threadIdx.x; k < kept; k += kThreads) {
    int token;
    if (kVariant == kTome)
      token = 2 * ((flags & 1) ? a_tok[k] : pos[r + k]);
    else
      token = off + (kVariant == kBsm ? a_tok[pos[r + k]] : pos[2 * r + k]);
    assign(token, distill && k > 0 ? k + 1 : off + k, 0);
  }
  for (int q = threadIdx.x; q < num_b; q += kThreads) assign(off + (kVariant == kTome ? 2 * q + 1 : b_tok[q]), b_slot(q), 0);
  for (int j = threadIdx.x; j < r; j += kThreads) {
    const int p = kAlternate ? pos[j] : j;
    assign(off + (kVariant == kTome ? 2 * p : a_tok[p]), b_slot(dst[p]), 1);
  }
  if (off != 0 && threadIdx.x == 0) assign(0, 0, 0);
  const int width_t = sort_width(T);
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
                  at::Tensor& members, int64_t r, int64_t off, int flags, double margin) {
  const int64_t B = metric.size(0), T = metric.size(1), C = metric.size(2);
  const double sigma = 1.0 - margin, scale = sigma * std::sqrt(2.0 * 3.14159265358979323846);
  auto run = [&](auto zero) {
    using scalar_t = decltype(zero);
    launch(fused_plan_kernel<scalar_t, kVariant>, dim3(B), dim3(kThreads), metric.data_ptr<scalar_t>(),
           unit.data_ptr<float>(), slot.data_ptr<int32_t>(), offsets.data_ptr<int32_t>(), members.data_ptr<int32_t>(),
           int(T), int(C), int(r), int(off), flags, float(margin), float(sigma), float(scale));
  };
  switch (metric.scalar_type()) {  // fused_plan_applies excludes float64
    case at::kFloat: run(float(0)); break;
    case at::kHalf: run(at::Half(0)); break;
    case at::kBFloat16: run(at::BFloat16(0)); break;
    default: TORCH_CHECK(false, "pitome::cuda::fused_plan: metric must be float32, float16 or bfloat16");
  }
}

}  // namespace

bool fused_plan_applies(const at::Tensor& metric, int64_t r, c10::string_view variant, bool class_token,
                        bool distill_token) {
  const int64_t T = metric.size(1), n = T - class_token;
  const bool tome = variant == "tome";
  if (tome) r = tome_r(r, T, class_token, distill_token);
  return metric.scalar_type() != at::kDouble && T <= kFusedMaxT && r >= 1 && 2 * r <= n &&
         metric.size(2) <= std::numeric_limits<int>::max() &&
         (tome || variant == "pitome" || variant == "pitome_text" || variant == "pitome_bsm");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_plan(const at::Tensor& metric_in, int64_t r,
                                                          c10::string_view variant, double margin,
                                                          bool class_token, bool distill_token) {
  TORCH_CHECK(on_device(metric_in), "pitome::cuda::plan: metric must be a CUDA tensor");
  const DeviceGuard guard(metric_in.device());
  const auto metric = metric_in.contiguous();
  const bool tome = variant == "tome";
  const int64_t B = metric.size(0), T = metric.size(1), C = metric.size(2), off = tome ? 0 : class_token;
  if (tome) r = tome_r(r, T, class_token, distill_token);
  const auto int_options = metric.options().dtype(at::kInt);
  auto unit = at::empty({B, T - off, C}, metric.options().dtype(at::kFloat));
  auto slot = at::empty({B, T}, int_options), members = at::empty({B, T}, int_options);
  auto offsets = at::empty({B, T - r + 1}, int_options);
  if (B == 0) return {slot, offsets, members};
  const int flags = tome ? int(class_token) | (int(distill_token) << 1) : 0;
  if (variant == "pitome")
    launch_fused<kPitome>(metric, unit, slot, offsets, members, r, off, flags, margin);
  else if (variant == "pitome_text")
    launch_fused<kText>(metric, unit, slot, offsets, members, r, off, flags, margin);
  else if (variant == "pitome_bsm")
    launch_fused<kBsm>(metric, unit, slot, offsets, members, r, off, flags, margin);
  else
    launch_fused<kTome>(metric, unit, slot, offsets, members, r, off, flags, margin);
  return {slot, offsets, members};
}

}  // namespace cuda
}  // namespace pitome
