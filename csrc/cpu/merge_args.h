// Internal: the arguments of the merge kernels (merge.cpp, merge_backward.cpp,
// unmerge.cpp), checked once here: the mode, the values and size tensors against the
// plan, and the conversions of the sizes to the compute type.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "plan_check.h"
#include "simd.h"

namespace pitome {
namespace cpu {
namespace detail {

enum class Mode { kSum, kMean, kAmax, kPrune };

inline Mode parse_mode(c10::string_view mode, const char* op) {
  if (mode == "sum") return Mode::kSum;
  if (mode == "mean") return Mode::kMean;
  if (mode == "amax") return Mode::kAmax;
  if (mode == "prune") return Mode::kPrune;
  TORCH_CHECK_VALUE(false, op, ": mode must be 'sum', 'mean', 'amax' or 'prune', got '", std::string(mode), "'");
  return Mode::kSum;
}

// f(std::integral_constant<Mode, md>{}): the row kernels take the mode as a template
// argument, so that each mode's loop is compiled on its own.
template <typename F>
PITOME_INLINE void with_mode(Mode md, const F& f) {
  switch (md) {
    case Mode::kSum: f(std::integral_constant<Mode, Mode::kSum>{}); break;
    case Mode::kMean: f(std::integral_constant<Mode, Mode::kMean>{}); break;
    case Mode::kAmax: f(std::integral_constant<Mode, Mode::kAmax>{}); break;
    case Mode::kPrune: f(std::integral_constant<Mode, Mode::kPrune>{}); break;
  }
}

// t (called `name`): a floating CPU tensor [B, rows, K].
inline void check_values(const char* op, const at::Tensor& t, const char* name, int64_t B, int64_t rows) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor");
  TORCH_CHECK_VALUE(t.dim() == 3 && t.size(0) == B && t.size(1) == rows, op, ": ", name, " must be [", B, ", ", rows,
              ", K], got ", t.sizes());
  const auto st = t.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op, ": ", name,
              " must be float32/float64/float16/bfloat16, got ", st);
}

// check_values, and K features.
inline void check_values(const char* op, const at::Tensor& t, const char* name, int64_t B, int64_t rows, int64_t K) {
  check_values(op, t, name, B, rows);
  TORCH_CHECK_VALUE(t.size(2) == K, op, ": ", name, " must have K = ", K, " features, got ", t.sizes());
}

// The plan of a kernel whose values v (called `name`) are the tokens before the merge,
// [B, T, K]: v checked, then the plan against v's B and T.
inline Plan plan_of_tokens(const char* op, const at::Tensor& v, const char* name, const at::Tensor& slot,
                           const at::Tensor& offsets, const at::Tensor& members) {
  TORCH_CHECK_VALUE(v.dim() == 3, op, ": ", name, " must be [B, T, K], got ", v.sizes());
  check_values(op, v, name, v.size(0), v.size(1));
  return check_plan(op, slot, offsets, members, v.size(0), v.size(1));
}

// The plan of a kernel whose values v (called `name`) are the merged tokens,
// [B, T_out, K]: the plan checked against v's B and slot's T, then v against T_out.
inline Plan plan_of_merged(const char* op, const at::Tensor& v, const char* name, const at::Tensor& slot,
                           const at::Tensor& offsets, const at::Tensor& members) {
  TORCH_CHECK_VALUE(v.dim() == 3, op, ": ", name, " must be [B, T_out, K], got ", v.sizes());
  const int64_t B = v.size(0);
  TORCH_CHECK_VALUE(slot.dim() == 2 && slot.size(0) == B, op, ": slot must be [B, T], got ", slot.sizes());
  const Plan p = check_plan(op, slot, offsets, members, B, slot.size(1));
  check_values(op, v, name, B, p.T_out);
  return p;
}

// The type the kernels compute in for values of type t (simd::compute_t).
inline at::ScalarType compute_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// t in dtype, contiguous: t itself when it already is (no dispatcher call).
inline at::Tensor as_contiguous(const at::Tensor& t, at::ScalarType dtype) {
  return t.scalar_type() == dtype && t.is_contiguous() ? t : t.to(dtype).contiguous();
}

// Token sizes s (called `name`), a floating CPU tensor [B, rows, 1], in the compute type
// ct, contiguous.
inline at::Tensor sizes_in(const char* op, const at::Tensor& s, const char* name, int64_t B, int64_t rows,
                           at::ScalarType ct) {
  TORCH_CHECK_VALUE(s.device().is_cpu(), op, ": ", name, " must be a CPU tensor");
  TORCH_CHECK_VALUE(s.dim() == 3 && s.size(0) == B && s.size(1) == rows && s.size(2) == 1, op, ": ", name, " must be [",
              B, ", ", rows, ", 1], got ", s.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(s.scalar_type()), op, ": ", name, " must be a floating tensor");
  return as_contiguous(s, ct);
}

// The input sizes [B, T, 1] as sizes_in gives them, or an undefined tensor for none (every
// size one).
inline at::Tensor input_sizes(const char* op, const c10::optional<at::Tensor>& size, const Plan& p,
                              at::ScalarType ct) {
  if (!size.has_value() || !size->defined()) return at::Tensor();
  return sizes_in(op, *size, "size", p.B, p.T, ct);
}

}  // namespace detail
}  // namespace cpu
}  // namespace pitome
