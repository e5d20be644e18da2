// Internal: how the merge kernels spread the output rows of a plan over the threads
// (parallel_rows, a work-stealing split of equal cost) and run them in the CPU's ISA clone
// (for_rows).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "plan_check.h"
#include "simd.h"

namespace pitome {
namespace cpu {
namespace detail {

// The fewest rows of K features given to a thread (16K values): fewer do not pay for it.
inline int64_t row_grain(int64_t K) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)); }

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
// seconds, and a static split would then wait for it. Every row's result is the same
// whoever computes it.
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

// Runs rows(r0, r1, bad) over the output rows of a plan (parts of them by parallel_rows),
// each part in the CPU's ISA clone: rows must be a lambda marked PITOME_LAMBDA that only
// calls PITOME_INLINE code (see simd::dispatch), and sets bad for an invalid group
// (for_each_group). Raises afterwards if any group was invalid.
template <typename F>
void for_rows(const char* op, const Plan& p, int64_t K, const F& rows) {
  std::atomic<bool> bad{false};
  parallel_rows(p, K, [&](int64_t r0, int64_t r1) {
    simd::dispatch([&]() PITOME_LAMBDA { rows(r0, r1, bad); });
  });
  if (bad.load()) raise_bad_plan(op);
}

}  // namespace detail
}  // namespace cpu
}  // namespace pitome
