// Internal helpers of the CPU kernels: fixed-width SIMD vectors (GCC/Clang vector
// extensions) and runtime ISA dispatch.
//
// Code on explicit vectors (the per-ISA headers similarity_kernels.h, sort_kernels.h,
// row_kernels.h) is compiled three times, once per ISA, by isa_clones.h into the
// namespaces detail::isa_avx512 / isa_avx2 / isa_default, every function carrying its
// target attribute from the start (GCC lowers generic vector code of a function compiled
// for the baseline ISA before inlining, so an always-inline baseline function is NOT
// enough there), each clone on vectors of its own register width (clone_vectors.h);
// PITOME_DISPATCH(...) calls the active one. Plain loops (the merge kernels) go through
// dispatch(), which inlines them into one function per ISA, where the compiler
// auto-vectorises them for AVX-512, for AVX2+FMA and for the baseline ISA. The
// best clone the CPU supports is picked at run time, so the extension needs no -march
// flag and still runs on any x86-64 (or other) CPU. PITOME_CPU_ISA=avx512|avx2|default
// forces a lower clone, as does set_isa() (pitome_kernels.set_cpu_isa) at run time.
// Different clones may round differently (FMA, vector widths), the same clone is bitwise
// repeatable run to run and for any thread count.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#if !defined(__GNUC__) && !defined(__clang__)
#error "pitome CPU kernels need GCC or Clang vector extensions"
#endif

#pragma GCC diagnostic ignored "-Wpsabi"

#include <ATen/Parallel.h>

// at::parallel_for (OpenMP backend) is an inline header template around
// "#pragma omp parallel": compiled without -fopenmp it silently runs serially.
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#error "pitome CPU kernels need -fopenmp: without it at::parallel_for runs on one thread"
#endif

#define PITOME_INLINE inline __attribute__((always_inline))

#if defined(__x86_64__) || defined(__i386__)
#define PITOME_X86 1
#define PITOME_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,bmi,bmi2,popcnt")))
#define PITOME_TARGET_AVX2 __attribute__((target("avx2,fma,f16c,bmi,bmi2,popcnt")))
#else
#define PITOME_X86 0
#endif

namespace pitome {
namespace cpu {
namespace simd {

enum Isa : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

// The best clone this CPU supports, whatever PITOME_CPU_ISA says.
inline int supported_isa() {
  static const int value = [] {
#if PITOME_X86
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return int{kDefault};
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
      return int{kAvx512};
    return int{kAvx2};
#else
    return int{kDefault};
#endif
  }();
  return value;
}

// The clones' names, indexed by Isa (PITOME_CPU_ISA, pitome_kernels.set_cpu_isa).
inline constexpr const char* kIsaNames[] = {"default", "avx2", "avx512"};

// The Isa named `name`, or -1.
inline int isa_from_name(const char* name) {
  for (int isa = kDefault; isa <= kAvx512; ++isa)
    if (std::strcmp(name, kIsaNames[isa]) == 0) return isa;
  return -1;
}

// The best clone this CPU runs, lowered by PITOME_CPU_ISA=avx2|default (other values ignored).
inline int detect_isa() {
  int best = supported_isa();
  if (const char* env = std::getenv("PITOME_CPU_ISA")) {
    const int want = isa_from_name(env);
    if (want >= 0 && want < best) best = want;
  }
  return best;
}

// The clone the kernels run: detect_isa() until set_isa() changes it (between calls: a
// call that reads it while it changes may run parts in either clone).
inline std::atomic<int>& active_isa() {
  static std::atomic<int> value{detect_isa()};
  return value;
}

inline int isa() { return active_isa().load(std::memory_order_relaxed); }

// Runs the kernels in clone `want`, or in the best one this CPU supports below it; returns
// the clone now in use.
inline int set_isa(int want) {
  const int use = want < supported_isa() ? want : supported_isa();
  active_isa().store(use, std::memory_order_relaxed);
  return use;
}

// dispatch(f) runs f() compiled for the best ISA of this CPU. f must be a lambda marked
// PITOME_LAMBDA whose body only calls PITOME_INLINE code: it is inlined into one
// function per ISA, so the whole kernel is compiled three times.
#define PITOME_LAMBDA __attribute__((always_inline))

// PITOME_DISPATCH(K::kernel<T>(args...)): K names the per-ISA namespace of the best ISA.
#if PITOME_X86
#define PITOME_DISPATCH(...)                                                          \
  do {                                                                                \
    switch (::pitome::cpu::simd::isa()) {                                             \
      case ::pitome::cpu::simd::kAvx512: {                                            \
        namespace K = ::pitome::cpu::detail::isa_avx512;                              \
        __VA_ARGS__;                                                                  \
      } break;                                                                        \
      case ::pitome::cpu::simd::kAvx2: {                                              \
        namespace K = ::pitome::cpu::detail::isa_avx2;                                \
        __VA_ARGS__;                                                                  \
      } break;                                                                        \
      default: {                                                                      \
        namespace K = ::pitome::cpu::detail::isa_default;                             \
        __VA_ARGS__;                                                                  \
      } break;                                                                        \
    }                                                                                 \
  } while (0)
#else
#define PITOME_DISPATCH(...)                                  \
  do {                                                        \
    namespace K = ::pitome::cpu::detail::isa_default;         \
    __VA_ARGS__;                                              \
  } while (0)
#endif

#if PITOME_X86
template <typename F>
PITOME_TARGET_AVX512 void invoke_avx512(const F& f) {
  f();
}
template <typename F>
PITOME_TARGET_AVX2 void invoke_avx2(const F& f) {
  f();
}
#endif
template <typename F>
void invoke_default(const F& f) {
  f();
}
template <typename F>
void dispatch(const F& f) {
#if PITOME_X86
  switch (isa()) {
    case kAvx512: invoke_avx512(f); return;
    case kAvx2: invoke_avx2(f); return;
    default: break;
  }
#endif
  invoke_default(f);
}

// The type every kernel computes and accumulates in for inputs of type T: double for
// float64, float for float32, bfloat16 and float16.
template <typename T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// 64-byte vectors of T and the matching integer (mask) vectors.
template <typename T>
struct V;
template <>
struct V<float> {
  typedef float type __attribute__((vector_size(64)));
  typedef int32_t itype __attribute__((vector_size(64)));
  static constexpr int W = 16;
};
template <>
struct V<double> {
  typedef double type __attribute__((vector_size(64)));
  typedef int64_t itype __attribute__((vector_size(64)));
  static constexpr int W = 8;
};

template <typename T>
using vec_t = typename V<T>::type;
template <typename T>
using ivec_t = typename V<T>::itype;

}  // namespace simd
}  // namespace cpu
}  // namespace pitome
