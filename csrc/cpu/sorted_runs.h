// Internal: the merge of sorted runs of rank keys (sort.h's rank_key) into one order,
// for the energy's ranking: every thread of its team sorts the energies it summed, and
// the caller merges the runs.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace pitome {
namespace cpu {
namespace detail {

// out[0, na + nb) <- the distinct keys a and b (each ascending) merged, each masked by
// `mask`: the smaller half from the front and the larger from the back, two independent
// chains (each step of one waits on its last step's loads), branch-free (which one goes
// next does not predict).
inline void merge_two(const int64_t* a, int64_t na, const int64_t* b, int64_t nb, int64_t* out, int64_t mask) {
  const int64_t n = na + nb, front = n / 2;
  int64_t i = 0, j = 0, ie = na - 1, je = nb - 1;
  for (int64_t o = 0; o < front; ++o) {
    // a past its end reads as +inf (the max key), so b goes next; likewise b
    const int64_t x = i < na ? a[i] : std::numeric_limits<int64_t>::max();
    const int64_t y = j < nb ? b[j] : std::numeric_limits<int64_t>::max();
    const bool take_b = y < x;
    out[o] = (take_b ? y : x) & mask;
    j += take_b;
    i += !take_b;
    const int64_t xe = ie >= 0 ? a[ie] : std::numeric_limits<int64_t>::min();
    const int64_t ye = je >= 0 ? b[je] : std::numeric_limits<int64_t>::min();
    const bool take_be = ye > xe;
    out[n - 1 - o] = (take_be ? ye : xe) & mask;
    je -= take_be;
    ie -= !take_be;
  }
  if (n % 2 == 1) {  // the middle one: what neither end took
    const int64_t x = i <= ie ? a[i] : std::numeric_limits<int64_t>::max();
    const int64_t y = j <= je ? b[j] : std::numeric_limits<int64_t>::max();
    out[front] = (y < x ? y : x) & mask;
  }
}

// order <- the positions of the sorted key runs, merged: run r (ascending) is
// runs[r * stride, r * stride + len(r)), len(r) = the rows [r * chunk, (r + 1) * chunk) of
// n. Two runs are merged straight into order; more runs in pairs, then pairs of pairs,
// ..., each level written into the half of the scratch `tmp` (2n keys) that the level
// before did not use.
inline void merge_runs(int64_t* runs, int64_t count, int64_t stride, int64_t chunk, int64_t n, int64_t* tmp,
                       std::vector<int64_t>& order) {
  constexpr int64_t kPosition = 0xffffffff;  // a key's low half (rank_key)
  order.resize(n);
  auto length = [&](int64_t r) { return std::clamp<int64_t>(n - r * chunk, 0, chunk); };
  if (count == 2) {
    // the second run was written by another core: its lines requested all at once here,
    // not one by one as the merge (a chain of dependent loads) reaches them
    for (int64_t k = 0; k < length(1); k += 64 / sizeof(int64_t)) __builtin_prefetch(runs + stride + k);
    merge_two(runs, length(0), runs + stride, length(1), order.data(), kPosition);
    return;
  }
  static thread_local std::vector<std::pair<const int64_t*, int64_t>> level, next;
  level.clear();
  for (int64_t r = 0; r < count; ++r) level.emplace_back(runs + r * stride, length(r));
  int64_t* into = tmp;
  while (level.size() > 1) {
    next.clear();
    int64_t* w = into;
    for (size_t r = 0; r < level.size(); r += 2) {
      const int64_t len = level[r].second + (r + 1 < level.size() ? level[r + 1].second : 0);
      if (r + 1 == level.size())  // copied along, so that every level lies in one half
        std::copy(level[r].first, level[r].first + level[r].second, w);
      else
        merge_two(level[r].first, level[r].second, level[r + 1].first, level[r + 1].second, w, ~int64_t{0});
      next.emplace_back(w, len);
      w += len;
    }
    level.swap(next);
    into = into == tmp ? tmp + n : tmp;
  }
  const int64_t* sorted = level[0].first;
  for (int64_t i = 0; i < n; ++i) order[i] = sorted[i] & kPosition;
}

}  // namespace detail
}  // namespace cpu
}  // namespace pitome
