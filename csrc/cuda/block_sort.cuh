// A bitonic sort in shared memory by every thread of a block. Keys come with distinct
// positions, and (key, position) pairs are totally ordered, so the result is the one order a
// stable sort gives: descending floats (NaN first, ties to the lower position) or ascending
// distinct integers.
#pragma once

#include <cstdint>

#include "common.cuh"

namespace pitome {
namespace cuda {

// x before y in a descending stable sort of float keys (NaN above everything, as torch.sort)
struct DescendingStable {
  __device__ __forceinline__ static bool before(float kx, int ix, float ky, int iy) {
    if (kx != kx) return ky == ky || ix < iy;
    if (ky != ky) return false;
    return kx > ky || (kx == ky && ix < iy);
  }
};

// x before y for distinct integer keys, ascending
struct AscendingKey {
  __device__ __forceinline__ static bool before(int kx, int, int ky, int) { return kx < ky; }
};

// Smallest power of two >= n: the width to sort n keys at.
__device__ __forceinline__ int sort_width(int n) {
  int width = 1;
  while (width < n) width *= 2;
  return width;
}

// Sorts keys[0, n) with pos[0, n) along, n a power of two; the caller pads with keys that
// sort last. Starts and ends with a barrier.
template <typename Order, typename Key>
__device__ void block_sort(Key* keys, int* pos, int n) {
  __syncthreads();
  for (int k = 2; k <= n; k *= 2) {
    for (int j = k / 2; j > 0; j /= 2) {
      for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int partner = i ^ j;
        if (partner <= i) continue;
        const bool first_half = (i & k) == 0;  // this run ends up in order, the other reversed
        const bool swap = first_half ? Order::before(keys[partner], pos[partner], keys[i], pos[i])
                                     : Order::before(keys[i], pos[i], keys[partner], pos[partner]);
        if (swap) {
          const Key key = keys[i];
          keys[i] = keys[partner], keys[partner] = key;
          const int p = pos[i];
          pos[i] = pos[partner], pos[partner] = p;
        }
      }
      __syncthreads();
    }
  }
}

}  // namespace cuda
}  // namespace pitome
