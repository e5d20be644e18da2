// The subset of CUDA that csrc/cuda uses, on the CPU, so the CUDA kernels run where no GPU
// exists (the tests build them with -DPITOME_CUDA_EMULATION). Every CUDA thread of a block
// is a fiber; a block runs on one OS thread, several blocks at once on several. The fibers
// run until they reach __syncthreads() or a warp shuffle, in an order that can be forward,
// reverse or shuffled, so code that lacks a barrier gives different results under different
// orders. What would hang or be undefined on a GPU raises EmulationError: a barrier that
// not every live thread of the block reaches, a shuffle whose lanes diverged or exited, a
// shuffle mask that is not full.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// one array per OS thread; the fibers of the block running there share it
#define __shared__ static thread_local

// Device math, as CUDA spells it, in the global namespace (the float overloads, not double)
using std::exp;
using std::expm1;
using std::fma;
using std::sqrt;

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace pitome {
namespace emulation {

class EmulationError : public std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Fiber order at every step: "forward", "reverse" or "shuffle" (seeded); process-wide.
void set_schedule(const std::string& order, uint64_t seed);
std::string schedule();

// Runs body once per thread of every block of grid, as a kernel launch would, and returns
// when all have finished (rethrowing the first error).
void launch(dim3 grid, dim3 block, const std::function<void()>& body);

// The running fiber's indices (the values of threadIdx, blockIdx, blockDim).
const dim3& thread_idx();
const dim3& block_idx();
const dim3& block_dim();

void sync_threads();
// Stores bytes in this lane's slot, waits for the warp, copies lane src's slot into out,
// waits again (so no slot is overwritten before every lane has read).
void warp_exchange(unsigned mask, const void* bytes, void* out, int size, int src_lane);
int lane_id();

}  // namespace emulation
}  // namespace pitome

#define threadIdx (::pitome::emulation::thread_idx())
#define blockIdx (::pitome::emulation::block_idx())
#define blockDim (::pitome::emulation::block_dim())

inline void __syncthreads() { ::pitome::emulation::sync_threads(); }

template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 16, "shuffle of a small trivially copyable value");
  T out;
  ::pitome::emulation::warp_exchange(mask, &v, &out, sizeof(T), src_lane & 31);
  return out;
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
  return __shfl_sync(mask, v, ::pitome::emulation::lane_id() ^ lane_mask);
}
