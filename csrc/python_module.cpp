// The Python module pitome_kernels._C. Importing it runs the static TORCH_LIBRARY
// registrations of the kernels linked into it (torch.ops.pitome.cpu_*), and it exposes the
// same kernels (cpu/ops_list.h) as plain functions that release the GIL: eager calls from
// pitome_kernels take this path, which skips the dispatcher's boxing, a fixed cost per
// call that small merges feel.
#include <torch/extension.h>

#include "cpu/ops_list.h"

PYBIND11_MODULE(_C, m) {
  namespace py = pybind11;
  m.doc() = "pitome_kernels C++ kernels (also registered as torch.ops.pitome.cpu_*)";
#define PITOME_BIND(name, schema) \
  m.def("cpu_" #name, &pitome::cpu::name, py::call_guard<py::gil_scoped_release>());
  PITOME_CPU_OPS(PITOME_BIND)
#undef PITOME_BIND
  m.def("cpu_isa", &pitome::cpu::cpu_isa);
  m.def("supported_cpu_isa", &pitome::cpu::supported_cpu_isa);
  m.def("set_cpu_isa", &pitome::cpu::set_cpu_isa);
}
