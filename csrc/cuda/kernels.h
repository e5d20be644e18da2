// CUDA kernels of pitome_kernels: the functions of cpu/kernels.h for CUDA tensors, with the
// semantics of pitome_kernels/reference.py (see SPEC.md). They run on the current stream
// and never synchronise with the host (every output shape follows from T and r). The
// Python op layer checks the arguments first; these check devices and dtypes only.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <tuple>

namespace pitome {
namespace cuda {

at::Tensor energy(const at::Tensor& metric, double margin, c10::string_view kernel, bool class_token);

std::tuple<at::Tensor, at::Tensor, at::Tensor> plan(const at::Tensor& metric, int64_t r,
                                                    c10::string_view variant, double margin,
                                                    bool class_token, bool distill_token);

at::Tensor merge(const at::Tensor& x, const at::Tensor& slot, const at::Tensor& offsets,
                 const at::Tensor& members, c10::string_view mode);

at::Tensor merge_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& out,
                          const at::Tensor& slot, const at::Tensor& offsets,
                          const at::Tensor& members, c10::string_view mode);

std::tuple<at::Tensor, at::Tensor> merge_wavg(const at::Tensor& x, const c10::optional<at::Tensor>& size,
                                              const at::Tensor& slot, const at::Tensor& offsets,
                                              const at::Tensor& members);

at::Tensor merge_wavg_backward(const at::Tensor& grad_out, const c10::optional<at::Tensor>& size,
                               const at::Tensor& size_out, const at::Tensor& slot,
                               const at::Tensor& offsets, const at::Tensor& members);

at::Tensor unmerge(const at::Tensor& y, const at::Tensor& slot, const at::Tensor& offsets,
                   const at::Tensor& members);

// Unit rows u = m / max(||m||, 1e-12) ([B, N, C], float32, or float64 for float64 input)
// and the similarity kernels on them (similarity.cu), for plan.cpp.
at::Tensor normalize(const at::Tensor& metric);
at::Tensor energy_from_unit(const at::Tensor& u, double margin, bool gauss);
// best [B, NA] (u's dtype), dst [B, NA] (int64, position in b): for every a, the first
// maximum over b of <u_a, u_b>; row 0 / column 0 count as -inf when masked.
std::tuple<at::Tensor, at::Tensor> match(const at::Tensor& u, const at::Tensor& a, const at::Tensor& b,
                                         bool mask_row0, bool mask_col0);

}  // namespace cuda
}  // namespace pitome
