// Energy of every mergeable token without a T x T buffer.
//
// S = u u^T is symmetric, so the rows are cut into nb blocks and only the tiles (I, J)
// with I <= J are computed: an off-diagonal tile credits its row sums to the rows of I
// and its column sums to the rows of J (half the FLOPs and half the exps of the full
// matrix). Each tile writes its partial sums into its own slots part[J, i] / part[I, j]
// (contiguous per tile and starting on a cache line, so units never share a line), and
// E_i = sum_J part[J, i] in J order (in double), so the result is bitwise the same for any
// number of threads. part[J, i] is one function of row i's values over block J whether
// row i is on a tile's row side, its column side or in the diagonal tile (energy_tile),
// so identical tokens get identical energies and their tie goes to the lower index. The
// threads that sum the rows also sort them, for the plan's ranking (sort.h), and the
// caller merges their sorted runs (sorted_runs.h).
// Memory: uT (one copy per thread) and part[nb, ld] (ld: n plus under two cache lines)
// with nb <= 64, i.e. O(n * c) per thread.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <utility>
#include <vector>

#include "kernels.h"
#include "output.h"
#include "similarity.h"
#include "sort.h"
#include "sorted_runs.h"

namespace pitome {
namespace cpu {
namespace detail {

namespace {
constexpr int64_t kMaxBlocks = 64;

// The upper-triangle tiles (units) of one energy pass, largest first.
struct Units {
  std::vector<int64_t> start;  // row blocks [start[I], start[I + 1]), also uT's panels
  int64_t first = 0;           // start[1] when block 0 is the remainder (Panels::first), else 0
  std::vector<int32_t> i, j;   // unit -> tile (I, J), I <= J
  int64_t n = -1, bs = 0, nb = 0, cost = 0;
  // part[J, i] is at J * ld + shift + i: every block's slots start on a cache line (a line
  // shared by two units' slots, written by two threads, cost every claim's fence its RFO)
  int64_t shift = 0, ld = 0;
  int64_t dealt = 0;  // units [0, dealt) are dealt out in turn, the rest claimed
};

template <typename T>
void plan_units(int64_t n, Units& u) {
  if (u.n == n) return;  // the same layout as the last call
  constexpr int W = V<T>::W;
  u.n = n;
  u.cost = 0;
  // Blocks of bs rows (a multiple of 2 vectors, at most kMaxBlocks blocks); the remainder
  // n % bs is block 0, so that only its few rows (not columns) are padded.
  u.bs = std::max<int64_t>(2 * W, round_up((n + kMaxBlocks - 1) / kMaxBlocks, 2 * W));
  u.start.assign(1, 0);
  if (n % u.bs != 0 && n > u.bs) u.start.push_back(n % u.bs);
  while (u.start.back() + u.bs <= n) u.start.push_back(u.start.back() + u.bs);
  if (u.start.back() != n) u.start.push_back(n);
  u.nb = static_cast<int64_t>(u.start.size()) - 1;
  u.first = n % u.bs != 0 && n > u.bs ? n % u.bs : 0;
  constexpr int64_t kLine = 64 / sizeof(T);
  u.shift = (kLine - u.start[1] % kLine) % kLine;  // the other starts are start[1] + multiples of bs
  u.ld = round_up(n + u.shift, kLine);
  // cost of a unit: register tiles (8 rows x 1 vector) it computes
  std::vector<std::pair<int64_t, int64_t>> by_cost;  // (-cost, unit id in row-major order)
  std::vector<int32_t> ui, uj;
  for (int64_t I = 0; I < u.nb; ++I)
    for (int64_t J = I; J < u.nb; ++J) {
      const int64_t rows = u.start[I + 1] - u.start[I], cols = u.start[J + 1] - u.start[J];
      int64_t cost = (rows + kRows - 1) / kRows * ((cols + W - 1) / W);
      if (I == J) cost = cost / 2 + 1;
      by_cost.emplace_back(-cost, static_cast<int64_t>(ui.size()));
      ui.push_back(static_cast<int32_t>(I));
      uj.push_back(static_cast<int32_t>(J));
      u.cost += cost;
    }
  // largest first, so that the units taken last (by whichever thread is free) are small
  std::sort(by_cost.begin(), by_cost.end());
  u.i.resize(ui.size());
  u.j.resize(uj.size());
  for (size_t t = 0; t < by_cost.size(); ++t) {
    u.i[t] = ui[by_cost[t].second];
    u.j[t] = uj[by_cost[t].second];
  }
  // About 60% of the work is dealt out, since every claim moves the counter's cache line
  // between cores; the claimed rest still evens out a thread that starts late.
  int64_t dealt_cost = 0;
  u.dealt = 0;
  while (u.dealt < static_cast<int64_t>(by_cost.size()) && 10 * dealt_cost < 6 * u.cost)
    dealt_cost -= by_cost[u.dealt++].first;
}

// The row and column sums of tile unit t into the thread's rowsum/colsum (colhalf: the
// tile's scratch) ...
template <typename T>
void compute_unit(const Normalised<T>& nu, const Units& un, int64_t t, bool gauss, T margin, T inv_sigma,
                  std::vector<T>& rowsum, std::vector<T>& colsum, std::vector<T>& colhalf) {
  constexpr int W = V<T>::W;
  const int64_t I = un.i[t], J = un.j[t];
  const int64_t i0 = un.start[I], i1 = un.start[I + 1];
  const int64_t j0 = un.start[J], j1 = un.start[J + 1];
  const bool diag = I == J;
  rowsum.resize(un.bs + 2 * W);
  colsum.assign(un.bs + 2 * W, T(0));
  colhalf.resize(un.bs + 2 * W);
  T* rs = rowsum.data();
  T* cs = colsum.data();
  T* ch = colhalf.data();
  const T* a = nu.column(i0);  // the panels of row blocks I and J
  const T* b = nu.column(j0);
  const int64_t c = nu.layout.c, ld = nu.layout.ld;
  if (gauss)
    PITOME_DISPATCH(K::energy_tile<T, true, false>(a, b, c, ld, i0, i1, j0, j1, diag, margin, inv_sigma, rs, cs, ch));
  else if (margin <= kSmallMarginLimit)
    PITOME_DISPATCH(K::energy_tile<T, false, true>(a, b, c, ld, i0, i1, j0, j1, diag, margin, inv_sigma, rs, cs, ch));
  else
    PITOME_DISPATCH(K::energy_tile<T, false, false>(a, b, c, ld, i0, i1, j0, j1, diag, margin, inv_sigma, rs, cs, ch));
}

// ... then into its partial slots part[J, rows of I] and part[I, rows of J] (a diagonal
// tile's row sums hold its column sums already).
template <typename T>
void publish_unit(const Units& un, int64_t t, const std::vector<T>& rowsum, const std::vector<T>& colsum, T* part) {
  const int64_t ld = un.ld;
  const int64_t I = un.i[t], J = un.j[t];
  const int64_t i0 = un.start[I], i1 = un.start[I + 1];
  const int64_t j0 = un.start[J], j1 = un.start[J + 1];
  const T* rs = rowsum.data();
  const T* cs = colsum.data();
  if (I == J) {
    for (int64_t i = i0; i < i1; ++i) part[I * ld + i] = rs[i - i0];
  } else {
    for (int64_t i = i0; i < i1; ++i) part[J * ld + i] = rs[i - i0];
    for (int64_t j = j0; j < j1; ++j) part[I * ld + j] = cs[j - j0];
  }
}
}  // namespace

template <typename in_t, typename T>
void normalised_energy(const in_t* m, int64_t n, int64_t c, double margin, bool gauss, Normalised<T>& nu,
                       float* out, std::vector<int64_t>* order, std::vector<uint64_t>* keys,
                       const std::function<void()>* lead_task) {
  constexpr int W = V<T>::W;
  if (n == 0) return;
  static thread_local Units units_of_this_thread;
  const Units& un = units_of_this_thread;  // named inside the region: the caller's, not each thread's
  plan_units<T>(n, units_of_this_thread);
  const int64_t units = static_cast<int64_t>(un.i.size()), nb = un.nb;
  // every slot part[J, i] is written by exactly one unit: no initialisation needed
  nu.part.resize(un.ld * nb);
  T* part = nu.part.data() + un.shift;  // part[J * un.ld + i]
  const T tm = static_cast<T>(margin);
  const T inv_sigma = static_cast<T>(1.0 / (1.0 - margin));  // gauss
  const double dn = static_cast<double>(n);
  // reference (gauss): mean(exp(...)) / (sigma * sqrt(2 pi))
  const double denom = gauss ? (1.0 - margin) * std::sqrt(2.0 * M_PI) : 1.0;
  const int64_t macs = un.cost * kRows * W * std::max<int64_t>(c, 1);
  const bool parallel = team_worth(macs);
  // on a cache line of its own: the other thread's claims must not evict the captures
  struct alignas(64) Counter {
    std::atomic<int64_t> value{0};
    char pad[64 - sizeof(std::atomic<int64_t>)];
  } next;
  std::atomic<int64_t>& next_unit = next.value;
  // The ranking, when asked for: every thread of a team sorts the energies it summed (a run
  // of at most kSmallSort keys, at keys[tid * kSmallSort]), the caller merges the runs.
  const int64_t max_runs = parallel ? std::max(1, at::get_num_threads()) : 1;
  int64_t* runs = nullptr;
  if (order != nullptr && parallel && vector_sort_available()) {
    keys->resize(max_runs * kSmallSort + 2 * n);
    runs = reinterpret_cast<int64_t*>(keys->data());
  }
  int64_t team_size = 0;  // set by thread 0 when the threads sorted their runs
  std::exception_ptr lead_error;
  // One parallel region (or, serially, the caller's thread alone). Each unit writes its
  // own partial slots and each row sums them in J order, in double: the result is the
  // same for any number of threads and any assignment of units to threads.
  run_team(parallel, [&](int64_t tid, int64_t threads) {
    static thread_local std::vector<T> rowsum, colsum, colhalf;
    static thread_local Normalised<T> helper_nu;
    // Every thread normalises the rows it needs into its own uT (the caller's thread into
    // nu): rows normalised by one thread and read by the other cost more in cache-line
    // transfers than normalising them twice (and a split normalisation needs a barrier).
    Normalised<T>& mine = tid == 0 ? nu : helper_nu;
    const Panels layout{c, un.bs, un.first};
    mine.resize(n, layout);
    if constexpr (!std::is_same_v<in_t, T>) mine.converted.resize(n * c);
    // Each row block is normalised into its panel when a unit first needs it, so that its
    // first tile finds it in L1 (normalising all rows up front went at the speed of L2).
    uint64_t ready = 0;  // bit I: panel I normalised (nb <= kMaxBlocks = 64)
    auto need = [&](int64_t I) {
      if (ready >> I & 1) return;
      ready |= uint64_t{1} << I;
      const int64_t r0 = un.start[I];
      PITOME_DISPATCH(K::normalise_rows<in_t, T>(m + r0 * c, nullptr, un.start[I + 1] - r0, c, c,
                                                 mine.ut.data() + layout.offset(r0), Panels{c, un.bs, 0},
                                                 mine.converted.data() + r0 * c));
    };
    auto compute = [&](int64_t t) {
      need(un.i[t]);
      need(un.j[t]);
      compute_unit<T>(mine, un, t, gauss, tm, inv_sigma, rowsum, colsum, colhalf);
    };
    if (tid == 0 && lead_task != nullptr) {  // the others claim its share of the units meanwhile
      try {
        (*lead_task)();
      } catch (...) {  // rethrown after the region (an exception must not leave it)
        lead_error = std::current_exception();
      }
    }
    // units largest first: the first ones dealt out in turn, the rest to whichever thread
    // is free
    for (int64_t t = tid; t < un.dealt; t += threads) {
      compute(t);
      publish_unit<T>(un, t, rowsum, colsum, part);
    }
    // A claim (a locked add) waits for the thread's pending stores. The next unit is
    // claimed before this one's slots are written: those lines were last read by the other
    // thread, and their stores now drain while the next unit computes.
    auto claim = [&] { return un.dealt + next_unit.fetch_add(1, std::memory_order_relaxed); };
    for (int64_t t = claim(); t < units;) {
      compute(t);
      const int64_t next_t = claim();
      publish_unit<T>(un, t, rowsum, colsum, part);
      t = next_t;
    }
    if (parallel) {
#pragma omp barrier
    }
    const int64_t chunk = (n + threads - 1) / threads;
    const int64_t i0 = std::min(n, tid * chunk), i1 = std::min(n, (tid + 1) * chunk);
    PITOME_DISPATCH(K::sum_partials<T>(part, un.ld, nb, i0, i1, dn, denom, out));
    if (runs != nullptr && threads <= max_runs && chunk <= kSmallSort) {
      int64_t* run = runs + tid * kSmallSort;
      for (int64_t i = i0; i < i1; ++i) run[i - i0] = rank_key(out[i], i);
      sort_keys(run, i1 - i0);
      if (tid == 0) team_size = threads;
    }
  });
  if (lead_error) std::rethrow_exception(lead_error);
  if (order == nullptr) return;
  if (team_size > 0) {
    merge_runs(runs, team_size, kSmallSort, (n + team_size - 1) / team_size, n, runs + max_runs * kSmallSort,
               *order);
  } else {
    sort_desc(out, n, *order, *keys);
  }
}

#define PITOME_INSTANTIATE(in_t, T)                                                                           \
  template void normalised_energy<in_t, T>(const in_t*, int64_t, int64_t, double, bool, Normalised<T>&, float*, \
                                           std::vector<int64_t>*, std::vector<uint64_t>*, const std::function<void()>*);
PITOME_INSTANTIATE(float, float)
PITOME_INSTANTIATE(double, double)
PITOME_INSTANTIATE(c10::Half, float)
PITOME_INSTANTIATE(c10::BFloat16, float)
#undef PITOME_INSTANTIATE

}  // namespace detail

at::Tensor energy(const at::Tensor& metric, double margin, c10::string_view kernel, bool class_token) {
  TORCH_CHECK_VALUE(metric.dim() == 3, "pitome cpu_energy: metric must be [B, T, C], got ", metric.sizes());
  TORCH_CHECK_VALUE(metric.device().is_cpu(), "pitome cpu_energy: metric must be a CPU tensor");
  TORCH_CHECK_VALUE(kernel == "elu" || kernel == "gauss", "pitome cpu_energy: kernel must be 'elu' or 'gauss', got '",
              std::string(kernel), "'");
  const auto st = metric.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16,
              "pitome cpu_energy: metric must be float32/float64/float16/bfloat16, got ", st);
  const int64_t B = metric.size(0), T = metric.size(1), C = metric.size(2);
  const int64_t off = class_token ? 1 : 0;
  TORCH_CHECK_VALUE(T >= off + 1, "pitome cpu_energy: metric needs at least one mergeable token, got ", T,
              " tokens with class_token=", class_token);
  TORCH_CHECK_VALUE(std::isfinite(margin), "pitome cpu_energy: margin must be finite, got ", margin);
  TORCH_CHECK_VALUE(kernel == "elu" || margin < 1.0, "pitome cpu_energy: margin must be < 1 for the gauss kernel, got ",
              margin);
  const int64_t n = T - off;
  at::Tensor out = detail::empty_cpu({B, n}, at::kFloat);
  if (B == 0 || n == 0) return out;
  const at::Tensor m = metric.contiguous();
  const bool gauss = kernel == "gauss";
  float* op = out.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, st, "pitome_cpu_energy", [&] {
    using in_t = scalar_t;
    using T_ = simd::compute_t<in_t>;
    const in_t* mp = m.const_data_ptr<in_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      static thread_local detail::Normalised<T_> nu;  // reused across calls, as in plan.cpp
      for (int64_t b = b0; b < b1; ++b)
        detail::normalised_energy<in_t, T_>(mp + (b * T + off) * C, n, C, margin, gauss, nu, op + b * n);
    });
  });
  return out;
}

}  // namespace cpu
}  // namespace pitome
