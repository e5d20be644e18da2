// Internal: ranking by value descending (NaN first, ties to the lower position, like
// torch.sort(descending=True, stable=True)), for the plans' energy and match orders: the
// sort keys, a vector sort of up to kSmallSort keys (sort_kernels.h, compiled once per
// ISA clone) and sort_desc. Sorted runs of keys are merged by sorted_runs.h.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "simd.h"

#define PITOME_CLONE_HEADER "sort_kernels.h"
#include "isa_clones.h"

namespace pitome {
namespace cpu {
namespace detail {

// A uint32 whose ascending order is x's descending order (NaN first, one NaN, -0 == +0).
// Branch-free, so that loops over it vectorise.
inline uint32_t descending_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  bits = (x != x) ? 0x7fc00000u : bits;          // one NaN, sorted first
  bits = (bits & 0x7fffffffu) == 0 ? 0u : bits;  // -0 == +0
  // negative floats keep their bits (larger magnitude sorts later); non-negative ones
  // are flipped below them
  return bits ^ ((bits >> 31) ? 0u : 0x7fffffffu);
}

constexpr int64_t kSmallSort = 256;  // the vector sort's limit (sort_kernels.h)

// The sort key of value v at position i: ascending keys (as signed integers) are v
// descending, ties to the lower position (the high half's top bit flipped, so that the
// signed order of the 64-bit key is the unsigned order of (bits, i)).
inline int64_t rank_key(float v, int64_t i) {
  return static_cast<int64_t>((static_cast<uint64_t>(descending_bits(v) ^ 0x80000000u) << 32) |
                              static_cast<uint64_t>(i));
}

// Whether sort_keys can sort up to kSmallSort keys here (a vector sort: AVX2 or AVX-512, GCC).
inline bool vector_sort_available() {
#if PITOME_X86 && !defined(__clang__)
  return simd::isa() >= simd::kAvx2;
#else
  return false;
#endif
}

// keys[0, n) sorted ascending, n <= kSmallSort, with room up to n rounded up to a power of
// two (at least 8). Only where vector_sort_available().
inline void sort_keys(int64_t* keys, int64_t n) {
#if PITOME_X86 && !defined(__clang__)
  if (simd::isa() == simd::kAvx512)
    isa_avx512::sort_keys_small(keys, n);
  else
    isa_avx2::sort_keys_small(keys, n);
#else
  (void)keys;
  (void)n;
#endif
}

// order[0..n) = positions of v sorted by value descending (NaN first, -0 == +0, like
// torch.sort(descending=True, stable=True)), ties to the lower position. Up to kSmallSort
// values (with AVX2 or AVX-512): a bitonic vector sort of the keys (bits << 32 | position).
// Otherwise a stable LSD radix sort (4 x 8 bits) of the bits, where a digit that every key
// shares (the sign and top exponent bits, for energies of one magnitude) costs no pass.
// `keys` is the scratch (2n 64-bit words).
inline void sort_desc(const float* v, int64_t n, std::vector<int64_t>& order, std::vector<uint64_t>& keys) {
  order.resize(n);
  if (n <= kSmallSort && vector_sort_available()) {
    keys.resize(kSmallSort);  // room for the padding up to a power of two
    int64_t* k = reinterpret_cast<int64_t*>(keys.data());
    for (int64_t i = 0; i < n; ++i) k[i] = rank_key(v[i], i);
    sort_keys(k, n);
    for (int64_t i = 0; i < n; ++i) order[i] = k[i] & 0xffffffff;
    return;
  }
  keys.resize(2 * n);
  uint32_t* src_k = reinterpret_cast<uint32_t*>(keys.data());
  uint32_t* src_i = src_k + n;
  uint32_t* dst_k = src_i + n;
  uint32_t* dst_i = dst_k + n;
  uint32_t hist[4][256] = {};
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = descending_bits(v[i]);
    src_k[i] = bits;
    src_i[i] = static_cast<uint32_t>(i);
    for (int d = 0; d < 4; ++d) ++hist[d][(bits >> (8 * d)) & 0xffu];
  }
  for (int d = 0; d < 4; ++d) {
    const int shift = 8 * d;
    if (n == 0 || hist[d][(src_k[0] >> shift) & 0xffu] == n) continue;  // one digit: order unchanged
    uint32_t pos[256];
    uint32_t total = 0;
    for (int h = 0; h < 256; ++h) {
      pos[h] = total;
      total += hist[d][h];
    }
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t p = pos[(src_k[i] >> shift) & 0xffu]++;
      dst_k[p] = src_k[i];
      dst_i[p] = src_i[i];
    }
    std::swap(src_k, dst_k);
    std::swap(src_i, dst_i);
  }
  for (int64_t i = 0; i < n; ++i) order[i] = static_cast<int64_t>(src_i[i]);
}

// Strict-weak "greater" on (value desc, NaN first like torch.sort, index asc).
template <typename T>
inline bool ranks_before(T va, int64_t ia, T vb, int64_t ib) {
  const bool na = std::isnan(va), nb = std::isnan(vb);
  if (na || nb) {
    if (na && nb) return ia < ib;
    return na;
  }
  if (va != vb) return va > vb;
  return ia < ib;
}

// float64 values: a comparison sort on ranks_before.
inline void sort_desc(const double* v, int64_t n, std::vector<int64_t>& order, std::vector<uint64_t>&) {
  order.resize(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [v](int64_t x, int64_t y) { return ranks_before<double>(v[x], x, v[y], y); });
}

}  // namespace detail
}  // namespace cpu
}  // namespace pitome
