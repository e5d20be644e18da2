// Internal: the checks of a CSR plan (kernels.h) by the kernels that read it. check_plan
// checks the tensors (dtypes, device, shapes) before a kernel starts; group()
// checks each group as a kernel reads it (offsets monotone from 0 to T, members in range,
// slot[member] == its group, sources strictly ascending and distinct from the head).
// Together these make members a permutation of the tokens, so that a bad plan raises an
// error instead of reading or writing out of bounds.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdint>

#include "simd.h"

namespace pitome {
namespace cpu {
namespace detail {

struct Plan {
  const int32_t* slot;
  const int32_t* offsets;
  const int32_t* members;
  int64_t B, T, T_out;
  at::Tensor slot_data, offsets_data, members_data;  // contiguous views or copies the pointers read
};

inline Plan check_plan(const char* op, const at::Tensor& slot, const at::Tensor& offsets, const at::Tensor& members,
                       int64_t B, int64_t T) {
  TORCH_CHECK_TYPE(slot.scalar_type() == at::kInt && offsets.scalar_type() == at::kInt &&
                  members.scalar_type() == at::kInt,
              op, ": slot, offsets and members must be int32");
  TORCH_CHECK_VALUE(slot.device().is_cpu() && offsets.device().is_cpu() && members.device().is_cpu(), op,
              ": plan tensors must be CPU tensors");
  TORCH_CHECK_VALUE(slot.dim() == 2 && slot.size(0) == B && slot.size(1) == T, op, ": slot must be [B, T] = [", B, ", ",
              T, "], got ", slot.sizes());
  TORCH_CHECK_VALUE(members.dim() == 2 && members.size(0) == B && members.size(1) == T, op,
              ": members must be [B, T] = [", B, ", ", T, "], got ", members.sizes());
  TORCH_CHECK_VALUE(offsets.dim() == 2 && offsets.size(0) == B && offsets.size(1) >= 2 && offsets.size(1) <= T + 1, op,
              ": offsets must be [B, T_out + 1] with 1 <= T_out <= T, got ", offsets.sizes());
  at::Tensor s = slot.contiguous(), o = offsets.contiguous(), m = members.contiguous();
  const int32_t *sp = s.const_data_ptr<int32_t>(), *op_ = o.const_data_ptr<int32_t>(), *mp = m.const_data_ptr<int32_t>();
  return Plan{sp, op_, mp, B, T, offsets.size(1) - 1, std::move(s), std::move(o), std::move(m)};
}

// Members of group g of batch element b (validated); nullptr when the plan is invalid.
PITOME_INLINE const int32_t* group(const Plan& p, int64_t b, int64_t g, int64_t& count) {
  const int32_t* off = p.offsets + b * (p.T_out + 1);
  const int64_t lo = off[g], hi = off[g + 1];
  if (g == 0 && lo != 0) return nullptr;
  if (g == p.T_out - 1 && hi != p.T) return nullptr;
  if (lo < 0 || hi <= lo || hi > p.T) return nullptr;
  const int32_t* mem = p.members + b * p.T + lo;
  const int32_t* slot = p.slot + b * p.T;
  count = hi - lo;
  int64_t prev = -1;
  for (int64_t j = 0; j < count; ++j) {
    const int64_t t = mem[j];
    if (t < 0 || t >= p.T || slot[t] != g) return nullptr;
    if (j > 0) {
      if (t == mem[0] || t <= prev) return nullptr;
      prev = t;
    }
  }
  return mem;
}

// Calls body(row, b, members, count) for every output row in [r0, r1) whose group is
// valid (see group()); an invalid one sets bad instead.
template <typename F>
PITOME_INLINE void for_each_group(const Plan& p, int64_t r0, int64_t r1, std::atomic<bool>& bad, const F& body) {
  if (r0 >= r1) return;
  int64_t b = r0 / p.T_out, g = r0 % p.T_out;  // then stepped: a division per row costs more than the row's checks
  for (int64_t row = r0; row < r1; ++row) {
    int64_t cnt = 0;
    const int32_t* mem = group(p, b, g, cnt);
    if (mem)
      body(row, b, mem, cnt);
    else
      bad.store(true, std::memory_order_relaxed);
    if (++g == p.T_out) {
      g = 0;
      ++b;
    }
  }
}

inline void raise_bad_plan(const char* op) {
  TORCH_CHECK_VALUE(false, op, ": invalid plan (offsets/members/slot are inconsistent or out of range)");
}

// Raises unless every group of the plan is valid: a serial pass, for the calls that do not
// visit the plan group by group.
inline void check_groups(const char* op, const Plan& p) {
  std::atomic<bool> bad{false};
  for_each_group(p, 0, p.B * p.T_out, bad, [](int64_t, int64_t, const int32_t*, int64_t) {});
  if (bad.load()) raise_bad_plan(op);
}

}  // namespace detail
}  // namespace cpu
}  // namespace pitome
