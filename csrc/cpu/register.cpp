// Registers the CPU kernels of ops_list.h as torch.ops.pitome.cpu_* (CPU dispatch key).
// The public ops torch.ops.pitome.{energy, plan, merge, ...} are defined once, in
// pitome_kernels/ops.py, and call these when the "cpu" backend is chosen; C++ users may
// call them directly.
#include <torch/library.h>

#include "ops_list.h"

TORCH_LIBRARY_FRAGMENT(pitome, m) {
#define PITOME_DEF(name, schema) m.def("cpu_" #name schema);
  PITOME_CPU_OPS(PITOME_DEF)
#undef PITOME_DEF
}

TORCH_LIBRARY_IMPL(pitome, CPU, m) {
#define PITOME_IMPL(name, schema) m.impl("cpu_" #name, &pitome::cpu::name);
  PITOME_CPU_OPS(PITOME_IMPL)
#undef PITOME_IMPL
}
