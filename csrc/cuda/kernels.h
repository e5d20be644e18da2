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

#include "../op_declarations.inc"

// Unit rows u = m / max(||m||, 1e-12) ([B, N, C], float32, or float64 for float64 input)
// and the similarity kernels on them (similarity.cu), for plan.cpp.
at::Tensor normalize(const at::Tensor& metric);
at::Tensor energy_from_unit(const at::Tensor& u, double margin, bool gauss);
// best [B, NA] (u's dtype), dst [B, NA] (int64, position in b): for every a, the first
// maximum over b of <u_a, u_b>; row 0 / column 0 count as -inf when masked.
std::tuple<at::Tensor, at::Tensor> match(const at::Tensor& u, const at::Tensor& a, const at::Tensor& b,
                                         bool mask_row0, bool mask_col0);

// ToMe's r for `tokens` tokens: at most half of those that may merge (plan.cpp).
int64_t tome_r(int64_t r, int64_t tokens, bool class_token, bool distill_token);

// The single-launch plan (fused_plan.cu) of every variant, for up to kFusedMaxT tokens,
// 1 <= r (after ToMe's clamp), 2r <= T' and non-float64 metrics (fused_plan_applies).
constexpr int64_t kFusedMaxT = 1024;
bool fused_plan_applies(const at::Tensor& metric, int64_t r, c10::string_view variant, bool class_token,
                        bool distill_token);
std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_plan(const at::Tensor& metric, int64_t r,
                                                          c10::string_view variant, double margin,
                                                          bool class_token, bool distill_token);
// The plan in steps (several launches), for every case; plan() takes it where the fused one
// does not apply.
std::tuple<at::Tensor, at::Tensor, at::Tensor> multi_launch_plan(const at::Tensor& metric, int64_t r,
                                                                 c10::string_view variant, double margin,
                                                                 bool class_token, bool distill_token);

}  // namespace cuda
}  // namespace pitome
