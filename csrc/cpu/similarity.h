// Internal: the similarity machinery shared by energy.cpp and plan.cpp (and, through the
// same per-ISA clones, merge.cpp's row kernels, row_kernels.h). Nothing here
// materialises S = u u^T: every kernel works on one batch element's normalised metric
// held transposed, uT [c, ld] (ld = n rounded up to two vector widths, padded columns
// zero), in the compute type T (float for float32/bfloat16/float16 inputs, double for
// float64). A register tile takes its broadcast operand from uT too (kRows consecutive
// columns), so the row-major u is never written.
#pragma once

#include <ATen/Parallel.h>
#include <omp.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <new>
#include <type_traits>
#include <vector>

#include "simd.h"

namespace pitome {
namespace cpu {
namespace detail {

using simd::ivec_t;
using simd::V;
using simd::vec_t;

// Cache-line aligned storage: every vector load of uT and its gathered copies stays within
// one line (with malloc's 16-byte alignment, most 64-byte loads and stores straddled two
// lines, which cost the normalisation a third of its time).
template <typename T>
struct LineAllocator {
  using value_type = T;
  LineAllocator() = default;
  template <typename U>
  LineAllocator(const LineAllocator<U>&) {}
  T* allocate(size_t count) {
    return static_cast<T*>(::operator new(count * sizeof(T), std::align_val_t{64}));
  }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
  template <typename U>
  bool operator==(const LineAllocator<U>&) const { return true; }
};
template <typename T>
using aligned_vector = std::vector<T, LineAllocator<T>>;

constexpr int kRows = 8;  // rows of one register tile
constexpr double kSmallMarginLimit = 80.0;  // see kernel_value

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

template <typename T>
inline int64_t padded_ld(int64_t n) {
  // two vectors (at least kRows), so that a register tile never reads past the buffer:
  // neither its 2 vectors of columns nor its kRows broadcast columns
  return round_up(std::max<int64_t>(n, 1), 2 * V<T>::W);
}

// Whether a pass of `macs` multiply-adds is worth a team of threads: large enough, more
// than one thread, and not already inside a parallel region (a batch loop).
inline bool team_worth(int64_t macs) {
  return macs >= (int64_t{1} << 18) && at::get_num_threads() > 1 && !at::in_parallel_region();
}

// body(tid, threads) on every thread of one OpenMP team when `team`, else body(0, 1) on the
// calling thread. No worksharing inside: called in another region's thread, orphaned
// worksharing would bind to that region's team.
template <typename Body>
void run_team(bool team, const Body& body) {
  if (team) {
#pragma omp parallel
    body(static_cast<int64_t>(omp_get_thread_num()), static_cast<int64_t>(omp_get_num_threads()));
  } else {
    body(int64_t{0}, int64_t{1});
  }
}

// Where the columns of a uT live: panels of ld columns (ld a multiple of two vectors),
// each a row-major [c, ld] block; columns [0, first) in panel 0 (none when first == 0),
// then every ld columns in the next panel. With first == 0 and ld >= n it is one plain
// [c, ld] matrix. The energy's row blocks are its panels, so the two operands of a tile
// are two contiguous c x ld panels (read with a stride of ld columns, uT rows of all n
// columns had L1 misses that the prefetchers did not cover: about a tenth of the FMA loop).
struct Panels {
  int64_t c = 0, ld = 0, first = 0;
  // offset of column i (feature 0); feature k of it is k * ld further
  int64_t offset(int64_t i) const {
    if (i < first) return i;
    const int64_t q = i - first;
    return ((first > 0 ? 1 : 0) + q / ld) * c * ld + q % ld;
  }
  int64_t size(int64_t n) const {  // elements of the panels of n columns
    const int64_t panels = (first > 0 ? 1 : 0) + (std::max<int64_t>(n - first, 1) + ld - 1) / ld;
    return panels * c * ld;
  }
};

// One plain [c, padded_ld(n)] uT.
template <typename T>
Panels plain_panels(int64_t n, int64_t c) {
  return Panels{c, padded_ld<T>(n), 0};
}

// Workspace of one batch element: uT (and the energy's per-tile partial sums, and the
// input converted to T where it is of another type).
template <typename T>
struct Normalised {
  aligned_vector<T> ut, part, converted;
  int64_t n = 0;
  Panels layout;
  // Columns [0, n) of uT are written by normalise_rows; the padding is zeroed here, and
  // only when the shape changes (nothing else writes it).
  void resize(int64_t n_, Panels layout_) {
    if (n_ == n && layout_.c == layout.c && layout_.ld == layout.ld && layout_.first == layout.first &&
        static_cast<int64_t>(ut.size()) == layout.size(n))
      return;
    n = n_;
    layout = layout_;
    ut.assign(layout.size(n), T(0));
  }
  const T* column(int64_t i) const { return ut.data() + layout.offset(i); }
};

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

// Reduces the per-lane running maxima of one row: NaN wins, then the larger value, then
// the lower index (kept out of line: unrolled into the kernel it bloats the code).
template <typename T, int W>
__attribute__((noinline)) void lane_argmax(const T* vals, const T* idx, T& best, int32_t& dst) {
  bool nan = false;
  T mx = -std::numeric_limits<T>::infinity();
  for (int l = 0; l < W; ++l) {
    if (vals[l] != vals[l])
      nan = true;
    else if (vals[l] > mx)
      mx = vals[l];
  }
  T bi = std::numeric_limits<T>::infinity();
  for (int l = 0; l < W; ++l) {
    const bool hit = nan ? (vals[l] != vals[l]) : (vals[l] == mx);
    if (hit && idx[l] < bi) bi = idx[l];
  }
  best = nan ? std::numeric_limits<T>::quiet_NaN() : mx;
  dst = static_cast<int32_t>(bi);
}

}  // namespace detail
}  // namespace cpu
}  // namespace pitome

// The vector kernels, once per ISA (see simd.h); PITOME_KAVX512 marks the AVX-512 clone
// (for the few intrinsics that GCC's vector extensions do not express, and its vector width),
// PITOME_KAVX2 the AVX2 clone.
#if PITOME_X86
#include <immintrin.h>
#define PITOME_ISA_NS isa_avx512
#define PITOME_KTARGET PITOME_TARGET_AVX512
#define PITOME_KAVX512 1
#include "similarity_kernels.h"
#undef PITOME_ISA_NS
#undef PITOME_KTARGET
#undef PITOME_KAVX512
#define PITOME_ISA_NS isa_avx2
#define PITOME_KTARGET PITOME_TARGET_AVX2
#define PITOME_KAVX2 1
#include "similarity_kernels.h"
#undef PITOME_ISA_NS
#undef PITOME_KTARGET
#undef PITOME_KAVX2
#endif
#define PITOME_ISA_NS isa_default
#define PITOME_KTARGET
#include "similarity_kernels.h"
#undef PITOME_ISA_NS
#undef PITOME_KTARGET

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
inline void sort_desc(const double* v, int64_t n, std::vector<int64_t>& order, std::vector<uint64_t>&) {
  order.resize(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [v](int64_t x, int64_t y) { return ranks_before<double>(v[x], x, v[y], y); });
}

// nu <- the n rows at m + rows[i] * stride (m + i * stride when rows is null), normalised
// and transposed into uT laid out as `layout`, in the calling thread: O(n c), and rows
// normalised by one thread and then read by another cost more in cache-line transfers than
// the normalisation itself (see normalised_energy).
template <typename in_t, typename T>
void normalise(const in_t* m, const int64_t* rows, int64_t n, int64_t c, int64_t stride, Normalised<T>& nu,
               Panels layout) {
  nu.resize(n, layout);
  if constexpr (!std::is_same_v<in_t, T>) nu.converted.resize(n * c);
  PITOME_DISPATCH(K::normalise_rows<in_t, T>(m, rows, n, c, stride, nu.ut.data(), layout, nu.converted.data()));
}

// out[0, n) <- the float32 energies of the rows [0, n) of m (row stride c) (see
// energy.cpp); nu is the calling thread's workspace (its uT panels, and the partial
// sums). With `order` (and `keys`, scratch): also order <- the energies ranked as by
// sort_desc (each thread sorts the rows it summed; the runs are merged). One parallel
// region when called outside one; the result does not depend on the number of threads.
// lead_task, if given, is run once by the calling thread, inside the region before its
// tiles (work off the critical path while the other threads compute).
template <typename in_t, typename T>
void normalised_energy(const in_t* m, int64_t n, int64_t c, double margin, bool gauss, Normalised<T>& nu,
                       float* out, std::vector<int64_t>* order = nullptr, std::vector<uint64_t>* keys = nullptr,
                       const std::function<void()>* lead_task = nullptr);

}  // namespace detail
}  // namespace cpu
}  // namespace pitome
