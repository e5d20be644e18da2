// Merge, merge_wavg, their backward passes and unmerge as single gather passes over the
// CSR plan: every output row reads its members in CSR order (head first), so each
// kernel reads its input once, writes its output once, uses no atomics and is bitwise
// repeatable for any number of threads. Accumulation in float (double for float64).
//
// Every kernel validates the plan as it reads it (offsets monotone from 0 to T, members
// in range, slot[member] == its group, sources strictly ascending and distinct from the
// head); together these make members a permutation of the tokens, so a bad plan raises
// an error instead of reading or writing out of bounds.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "output.h"
#include "similarity.h"

namespace pitome {
namespace cpu {

namespace {

constexpr int64_t kBlock = 512;  // feature block accumulated on the stack

template <typename scalar_t>
using acc_type = simd::compute_t<scalar_t>;

struct Plan {
  const int32_t* slot;
  const int32_t* offsets;
  const int32_t* members;
  int64_t B, T, T_out;
};

Plan check_plan(const char* op, const at::Tensor& slot, const at::Tensor& offsets, const at::Tensor& members,
                int64_t B, int64_t T) {
  TORCH_CHECK(slot.scalar_type() == at::kInt && offsets.scalar_type() == at::kInt &&
                  members.scalar_type() == at::kInt,
              op, ": slot, offsets and members must be int32");
  TORCH_CHECK(slot.device().is_cpu() && offsets.device().is_cpu() && members.device().is_cpu(), op,
              ": plan tensors must be CPU tensors");
  TORCH_CHECK(slot.dim() == 2 && slot.size(0) == B && slot.size(1) == T, op, ": slot must be [B, T] = [", B, ", ",
              T, "], got ", slot.sizes());
  TORCH_CHECK(members.dim() == 2 && members.size(0) == B && members.size(1) == T, op,
              ": members must be [B, T] = [", B, ", ", T, "], got ", members.sizes());
  TORCH_CHECK(offsets.dim() == 2 && offsets.size(0) == B && offsets.size(1) >= 2 && offsets.size(1) <= T + 1, op,
              ": offsets must be [B, T_out + 1] with 1 <= T_out <= T, got ", offsets.sizes());
  TORCH_CHECK(slot.is_contiguous() && offsets.is_contiguous() && members.is_contiguous(), op,
              ": plan tensors must be contiguous");
  return Plan{slot.const_data_ptr<int32_t>(), offsets.const_data_ptr<int32_t>(), members.const_data_ptr<int32_t>(),
              B, T, offsets.size(1) - 1};
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

enum class Mode { kSum, kMean, kAmax, kPrune };

Mode parse_mode(c10::string_view mode, const char* op) {
  if (mode == "sum") return Mode::kSum;
  if (mode == "mean") return Mode::kMean;
  if (mode == "amax") return Mode::kAmax;
  if (mode == "prune") return Mode::kPrune;
  TORCH_CHECK(false, op, ": mode must be 'sum', 'mean', 'amax' or 'prune', got '", std::string(mode), "'");
  return Mode::kSum;
}

void check_values(const char* op, const at::Tensor& t, const char* name, int64_t B, int64_t rows) {
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor");
  TORCH_CHECK(t.dim() == 3 && t.size(0) == B && t.size(1) == rows, op, ": ", name, " must be [", B, ", ", rows,
              ", K], got ", t.sizes());
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op, ": ", name,
              " must be float32/float64/float16/bfloat16, got ", st);
}

at::Tensor check_size(const char* op, const at::Tensor& s, const char* name, int64_t B, int64_t rows) {
  TORCH_CHECK(s.device().is_cpu(), op, ": ", name, " must be a CPU tensor");
  TORCH_CHECK(s.dim() == 3 && s.size(0) == B && s.size(1) == rows && s.size(2) == 1, op, ": ", name, " must be [",
              B, ", ", rows, ", 1], got ", s.sizes());
  TORCH_CHECK(at::isFloatingType(s.scalar_type()), op, ": ", name, " must be a floating tensor");
  return s;
}

int64_t row_grain(int64_t K) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)); }

// The unclaimed rows [front, back) of one thread's share, packed into one atomic word
// (front in the low half): its owner claims chunks from the front, a thread that has
// finished its own share claims them from the back.
class alignas(64) Share {
 public:
  void reset(int64_t lo, int64_t hi) { state_.store(pack(lo, hi), std::memory_order_relaxed); }

  // Claims about a quarter of what is left (at least min_rows) from the front.
  bool claim_front(int64_t min_rows, int64_t& r0, int64_t& r1) {
    uint64_t s = state_.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t lo = front(s), hi = back(s);
      if (lo >= hi) return false;
      const int64_t mid = std::min(hi, lo + std::max(min_rows, (hi - lo) / 4));
      if (state_.compare_exchange_weak(s, pack(mid, hi), std::memory_order_relaxed)) {
        r0 = lo;
        r1 = mid;
        return true;
      }
    }
  }

  // Claims half of what is left (at least min_rows) from the back.
  bool claim_back(int64_t min_rows, int64_t& r0, int64_t& r1) {
    uint64_t s = state_.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t lo = front(s), hi = back(s);
      if (lo >= hi) return false;
      const int64_t mid = std::max(lo, hi - std::max(min_rows, (hi - lo) / 2));
      if (state_.compare_exchange_weak(s, pack(lo, mid), std::memory_order_relaxed)) {
        r0 = mid;
        r1 = hi;
        return true;
      }
    }
  }

 private:
  static uint64_t pack(int64_t lo, int64_t hi) { return uint64_t(lo) | (uint64_t(hi) << 32); }
  static int64_t front(uint64_t s) { return int64_t(s & 0xffffffffu); }
  static int64_t back(uint64_t s) { return int64_t(s >> 32); }
  std::atomic<uint64_t> state_{0};
};

// Runs f(r0, r1) over the output rows [0, B * T_out) of a plan, each row exactly once.
// Every thread gets a contiguous share of about equal cost, a row costing 1 + its member
// count (rows written and read). Equal row counts would not do: every batch element's
// merged groups sit at its end, so one thread would get all the arithmetic. The shares
// depend only on the offsets (made monotone here, so that each row is visited once even
// for a plan that group() will reject) and the thread count, so from call to call a
// thread writes the same output rows and reads the same rows of x, which stay in its
// core's cache. A thread that finishes its share early takes chunks from the end of
// another's: on a virtual machine one vCPU is at times slower than the other for
// seconds, and a static split then waits for it (up to 1.5x a clone of x at batch 1).
// Every row's result is the same whoever computes it.
template <typename F>
void parallel_rows(const Plan& p, int64_t K, const F& f) {
  const int64_t rows = p.B * p.T_out;
  const int64_t threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  const int64_t parts = std::min(threads, (rows + row_grain(K) - 1) / row_grain(K));
  if (parts <= 1 || rows > INT32_MAX) {
    f(0, rows);
    return;
  }
  const int64_t per_batch = p.T + p.T_out;  // sum over one batch element of 1 + count
  auto cost_before = [&](int64_t row) -> int64_t {
    const int64_t b = row / p.T_out, g = row % p.T_out;
    return b * per_batch + p.offsets[b * (p.T_out + 1) + g] + g;
  };
  std::vector<Share> shares(parts);
  int64_t lo = 0;
  for (int64_t t = 0; t < parts; ++t) {
    int64_t hi = rows;
    if (t + 1 < parts) {
      const int64_t target = p.B * per_batch * (t + 1) / parts;
      int64_t a = lo, z = rows;  // first row whose cost_before reaches target
      while (a < z) {
        const int64_t mid = a + (z - a) / 2;
        if (cost_before(mid) < target)
          a = mid + 1;
        else
          z = mid;
      }
      hi = a;
    }
    shares[t].reset(lo, hi);
    lo = hi;
  }
  const int64_t min_rows = std::max<int64_t>(1, 4096 / std::max<int64_t>(K, 1));
  at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
    int64_t r0, r1;
    for (int64_t t = t0; t < t1; ++t) {
      while (shares[t].claim_front(min_rows, r0, r1)) f(r0, r1);
      for (int64_t d = 1; d < parts; ++d)
        while (shares[(t + d) % parts].claim_back(min_rows, r0, r1)) f(r0, r1);
    }
  });
}

void raise_bad_plan(const char* op) {
  TORCH_CHECK(false, op, ": invalid plan (offsets/members/slot are inconsistent or out of range)");
}

// One row copied, and a float32 group's weighted sum, by the row kernels of the CPU's ISA
// clone (row_kernels.h).
PITOME_INLINE void copy_row(void* dst, const void* src, int64_t bytes) {
  PITOME_DISPATCH(K::copy_bytes(dst, src, bytes));
}

// Features of a group done by the vector path (float32 only; 0 for other types).
template <typename scalar_t>
PITOME_INLINE int64_t weighted_rows_fast(const scalar_t* xb, int64_t K, const int32_t* mem, int64_t cnt,
                                         const acc_type<scalar_t>* w, acc_type<scalar_t> inv, scalar_t* o) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    const int64_t features = K;  // PITOME_DISPATCH's namespace alias K hides the parameter
    int64_t done = 0;
    PITOME_DISPATCH(done = K::weighted_rows(xb, features, mem, cnt, w, inv, o));
    return done;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// forward: merge

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

template <typename scalar_t, Mode kMode>
void merge_impl(const Plan& p, const scalar_t* x, scalar_t* out, int64_t K, std::atomic<bool>& bad) {
  parallel_rows(p, K, [&](int64_t r0, int64_t r1) {
    simd::dispatch([&]() PITOME_LAMBDA { merge_rows<scalar_t, kMode>(p, x, out, K, r0, r1, bad); });
  });
}

// ---------------------------------------------------------------------------------------
// forward: merge_wavg. w: sizes in acc_t [B, T] or nullptr (ones); size_out: acc_t [B, T_out].

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

// ---------------------------------------------------------------------------------------
// backward of merge, by group: every member row of grad_x is written exactly once.

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

// backward of merge_wavg: dL/dx_i = size_i / size'_g * dL/dx'_g
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

at::ScalarType compute_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// t in dtype, contiguous: t itself when it already is (no dispatcher call).
at::Tensor as_contiguous(const at::Tensor& t, at::ScalarType dtype) {
  return t.scalar_type() == dtype && t.is_contiguous() ? t : t.to(dtype).contiguous();
}

}  // namespace

at::Tensor merge(const at::Tensor& x, const at::Tensor& slot, const at::Tensor& offsets, const at::Tensor& members,
                 c10::string_view mode) {
  const char* op = "pitome cpu_merge";
  const Mode md = parse_mode(mode, op);
  TORCH_CHECK(x.dim() == 3, op, ": x must be [B, T, K], got ", x.sizes());
  check_values(op, x, "x", x.size(0), x.size(1));
  const int64_t B = x.size(0), T = x.size(1), K = x.size(2);
  const Plan p = check_plan(op, slot, offsets, members, B, T);
  at::Tensor out = detail::empty_output({B, p.T_out, K}, x.scalar_type());
  if (B * p.T_out == 0) return out;
  const at::Tensor xc = x.contiguous();
  std::atomic<bool> bad{false};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pitome_cpu_merge", [&] {
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* op_ = out.data_ptr<scalar_t>();
    switch (md) {
      case Mode::kSum: merge_impl<scalar_t, Mode::kSum>(p, xp, op_, K, bad); break;
      case Mode::kMean: merge_impl<scalar_t, Mode::kMean>(p, xp, op_, K, bad); break;
      case Mode::kAmax: merge_impl<scalar_t, Mode::kAmax>(p, xp, op_, K, bad); break;
      case Mode::kPrune: merge_impl<scalar_t, Mode::kPrune>(p, xp, op_, K, bad); break;
    }
  });
  if (bad.load()) raise_bad_plan(op);
  return out;
}

at::Tensor merge_backward(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& out,
                          const at::Tensor& slot, const at::Tensor& offsets, const at::Tensor& members,
                          c10::string_view mode) {
  const char* op = "pitome cpu_merge_backward";
  const Mode md = parse_mode(mode, op);
  TORCH_CHECK(x.dim() == 3, op, ": x must be [B, T, K], got ", x.sizes());
  check_values(op, x, "x", x.size(0), x.size(1));
  const int64_t B = x.size(0), T = x.size(1), K = x.size(2);
  const Plan p = check_plan(op, slot, offsets, members, B, T);
  check_values(op, grad_out, "grad_out", B, p.T_out);
  TORCH_CHECK(grad_out.size(2) == K, op, ": grad_out must have K = ", K, " features, got ", grad_out.sizes());
  if (md == Mode::kAmax) {
    check_values(op, out, "out", B, p.T_out);
    TORCH_CHECK(out.size(2) == K, op, ": out must have K = ", K, " features, got ", out.sizes());
  }
  const bool amax = md == Mode::kAmax;
  if (grad_out.scalar_type() != x.scalar_type() || (amax && out.scalar_type() != x.scalar_type())) {
    // mixed dtypes: compute in a common wide type, return in x's dtype
    auto wt = at::promote_types(at::promote_types(grad_out.scalar_type(), x.scalar_type()), at::kFloat);
    if (amax) wt = at::promote_types(wt, out.scalar_type());
    // x and out are only read by amax; otherwise a zero-strided stand-in of the right shape
    const at::Tensor xw = amax ? x.to(wt) : at::zeros({1, 1, 1}, x.options().dtype(wt)).expand({B, T, K});
    return merge_backward(grad_out.to(wt), xw, amax ? out.to(wt) : out, slot, offsets, members, mode)
        .to(x.scalar_type());
  }
  at::Tensor gx = detail::empty_output({B, T, K}, grad_out.scalar_type());
  if (B * p.T_out == 0 || K == 0) {
    // still validate the plan
    if (B * p.T_out > 0) {
      std::atomic<bool> bad{false};
      for (int64_t row = 0; row < B * p.T_out; ++row) {
        int64_t cnt;
        if (!group(p, row / p.T_out, row % p.T_out, cnt)) bad = true;
      }
      if (bad.load()) raise_bad_plan(op);
    }
    return gx;
  }
  const at::Tensor gc = grad_out.contiguous();
  const at::Tensor xc = amax ? x.contiguous() : x;
  const at::Tensor oc = amax ? out.contiguous() : out;
  std::atomic<bool> bad{false};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pitome_cpu_merge_backward", [&] {
    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
    const scalar_t* xp = amax ? xc.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* opp = amax ? oc.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* gxp = gx.data_ptr<scalar_t>();
    parallel_rows(p, K, [&](int64_t r0, int64_t r1) {
      simd::dispatch([&]() PITOME_LAMBDA {
        switch (md) {
          case Mode::kSum: merge_backward_rows<scalar_t, Mode::kSum>(p, gp, xp, opp, gxp, K, r0, r1, bad); break;
          case Mode::kMean: merge_backward_rows<scalar_t, Mode::kMean>(p, gp, xp, opp, gxp, K, r0, r1, bad); break;
          case Mode::kAmax: merge_backward_rows<scalar_t, Mode::kAmax>(p, gp, xp, opp, gxp, K, r0, r1, bad); break;
          case Mode::kPrune:
            merge_backward_rows<scalar_t, Mode::kPrune>(p, gp, xp, opp, gxp, K, r0, r1, bad);
            break;
        }
      });
    });
  });
  if (bad.load()) raise_bad_plan(op);
  return gx;
}

std::tuple<at::Tensor, at::Tensor> merge_wavg(const at::Tensor& x, const c10::optional<at::Tensor>& size,
                                              const at::Tensor& slot, const at::Tensor& offsets,
                                              const at::Tensor& members) {
  const char* op = "pitome cpu_merge_wavg";
  TORCH_CHECK(x.dim() == 3, op, ": x must be [B, T, K], got ", x.sizes());
  check_values(op, x, "x", x.size(0), x.size(1));
  const int64_t B = x.size(0), T = x.size(1), K = x.size(2);
  const Plan p = check_plan(op, slot, offsets, members, B, T);
  const at::ScalarType ct = compute_type(x.scalar_type());
  const bool has_size = size.has_value() && size->defined();
  at::Tensor w;
  if (has_size) w = as_contiguous(check_size(op, *size, "size", B, T), ct);
  const at::ScalarType size_dtype = has_size ? size->scalar_type() : x.scalar_type();
  at::Tensor out = detail::empty_output({B, p.T_out, K}, x.scalar_type());
  at::Tensor size_out = detail::empty_cpu({B, p.T_out, 1}, ct);
  if (B * p.T_out > 0) {
    const at::Tensor xc = x.contiguous();
    std::atomic<bool> bad{false};
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pitome_cpu_merge_wavg", [&] {
      using acc_t = acc_type<scalar_t>;
      const scalar_t* xp = xc.const_data_ptr<scalar_t>();
      const acc_t* wp = has_size ? w.const_data_ptr<acc_t>() : nullptr;
      scalar_t* op_ = out.data_ptr<scalar_t>();
      acc_t* sp = size_out.data_ptr<acc_t>();
      parallel_rows(p, K, [&](int64_t r0, int64_t r1) {
        simd::dispatch([&]() PITOME_LAMBDA { wavg_rows<scalar_t>(p, xp, wp, op_, sp, K, r0, r1, bad); });
      });
    });
    if (bad.load()) raise_bad_plan(op);
  }
  if (size_out.scalar_type() != size_dtype) size_out = size_out.to(size_dtype);
  return std::make_tuple(out, size_out);
}

at::Tensor merge_wavg_backward(const at::Tensor& grad_out, const c10::optional<at::Tensor>& size,
                               const at::Tensor& size_out, const at::Tensor& slot, const at::Tensor& offsets,
                               const at::Tensor& members) {
  const char* op = "pitome cpu_merge_wavg_backward";
  TORCH_CHECK(grad_out.dim() == 3, op, ": grad_out must be [B, T_out, K], got ", grad_out.sizes());
  const int64_t B = grad_out.size(0), K = grad_out.size(2);
  TORCH_CHECK(slot.dim() == 2 && slot.size(0) == B, op, ": slot must be [B, T], got ", slot.sizes());
  const int64_t T = slot.size(1);
  const Plan p = check_plan(op, slot, offsets, members, B, T);
  check_values(op, grad_out, "grad_out", B, p.T_out);
  const at::ScalarType ct = compute_type(grad_out.scalar_type());
  const at::Tensor wout = as_contiguous(check_size(op, size_out, "size_out", B, p.T_out), ct);
  const bool has_size = size.has_value() && size->defined();
  at::Tensor w;
  if (has_size) w = as_contiguous(check_size(op, *size, "size", B, T), ct);
  at::Tensor gx = detail::empty_output({B, T, K}, grad_out.scalar_type());
  if (B * p.T_out == 0) return gx;
  const at::Tensor gc = grad_out.contiguous();
  std::atomic<bool> bad{false};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_out.scalar_type(), "pitome_cpu_merge_wavg_backward",
                                  [&] {
                                    using acc_t = acc_type<scalar_t>;
                                    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
                                    const acc_t* wp = has_size ? w.const_data_ptr<acc_t>() : nullptr;
                                    const acc_t* wop = wout.const_data_ptr<acc_t>();
                                    scalar_t* gxp = gx.data_ptr<scalar_t>();
                                    parallel_rows(p, K, [&](int64_t r0, int64_t r1) {
                                      simd::dispatch([&]() PITOME_LAMBDA {
                                        wavg_backward_rows<scalar_t>(p, gp, wp, wop, gxp, K, r0, r1, bad);
                                      });
                                    });
                                  });
  if (bad.load()) raise_bad_plan(op);
  return gx;
}

at::Tensor unmerge(const at::Tensor& y, const at::Tensor& slot, const at::Tensor& offsets, const at::Tensor& members) {
  const char* op = "pitome cpu_unmerge";
  TORCH_CHECK(y.dim() == 3, op, ": y must be [B, T_out, K], got ", y.sizes());
  const int64_t B = y.size(0), K = y.size(2);
  TORCH_CHECK(slot.dim() == 2 && slot.size(0) == B, op, ": slot must be [B, T], got ", slot.sizes());
  const int64_t T = slot.size(1);
  const Plan p = check_plan(op, slot, offsets, members, B, T);
  check_values(op, y, "y", B, p.T_out);
  at::Tensor out = detail::empty_output({B, T, K}, y.scalar_type());
  if (B * T == 0) return out;
  const at::Tensor yc = y.contiguous();
  std::atomic<bool> bad{false};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "pitome_cpu_unmerge", [&] {
    const scalar_t* yp = yc.const_data_ptr<scalar_t>();
    scalar_t* outp = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * T, row_grain(K), [&](int64_t r0, int64_t r1) {
      unmerge_rows<scalar_t>(p, yp, outp, K, r0, r1, bad);
    });
  });
  if (bad.load()) raise_bad_plan(op);
  return out;
}

}  // namespace cpu
}  // namespace pitome
