// Internal helpers of the CUDA kernels: accumulation types, warp reductions, launches and
// device guards. With PITOME_CUDA_EMULATION the same sources compile as C++ for the CPU
// (csrc/emulation), their tensors on the CPU: the tests run the kernels where no GPU is.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <utility>

#ifdef PITOME_CUDA_EMULATION
#include "../emulation/runtime.h"
#else
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#endif

#include "device.h"

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

// kernel<<<grid, block, 0, current stream>>>(args...), with the launch error checked
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, Args&&... args) {
#ifdef PITOME_CUDA_EMULATION
  emulation::launch(grid, block, [&] { kernel(args...); });
#else
  kernel<<<grid, block, 0, at::cuda::getCurrentCUDAStream()>>>(std::forward<Args>(args)...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
#endif
}

}  // namespace cuda
}  // namespace pitome
