// The backward passes of merge and merge_wavg, by group: every output row scatters its
// gradient to its members in CSR order, so each member row of grad_x is written exactly
// once, with no atomics, bitwise the same for any number of threads. Accumulation in
// float (double for float64). Every kernel checks the plan as it reads it
// (plan_check.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

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

template <typename scalar_t, Mode kMode>
PITOME_INLINE void merge_backward_rows(const Plan& p, const scalar_t* gout, const scalar_t* x, const scalar_t* out,
                                       scalar_t* gx, int64_t K, int64_t r0, int64_t r1, std::atomic<bool>& bad) {
  using acc_t = acc_type<scalar_t>;
  for_each_group(p, r0, r1, bad, [&](int64_t row, int64_t b, const int32_t* mem, int64_t cnt) PITOME_LAMBDA {
    const scalar_t* go = gout + row * K;
    scalar_t* gxb = gx + b * p.T * K;
    if (kMode == Mode::kSum || (kMode == Mode::kMean && cnt == 1)) {
      for (int64_t j = 0; j < cnt; ++j) copy_row(gxb + mem[j] * K, go, sizeof(scalar_t) * K);
    } else if (kMode == Mode::kPrune) {
      copy_row(gxb + mem[0] * K, go, sizeof(scalar_t) * K);
      for (int64_t j = 1; j < cnt; ++j) std::memset(gxb + mem[j] * K, 0, sizeof(scalar_t) * K);
    } else if (kMode == Mode::kMean) {
      const acc_t inv = acc_t(1) / static_cast<acc_t>(cnt);
      for (int64_t j = 0; j < cnt; ++j) {
        scalar_t* d = gxb + mem[j] * K;
        for (int64_t k = 0; k < K; ++k) d[k] = static_cast<scalar_t>(static_cast<acc_t>(go[k]) * inv);
      }
    } else {  // amax: share the gradient evenly among the members equal to the max
      const scalar_t* xb = x + b * p.T * K;
      const scalar_t* ob = out + row * K;
      for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
        const int64_t kb = std::min(kBlock, K - k0);
        acc_t ties[kBlock];
        for (int64_t k = 0; k < kb; ++k) ties[k] = acc_t(0);
        for (int64_t j = 0; j < cnt; ++j) {
          const scalar_t* xr = xb + mem[j] * K + k0;
          for (int64_t k = 0; k < kb; ++k)
            ties[k] += (static_cast<acc_t>(xr[k]) == static_cast<acc_t>(ob[k0 + k])) ? acc_t(1) : acc_t(0);
        }
        for (int64_t j = 0; j < cnt; ++j) {
          const scalar_t* xr = xb + mem[j] * K + k0;
          scalar_t* d = gxb + mem[j] * K + k0;
          for (int64_t k = 0; k < kb; ++k) {
            const acc_t win =
                (static_cast<acc_t>(xr[k]) == static_cast<acc_t>(ob[k0 + k])) ? acc_t(1) : acc_t(0);
            d[k] = static_cast<scalar_t>(static_cast<acc_t>(go[k0 + k]) * win / ties[k]);
          }
        }
      }
    }
  });
}

// dL/dx_i = size_i / size'_g * dL/dx'_g. w: sizes in acc_t [B, T] or nullptr (ones);
// wout: size' in acc_t [B, T_out].
template <typename scalar_t>
PITOME_INLINE void wavg_backward_rows(const Plan& p, const scalar_t* gout, const acc_type<scalar_t>* w,
                                      const acc_type<scalar_t>* wout, scalar_t* gx, int64_t K, int64_t r0,
                                      int64_t r1, std::atomic<bool>& bad) {
  using acc_t = acc_type<scalar_t>;
  for_each_group(p, r0, r1, bad, [&](int64_t row, int64_t b, const int32_t* mem, int64_t cnt) PITOME_LAMBDA {
    const scalar_t* go = gout + row * K;
    scalar_t* gxb = gx + b * p.T * K;
    const acc_t inv = acc_t(1) / wout[row];
    for (int64_t j = 0; j < cnt; ++j) {
      const acc_t wt = w ? inv * w[b * p.T + mem[j]] : inv;
      scalar_t* d = gxb + mem[j] * K;
      for (int64_t k = 0; k < K; ++k) d[k] = static_cast<scalar_t>(static_cast<acc_t>(go[k]) * wt);
    }
  });
}

}  // namespace

at::Tensor merge_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& out,
                          const at::Tensor& slot, const at::Tensor& offsets, const at::Tensor& members,
                          c10::string_view mode) {
  const char* op = "pitome cpu_merge_backward";
  const Mode md = parse_mode(mode, op);
  const bool amax = md == Mode::kAmax;
  const Plan p = plan_of_tokens(op, x, "x", slot, offsets, members);
  const int64_t K = x.size(2);
  check_values(op, grad_out, "grad_out", p.B, p.T_out, K);
  if (amax) check_values(op, out, "out", p.B, p.T_out, K);
  if (grad_out.scalar_type() != x.scalar_type() || (amax && out.scalar_type() != x.scalar_type())) {
    // mixed dtypes: compute in a common wide type, return in x's dtype
    auto wt = at::promote_types(at::promote_types(grad_out.scalar_type(), x.scalar_type()), at::kFloat);
    if (amax) wt = at::promote_types(wt, out.scalar_type());
    // x and out are only read by amax; otherwise a zero-strided stand-in of the right shape
    const at::Tensor xw = amax ? x.to(wt) : at::zeros({1, 1, 1}, x.options().dtype(wt)).expand({p.B, p.T, K});
    return merge_backward(grad_out.to(wt), xw, amax ? out.to(wt) : out, slot, offsets, members, mode)
        .to(x.scalar_type());
  }
  at::Tensor gx = empty_output({p.B, p.T, K}, grad_out.scalar_type());
  if (p.B * p.T_out == 0) return gx;
  if (K == 0) {  // nothing to compute, but the plan is still checked
    check_groups(op, p);
    return gx;
  }
  const at::Tensor gc = grad_out.contiguous();
  const at::Tensor xc = amax ? x.contiguous() : x;
  const at::Tensor oc = amax ? out.contiguous() : out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pitome_cpu_merge_backward", [&] {
    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
    const scalar_t* xp = amax ? xc.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* opp = amax ? oc.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* gxp = gx.data_ptr<scalar_t>();
    for_rows(op, p, K, [&](int64_t r0, int64_t r1, std::atomic<bool>& bad) PITOME_LAMBDA {
      with_mode(md, [&](auto m) PITOME_LAMBDA {
        merge_backward_rows<scalar_t, decltype(m)::value>(p, gp, xp, opp, gxp, K, r0, r1, bad);
      });
    });
  });
  return gx;
}

at::Tensor merge_wavg_backward(const at::Tensor& grad_out, const c10::optional<at::Tensor>& size,
                               const at::Tensor& size_out, const at::Tensor& slot, const at::Tensor& offsets,
                               const at::Tensor& members) {
  const char* op = "pitome cpu_merge_wavg_backward";
  const Plan p = plan_of_merged(op, grad_out, "grad_out", slot, offsets, members);
  const int64_t K = grad_out.size(2);
  const at::ScalarType ct = compute_type(grad_out.scalar_type());
  const at::Tensor wout = sizes_in(op, size_out, "size_out", p.B, p.T_out, ct);
  const at::Tensor w = input_sizes(op, size, p, ct);
  at::Tensor gx = empty_output({p.B, p.T, K}, grad_out.scalar_type());
  if (p.B * p.T_out == 0) return gx;
  const at::Tensor gc = grad_out.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gc.scalar_type(), "pitome_cpu_merge_wavg_backward", [&] {
    using acc_t = acc_type<scalar_t>;
    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
    const acc_t* wp = w.defined() ? w.const_data_ptr<acc_t>() : nullptr;
    const acc_t* wop = wout.const_data_ptr<acc_t>();
    scalar_t* gxp = gx.data_ptr<scalar_t>();
    for_rows(op, p, K, [&](int64_t r0, int64_t r1, std::atomic<bool>& bad) PITOME_LAMBDA {
      wavg_backward_rows<scalar_t>(p, gp, wp, wop, gxp, K, r0, r1, bad);
    });
  });
  return gx;
}

}  // namespace cpu
}  // namespace pitome
