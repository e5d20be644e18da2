// unmerge: every input token receives the row of its output slot, a copy per token row
// (no atomics, bitwise the same for any number of threads). The whole plan is checked
// first, as the merges check it: unmerge reads only the slots, but an inconsistent plan is
// refused the same way by every op.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

#include "kernels.h"
#include "merge_args.h"
#include "output.h"
#include "plan_check.h"
#include "row_scheduler.h"
#include "rows.h"

namespace pitome {
namespace cpu {

using namespace detail;

namespace {

template <typename scalar_t>
PITOME_INLINE void unmerge_rows(const Plan& p, const scalar_t* y, scalar_t* out, int64_t K, int64_t r0, int64_t r1,
                                std::atomic<bool>& bad) {
  if (r0 >= r1) return;
  int64_t b = r0 / p.T, t = r0 % p.T;
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t s = p.slot[row];
    if (s < 0 || s >= p.T_out)
      bad.store(true, std::memory_order_relaxed);
    else
      copy_row(out + row * K, y + (b * p.T_out + s) * K, sizeof(scalar_t) * K);
    if (++t == p.T) {
      t = 0;
      ++b;
    }
  }
}

}  // namespace

at::Tensor unmerge(const at::Tensor& y, const at::Tensor& slot, const at::Tensor& offsets, const at::Tensor& members) {
  const char* op = "pitome cpu_unmerge";
  const Plan p = plan_of_merged(op, y, "y", slot, offsets, members);
  const int64_t K = y.size(2);
  check_groups(op, p);
  at::Tensor out = empty_output({p.B, p.T, K}, y.scalar_type());
  if (p.B * p.T == 0) return out;
  const at::Tensor yc = y.contiguous();
  std::atomic<bool> bad{false};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "pitome_cpu_unmerge", [&] {
    const scalar_t* yp = yc.const_data_ptr<scalar_t>();
    scalar_t* outp = out.data_ptr<scalar_t>();
    at::parallel_for(0, p.B * p.T, row_grain(K), [&](int64_t r0, int64_t r1) {
      unmerge_rows<scalar_t>(p, yp, outp, K, r0, r1, bad);
    });
  });
  if (bad.load()) raise_bad_plan(op);
  return out;
}

}  // namespace cpu
}  // namespace pitome
