// Internal: the similarity machinery shared by energy.cpp and plan.cpp, with its vector
// kernels (similarity_kernels.h, compiled once per ISA clone). Nothing here
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
// one line (with malloc's 16-byte alignment, most 64-byte loads and stores straddle two
// lines, which slows the normalisation down).
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
// columns had L1 misses that the prefetchers did not cover).
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

#define PITOME_CLONE_HEADER "similarity_kernels.h"
#include "isa_clones.h"

namespace pitome {
namespace cpu {
namespace detail {

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
