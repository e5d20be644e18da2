// The forward merges, merge and merge_wavg, as single gather passes over the CSR plan:
// every output row reads its members in CSR order (head first), so each kernel reads its
// input once, writes its output once, uses no atomics and is bitwise repeatable for any
// number of threads. Accumulation in float (double for float64). Every kernel checks the
// plan as it reads it (plan_check.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <tuple>

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
PITOME_INLINE void merge_rows(const Plan& p, const scalar_t* x, scalar_t* out, int64_t K, int64_t r0, int64_t r1,
                              std::atomic<bool>& bad) {
  using acc_t = acc_type<scalar_t>;
  for_each_group(p, r0, r1, bad, [&](int64_t row, int64_t b, const int32_t* mem, int64_t cnt) PITOME_LAMBDA {
    const scalar_t* xb = x + b * p.T * K;
    scalar_t* o = out + row * K;
    if (kMode == Mode::kPrune || cnt == 1) {
      copy_row(o, xb + mem[0] * K, sizeof(scalar_t) * K);
      return;
    }
    int64_t start = 0;
    if (kMode == Mode::kSum || kMode == Mode::kMean)
      start = weighted_rows_fast<scalar_t>(xb, K, mem, cnt, nullptr,
                                           kMode == Mode::kMean ? acc_t(1) / static_cast<acc_t>(cnt) : acc_t(1), o);
    for (int64_t k0 = start; k0 < K; k0 += kBlock) {
      const int64_t kb = std::min(kBlock, K - k0);
      acc_t acc[kBlock];
      const scalar_t* h = xb + mem[0] * K + k0;
      for (int64_t k = 0; k < kb; ++k) acc[k] = static_cast<acc_t>(h[k]);
      for (int64_t j = 1; j < cnt; ++j) {
        const scalar_t* xr = xb + mem[j] * K + k0;
        if (kMode == Mode::kAmax) {
          for (int64_t k = 0; k < kb; ++k) {
            const acc_t v = static_cast<acc_t>(xr[k]);
            acc[k] = (v > acc[k] || v != v) ? v : acc[k];
          }
        } else {
          for (int64_t k = 0; k < kb; ++k) acc[k] += static_cast<acc_t>(xr[k]);
        }
      }
      if (kMode == Mode::kMean) {
        const acc_t inv = acc_t(1) / static_cast<acc_t>(cnt);
        for (int64_t k = 0; k < kb; ++k) o[k0 + k] = static_cast<scalar_t>(acc[k] * inv);
      } else {
        for (int64_t k = 0; k < kb; ++k) o[k0 + k] = static_cast<scalar_t>(acc[k]);
      }
    }
  });
}

// w: sizes in acc_t [B, T] or nullptr (ones); size_out: acc_t [B, T_out].
template <typename scalar_t>
PITOME_INLINE void wavg_rows(const Plan& p, const scalar_t* x, const acc_type<scalar_t>* w, scalar_t* out,
                             acc_type<scalar_t>* size_out, int64_t K, int64_t r0, int64_t r1,
                             std::atomic<bool>& bad) {
  using acc_t = acc_type<scalar_t>;
  for_each_group(p, r0, r1, bad, [&](int64_t row, int64_t b, const int32_t* mem, int64_t cnt) PITOME_LAMBDA {
    const scalar_t* xb = x + b * p.T * K;
    const acc_t* wb = w ? w + b * p.T : nullptr;
    scalar_t* o = out + row * K;
    acc_t total = wb ? wb[mem[0]] : acc_t(1);
    for (int64_t j = 1; j < cnt; ++j) total += wb ? wb[mem[j]] : acc_t(1);
    size_out[row] = total;
    if (cnt == 1 && std::isnormal(total)) {  // (x * w) / w == x up to rounding: copy x exactly
      copy_row(o, xb + mem[0] * K, sizeof(scalar_t) * K);
      return;
    }
    const acc_t inv = acc_t(1) / total;
    for (int64_t k0 = weighted_rows_fast<scalar_t>(xb, K, mem, cnt, wb, inv, o); k0 < K; k0 += kBlock) {
      const int64_t kb = std::min(kBlock, K - k0);
      acc_t acc[kBlock];
      {
        const scalar_t* h = xb + mem[0] * K + k0;
        const acc_t w0 = wb ? wb[mem[0]] : acc_t(1);
        for (int64_t k = 0; k < kb; ++k) acc[k] = static_cast<acc_t>(h[k]) * w0;
      }
      for (int64_t j = 1; j < cnt; ++j) {
        const scalar_t* xr = xb + mem[j] * K + k0;
        const acc_t wj = wb ? wb[mem[j]] : acc_t(1);
        for (int64_t k = 0; k < kb; ++k) acc[k] += static_cast<acc_t>(xr[k]) * wj;
      }
      for (int64_t k = 0; k < kb; ++k) o[k0 + k] = static_cast<scalar_t>(acc[k] * inv);
    }
  });
}

}  // namespace

at::Tensor merge(const at::Tensor& x, const at::Tensor& slot, const at::Tensor& offsets, const at::Tensor& members,
                 c10::string_view mode) {
  const char* op = "pitome cpu_merge";
  const Mode md = parse_mode(mode, op);
  const Plan p = plan_of_tokens(op, x, "x", slot, offsets, members);
  const int64_t K = x.size(2);
  at::Tensor out = empty_output({p.B, p.T_out, K}, x.scalar_type());
  if (p.B * p.T_out == 0) return out;
  const at::Tensor xc = x.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pitome_cpu_merge", [&] {
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* outp = out.data_ptr<scalar_t>();
    with_mode(md, [&](auto m) {
      for_rows(op, p, K, [&](int64_t r0, int64_t r1, std::atomic<bool>& bad) PITOME_LAMBDA {
        merge_rows<scalar_t, decltype(m)::value>(p, xp, outp, K, r0, r1, bad);
      });
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> merge_wavg(const at::Tensor& x, const c10::optional<at::Tensor>& size,
                                              const at::Tensor& slot, const at::Tensor& offsets,
                                              const at::Tensor& members) {
  const char* op = "pitome cpu_merge_wavg";
  const Plan p = plan_of_tokens(op, x, "x", slot, offsets, members);
  const int64_t K = x.size(2);
  const at::ScalarType ct = compute_type(x.scalar_type());
  const at::Tensor w = input_sizes(op, size, p, ct);
  const at::ScalarType size_dtype = w.defined() ? size->scalar_type() : x.scalar_type();
  at::Tensor out = empty_output({p.B, p.T_out, K}, x.scalar_type());
  at::Tensor size_out = empty_cpu({p.B, p.T_out, 1}, ct);
  if (p.B * p.T_out > 0) {
    const at::Tensor xc = x.contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pitome_cpu_merge_wavg", [&] {
      using acc_t = acc_type<scalar_t>;
      const scalar_t* xp = xc.const_data_ptr<scalar_t>();
      const acc_t* wp = w.defined() ? w.const_data_ptr<acc_t>() : nullptr;
      scalar_t* outp = out.data_ptr<scalar_t>();
      acc_t* sp = size_out.data_ptr<acc_t>();
      for_rows(op, p, K, [&](int64_t r0, int64_t r1, std::atomic<bool>& bad) PITOME_LAMBDA {
        wavg_rows<scalar_t>(p, xp, wp, outp, sp, K, r0, r1, bad);
      });
    });
  }
  if (size_out.scalar_type() != size_dtype) size_out = size_out.to(size_dtype);
  return std::make_tuple(out, size_out);
}

}  // namespace cpu
}  // namespace pitome
