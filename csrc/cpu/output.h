// Internal: allocation of the large outputs of the CPU kernels.
#pragma once

#include <ATen/ATen.h>
#include <ATen/EmptyTensor.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pitome {
namespace cpu {
namespace detail {

// An uninitialised contiguous CPU tensor, allocated without a trip through the dispatcher
// (a fixed cost per output that small merges feel).
inline at::Tensor empty_cpu(at::IntArrayRef sizes, at::ScalarType dtype) {
  return at::Tensor(at::detail::empty_cpu(sizes, dtype, /*pin_memory=*/false, /*memory_format_opt=*/std::nullopt));
}

// empty_cpu, plus a transparent-huge-page hint on outputs of 8 MiB or more. A fresh
// output of that size is freshly mapped memory that the kernel then touches page by page;
// with the hint (honoured when THP is in "madvise" or "always" mode) the first write to
// every 2 MiB takes one fault instead of 512. It changes no value and can be ignored by
// the OS.
inline at::Tensor empty_output(at::IntArrayRef sizes, at::ScalarType dtype) {
  at::Tensor t = empty_cpu(sizes, dtype);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  const uintptr_t bytes = t.nbytes();
  if (bytes >= 4 * kHuge) {
    const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
    const uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1), hi = (begin + bytes) & ~(kHuge - 1);
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
  }
#endif
  return t;
}

}  // namespace detail
}  // namespace cpu
}  // namespace pitome
