// Kernels that exercise the emulator itself (tests/test_cuda_emulation.py): a correct block
// exchange, the same exchange missing its barrier (its result depends on the fiber order),
// half a warp at a barrier and half at a shuffle, a shuffle after some lanes exited, a warp sum.
#include "selftest.h"

#include "runtime.h"

namespace pitome {
namespace emulation {
namespace {

constexpr int kThreads = 64;

template <bool kBarrier>
__global__ void rotate_kernel(int* out) {
  __shared__ int values[kThreads];
  const int t = threadIdx.x;
  values[t] = blockIdx.x * 1000 + t;
  if (kBarrier) __syncthreads();
  out[blockIdx.x * kThreads + t] = values[(t + 1) % kThreads];
}

// half of each warp waits at the block barrier, the other half at a shuffle: a hang
__global__ void barrier_against_shuffle_kernel(int* out) {
  int v = threadIdx.x;
  if (threadIdx.x % 32 < 16)
    __syncthreads();
  else
    v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void shuffle_after_exit_kernel(int* out) {
  if (threadIdx.x % 32 >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, static_cast<int>(threadIdx.x), 1);
}

__global__ void warp_sum_kernel(int* out) {
  int v = threadIdx.x;
  for (int step = 16; step > 0; step /= 2) v += __shfl_xor_sync(0xffffffffu, v, step);
  out[threadIdx.x] = v;
}

}  // namespace

std::vector<int> run_selftest(const std::string& name, int blocks) {
  std::vector<int> out(blocks * kThreads, -1);
  int* p = out.data();
  std::function<void()> body;
  if (name == "rotate")
    body = [p] { rotate_kernel<true>(p); };
  else if (name == "rotate_without_barrier")
    body = [p] { rotate_kernel<false>(p); };
  else if (name == "barrier_against_shuffle")
    body = [p] { barrier_against_shuffle_kernel(p); };
  else if (name == "shuffle_after_exit")
    body = [p] { shuffle_after_exit_kernel(p); };
  else if (name == "warp_sum")
    body = [p] { warp_sum_kernel(p); };
  else
    throw std::invalid_argument("unknown self-test '" + name + "'");
  launch(dim3(blocks), dim3(kThreads), body);
  return out;
}

}  // namespace emulation
}  // namespace pitome
