// Registers the CUDA kernels (kernels.h) as torch.ops.pitome.cuda_* (CUDA dispatch key),
// with the schemas of op_schemas.h. The public ops torch.ops.pitome.{energy, plan, ...}
// call them when the "cuda" backend is chosen; C++ users may call them directly.
#include <torch/library.h>

#include "../op_schemas.h"
#include "kernels.h"

TORCH_LIBRARY_FRAGMENT(pitome, m) {
#define PITOME_DEF(name, schema) m.def("cuda_" #name schema);
  PITOME_OPS(PITOME_DEF)
#undef PITOME_DEF
}

TORCH_LIBRARY_IMPL(pitome, CUDA, m) {
#define PITOME_IMPL(name, schema) m.impl("cuda_" #name, &pitome::cuda::name);
  PITOME_OPS(PITOME_IMPL)
#undef PITOME_IMPL
}
