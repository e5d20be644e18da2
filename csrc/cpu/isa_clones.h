// Internal, no include guard: the one list of the ISA clones of simd.h. Compiles the
// per-ISA header named by PITOME_CLONE_HEADER (a quoted file name, which the includer
// defines and this header undefines) once per clone, inside the clone's namespace
// detail::isa_avx512, isa_avx2 or isa_default, where PITOME_DISPATCH finds it. There the
// header finds PITOME_KTARGET (the clone's target attribute, which every function of it
// carries: see simd.h), PITOME_KINLINE (always inline, on that target), PITOME_KAVX512 or
// PITOME_KAVX2 (which clone, for the few intrinsics that GCC's vector extensions do not
// express) and the clone's vectors (clone_vectors.h, compiled by the first inclusion in
// a translation unit). A per-ISA header includes nothing itself, since it is compiled
// inside a namespace: what it uses comes from here and from the header that includes
// this one.
#ifndef PITOME_CLONE_HEADER
#error "isa_clones.h needs PITOME_CLONE_HEADER, the per-ISA header to compile"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "simd.h"

#if PITOME_X86
#include <immintrin.h>
#endif

#define PITOME_KINLINE inline __attribute__((always_inline)) PITOME_KTARGET

#if PITOME_X86
#define PITOME_CLONE isa_avx512
#define PITOME_KTARGET PITOME_TARGET_AVX512
#define PITOME_KAVX512 1
#include "clone_namespace.h"

#define PITOME_CLONE isa_avx2
#define PITOME_KTARGET PITOME_TARGET_AVX2
#define PITOME_KAVX2 1
#include "clone_namespace.h"
#endif

#define PITOME_CLONE isa_default
#define PITOME_KTARGET
#include "clone_namespace.h"

#undef PITOME_KINLINE
#undef PITOME_CLONE_HEADER
#define PITOME_CLONE_VECTORS  // every clone has its vectors now
