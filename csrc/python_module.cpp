// The Python module pitome_kernels._C. Importing it runs the static TORCH_LIBRARY
// registrations of the kernels linked into it (torch.ops.pitome.cpu_*), and it exposes the
// same kernels as plain functions: eager calls from pitome_kernels take this path, which
// skips the dispatcher's boxing (about 2 us a call, most of a batch-1 merge on CPU).
#include <torch/extension.h>

#include "cpu/kernels.h"

namespace {

namespace py = pybind11;

template <typename F>
void def_kernel(py::module_& m, const char* name, F&& f) {
  m.def(name, std::forward<F>(f), py::call_guard<py::gil_scoped_release>());
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pitome_kernels C++ kernels (also registered as torch.ops.pitome.cpu_*)";
  using at::Tensor;
  using OptTensor = c10::optional<Tensor>;
  def_kernel(m, "cpu_energy", [](const Tensor& metric, double margin, const std::string& kernel, bool class_token) {
    return pitome::cpu::energy(metric, margin, kernel, class_token);
  });
  def_kernel(m, "cpu_plan",
             [](const Tensor& metric, int64_t r, const std::string& variant, double margin, bool class_token,
                bool distill_token) {
               return pitome::cpu::plan(metric, r, variant, margin, class_token, distill_token);
             });
  def_kernel(m, "cpu_merge",
             [](const Tensor& x, const Tensor& slot, const Tensor& offsets, const Tensor& members,
                const std::string& mode) { return pitome::cpu::merge(x, slot, offsets, members, mode); });
  def_kernel(m, "cpu_merge_backward",
             [](const Tensor& grad_out, const Tensor& x, const Tensor& out, const Tensor& slot,
                const Tensor& offsets, const Tensor& members, const std::string& mode) {
               return pitome::cpu::merge_backward(grad_out, x, out, slot, offsets, members, mode);
             });
  def_kernel(m, "cpu_merge_wavg",
             [](const Tensor& x, const OptTensor& size, const Tensor& slot, const Tensor& offsets,
                const Tensor& members) { return pitome::cpu::merge_wavg(x, size, slot, offsets, members); });
  def_kernel(m, "cpu_merge_wavg_backward",
             [](const Tensor& grad_out, const OptTensor& size, const Tensor& size_out, const Tensor& slot,
                const Tensor& offsets, const Tensor& members) {
               return pitome::cpu::merge_wavg_backward(grad_out, size, size_out, slot, offsets, members);
             });
  m.def("cpu_isa", &pitome::cpu::cpu_isa);
  m.def("supported_cpu_isa", &pitome::cpu::supported_cpu_isa);
  m.def("set_cpu_isa", [](const std::string& name) { return pitome::cpu::set_cpu_isa(name); });
  def_kernel(m, "cpu_unmerge", [](const Tensor& y, const Tensor& slot, const Tensor& offsets, const Tensor& members) {
    return pitome::cpu::unmerge(y, slot, offsets, members);
  });
}
