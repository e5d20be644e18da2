// The CPU ops, each once: X(name, schema) for the kernel pitome::cpu::name (kernels.h),
// which register.cpp registers with the dispatcher as torch.ops.pitome.cpu_<name> (its
// schema: "cpu_<name>" followed by schema) and python_module.cpp binds as the plain
// function pitome_kernels._C.cpu_<name>.
#pragma once

#include "kernels.h"

#define PITOME_CPU_OPS(X)                                                                                    \
  X(energy, "(Tensor metric, float margin, str kernel, bool class_token) -> Tensor")                         \
  X(plan,                                                                                                    \
    "(Tensor metric, int r, str variant, float margin, bool class_token, bool distill_token) "               \
    "-> (Tensor, Tensor, Tensor)")                                                                           \
  X(merge, "(Tensor x, Tensor slot, Tensor offsets, Tensor members, str mode) -> Tensor")                    \
  X(merge_backward,                                                                                          \
    "(Tensor grad_out, Tensor x, Tensor out, Tensor slot, Tensor offsets, Tensor members, str mode) "        \
    "-> Tensor")                                                                                             \
  X(merge_wavg, "(Tensor x, Tensor? size, Tensor slot, Tensor offsets, Tensor members) -> (Tensor, Tensor)") \
  X(merge_wavg_backward,                                                                                     \
    "(Tensor grad_out, Tensor? size, Tensor size_out, Tensor slot, Tensor offsets, Tensor members) "         \
    "-> Tensor")                                                                                             \
  X(unmerge, "(Tensor y, Tensor slot, Tensor offsets, Tensor members) -> Tensor")
