// The ops of every C++ backend, each once: X(name, schema), the schema without the op's
// name. Each backend registers its kernel pitome::<backend>::name with the dispatcher as
// torch.ops.pitome.<backend>_<name> (cpu/register.cpp, cuda/register.cpp).
#pragma once

#define PITOME_OPS(X)                                                                                        \
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
