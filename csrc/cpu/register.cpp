// Registers the CPU kernels as torch.ops.pitome.cpu_* (CPU dispatch key). The public ops
// torch.ops.pitome.{energy, plan, merge, ...} are defined once, in pitome_kernels/ops.py,
// and call these when the "cpu" backend is chosen; C++ users may call them directly.
#include <torch/library.h>

#include "kernels.h"

TORCH_LIBRARY_FRAGMENT(pitome, m) {
  m.def("cpu_energy(Tensor metric, float margin, str kernel, bool class_token) -> Tensor");
  m.def(
      "cpu_plan(Tensor metric, int r, str variant, float margin, bool class_token, "
      "bool distill_token) -> (Tensor, Tensor, Tensor)");
  m.def("cpu_merge(Tensor x, Tensor slot, Tensor offsets, Tensor members, str mode) -> Tensor");
  m.def(
      "cpu_merge_backward(Tensor grad_out, Tensor x, Tensor out, Tensor slot, Tensor offsets, "
      "Tensor members, str mode) -> Tensor");
  m.def(
      "cpu_merge_wavg(Tensor x, Tensor? size, Tensor slot, Tensor offsets, Tensor members) "
      "-> (Tensor, Tensor)");
  m.def(
      "cpu_merge_wavg_backward(Tensor grad_out, Tensor? size, Tensor size_out, Tensor slot, "
      "Tensor offsets, Tensor members) -> Tensor");
  m.def("cpu_unmerge(Tensor y, Tensor slot, Tensor offsets, Tensor members) -> Tensor");
}

TORCH_LIBRARY_IMPL(pitome, CPU, m) {
  m.impl("cpu_energy", &pitome::cpu::energy);
  m.impl("cpu_plan", &pitome::cpu::plan);
  m.impl("cpu_merge", &pitome::cpu::merge);
  m.impl("cpu_merge_backward", &pitome::cpu::merge_backward);
  m.impl("cpu_merge_wavg", &pitome::cpu::merge_wavg);
  m.impl("cpu_merge_wavg_backward", &pitome::cpu::merge_wavg_backward);
  m.impl("cpu_unmerge", &pitome::cpu::unmerge);
}
