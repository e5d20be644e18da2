// The Python module of the emulated CUDA kernels (built by the tests, see
// tests/_cuda_emulation.py): cuda_<op> for every op of op_schemas.h, on CPU tensors, plus
// the emulator's schedule and self-tests.
#include <pybind11/stl.h>
#include <torch/extension.h>

#include "../cuda/kernels.h"
#include "../op_schemas.h"
#include "runtime.h"
#include "selftest.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  namespace py = pybind11;
  m.doc() = "csrc/cuda compiled for the CPU: the CUDA kernels run on CPU tensors";
#define PITOME_BIND(name, schema) \
  m.def("cuda_" #name, &pitome::cuda::name, py::call_guard<py::gil_scoped_release>());
  PITOME_OPS(PITOME_BIND)
#undef PITOME_BIND
  m.def("cuda_fused_plan", &pitome::cuda::fused_plan, py::call_guard<py::gil_scoped_release>());
  m.def("cuda_fused_plan_applies", &pitome::cuda::fused_plan_applies);
  m.def("cuda_multi_launch_plan", &pitome::cuda::multi_launch_plan, py::call_guard<py::gil_scoped_release>());
  m.def("set_schedule", &pitome::emulation::set_schedule, py::arg("order"), py::arg("seed") = 0);
  m.def("schedule", &pitome::emulation::schedule);
  m.def("run_selftest", &pitome::emulation::run_selftest, py::call_guard<py::gil_scoped_release>());
}
