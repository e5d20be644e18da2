// Internal: what the row loops of the merge kernels (merge.cpp, merge_backward.cpp,
// unmerge.cpp) share: the accumulation type and block, and the row kernels of
// row_kernels.h (compiled once per ISA clone) run in the CPU's clone.
#pragma once

#include <cstdint>
#include <type_traits>

#include "simd.h"

#define PITOME_CLONE_HEADER "row_kernels.h"
#include "isa_clones.h"

namespace pitome {
namespace cpu {
namespace detail {

constexpr int64_t kBlock = 512;  // feature block accumulated on the stack

template <typename scalar_t>
using acc_type = simd::compute_t<scalar_t>;

// One row copied by the row kernels of the CPU's ISA clone.
PITOME_INLINE void copy_row(void* dst, const void* src, int64_t bytes) {
  PITOME_DISPATCH(K::copy_bytes(dst, src, bytes));
}

// A float32 group's weighted sum by the row kernels of the CPU's ISA clone: the features
// done by the vector path (0 for other types).
template <typename scalar_t>
PITOME_INLINE int64_t weighted_rows_fast(const scalar_t* xb, int64_t K, const int32_t* mem, int64_t cnt,
                                         const acc_type<scalar_t>* w, acc_type<scalar_t> inv, scalar_t* o) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    const int64_t features = K;  // PITOME_DISPATCH's namespace alias K hides the parameter
    int64_t done = 0;
    PITOME_DISPATCH(done = K::weighted_rows(xb, features, mem, cnt, w, inv, o));
    return done;
  }
  return 0;
}

}  // namespace detail
}  // namespace cpu
}  // namespace pitome
