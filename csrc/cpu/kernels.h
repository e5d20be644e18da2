// C++ CPU kernels of pitome_kernels. Each function computes exactly what the function of
// the same name in pitome_kernels/reference.py computes (see SPEC.md). Each checks every
// argument it is given (shapes, dtypes, devices, values such as r and margin, and the
// plan's contents) and raises c10::Error: eager Python calls run the kernel first and the
// Python checks only to explain a failure with an error that names the argument.
// ops_list.h lists the ops with their schemas, for the dispatcher and the Python module.
//
// Plan tensors (int32): slot[B, T] output position of each input token;
// offsets[B, T_out + 1] and members[B, T]: members[offsets[g] : offsets[g + 1]] are the
// input tokens of output g, the group's head first, then its sources in ascending index.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <string>
#include <tuple>

namespace pitome {
namespace cpu {

// float32 [B, T'] energy of every mergeable token (kernel "elu" or "gauss").
at::Tensor energy(const at::Tensor& metric, double margin, c10::string_view kernel, bool class_token);

// (slot, offsets, members) for variant "pitome", "pitome_text", "pitome_bsm" or "tome".
std::tuple<at::Tensor, at::Tensor, at::Tensor> plan(const at::Tensor& metric, int64_t r,
                                                    c10::string_view variant, double margin,
                                                    bool class_token, bool distill_token);

// [B, T_out, K] reduce of every group; mode "sum", "mean", "amax" or "prune".
at::Tensor merge(const at::Tensor& x, const at::Tensor& slot, const at::Tensor& offsets,
                 const at::Tensor& members, c10::string_view mode);

// [B, T, K] gradient of merge with respect to x.
at::Tensor merge_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& out,
                          const at::Tensor& slot, const at::Tensor& offsets,
                          const at::Tensor& members, c10::string_view mode);

// (x', size'): size-weighted average of every group; size [B, T, 1] or none (ones).
std::tuple<at::Tensor, at::Tensor> merge_wavg(const at::Tensor& x, const c10::optional<at::Tensor>& size,
                                              const at::Tensor& slot, const at::Tensor& offsets,
                                              const at::Tensor& members);

// [B, T, K] gradient of merge_wavg's x' with respect to x.
at::Tensor merge_wavg_backward(const at::Tensor& grad_out, const c10::optional<at::Tensor>& size,
                               const at::Tensor& size_out, const at::Tensor& slot,
                               const at::Tensor& offsets, const at::Tensor& members);

// [B, T, K]: every input token receives the row of its output slot.
at::Tensor unmerge(const at::Tensor& y, const at::Tensor& slot, const at::Tensor& offsets,
                   const at::Tensor& members);

// The ISA clone the vector kernels run: "avx512", "avx2" or "default" (the baseline ISA).
std::string cpu_isa();

// The best clone this CPU supports (PITOME_CPU_ISA and set_cpu_isa may run a lower one).
std::string supported_cpu_isa();

// Runs the kernels in clone `name` from now on, or in the best one this CPU supports below
// it; returns the clone now in use. Set it between kernel calls. Raises for other names.
std::string set_cpu_isa(c10::string_view name);

}  // namespace cpu
}  // namespace pitome
