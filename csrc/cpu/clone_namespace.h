// Internal, no include guard: one clone of isa_clones.h, whose macros name it (PITOME_CLONE,
// its namespace; PITOME_KTARGET; PITOME_KAVX512 or PITOME_KAVX2). Compiles the clone's
// vectors (on the first inclusion of isa_clones.h only) and PITOME_CLONE_HEADER inside
// detail::PITOME_CLONE, then forgets the clone's macros for the next one.
namespace pitome::cpu::detail::PITOME_CLONE {
#ifndef PITOME_CLONE_VECTORS
#include "clone_vectors.h"
#endif
#include PITOME_CLONE_HEADER
}  // namespace pitome::cpu::detail::PITOME_CLONE

#undef PITOME_CLONE
#undef PITOME_KTARGET
#undef PITOME_KAVX512
#undef PITOME_KAVX2
