// Internal helpers of the CUDA kernels: accumulation types, warp reductions, launch checks.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

namespace pitome {
namespace cuda {

// float for float32/float16/bfloat16 data, double for float64 (reference.py's compute dtype)
template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};
template <typename T>
using acc_t = typename Acc<T>::type;

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int step = kWarp / 2; step > 0; step /= 2) v += __shfl_xor_sync(kFullMask, v, step);
  return v;
}

// The dtype a tensor is computed in (acc_t on the host): float64 stays, the rest is float32.
inline at::ScalarType compute_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline int64_t blocks_for(int64_t n, int64_t per_block) { return (n + per_block - 1) / per_block; }

}  // namespace cuda
}  // namespace pitome
