// Per-row device code shared by the multi-launch kernels (similarity.cu) and the fused plan
// (fused_plan.cu): the same expressions in both, so both give the same bits.
#pragma once

#include <cmath>

#include "common.cuh"

namespace pitome {
namespace cuda {

// u[k] = m[k] / max(||m||, 1e-12) for k < C, by one warp (lane of kWarp)
template <typename scalar_t, typename acc>
__device__ __forceinline__ void normalize_row(const scalar_t* m, acc* u, int64_t C, int lane) {
  acc squares = 0;
  for (int64_t k = lane; k < C; k += kWarp) {
    const acc v = static_cast<acc>(m[k]);
    squares += v * v;
  }
  const acc norm = std::sqrt(warp_sum(squares));
  const acc denom = norm != norm ? norm : (norm > acc(1e-12) ? norm : acc(1e-12));
  for (int64_t k = lane; k < C; k += kWarp) u[k] = static_cast<acc>(m[k]) / denom;
}

// phi(s): elu(s - margin) or the Gaussian exp(-((1 - s) / sigma)^2 / 2)
template <typename acc, bool kGauss>
__device__ __forceinline__ acc energy_term(acc dot, acc margin, acc sigma) {
  if (kGauss) {
    const acc t = (acc(1) - dot) / sigma;
    return exp(acc(-0.5) * (t * t));
  }
  const acc z = dot - margin;
  return z > acc(0) ? z : expm1(z);
}

// a row's energy from the lanes' partial sums (columns j = lane mod 32, in order)
template <typename acc, bool kGauss>
__device__ __forceinline__ float energy_of_row(acc lane_sum, int64_t N, acc scale) {
  const acc mean = warp_sum(lane_sum) / static_cast<acc>(N);
  return static_cast<float>(kGauss ? mean / scale : mean);
}

// <x, y>: one FMA chain over the features in order (what the tiled kernels compute)
template <typename acc>
__device__ __forceinline__ acc dot_row(const acc* x, const acc* y, int64_t C) {
  acc s = 0;
  for (int64_t c = 0; c < C; ++c) s = fma(x[c], y[c], s);
  return s;
}

// (value, position): the larger wins, NaN above all, ties to the lower position
template <typename acc>
__device__ __forceinline__ bool beats(acc v, int64_t i, acc best, int64_t at) {
  if (v != v) return best == best || i < at;
  if (best != best) return false;
  return v > best || (v == best && i < at);
}

// the warp's first maximum (v, i) of the lanes' candidates; i >= n marks no candidate
template <typename acc>
__device__ __forceinline__ void warp_argmax(acc& v, int64_t& i, int64_t n) {
  for (int step = kWarp / 2; step > 0; step /= 2) {
    const acc ov = __shfl_xor_sync(kFullMask, v, step);
    const int64_t oi = __shfl_xor_sync(kFullMask, i, step);
    if (oi < n && (i >= n || beats(ov, oi, v, i))) v = ov, i = oi;
  }
}

}  // namespace cuda
}  // namespace pitome
