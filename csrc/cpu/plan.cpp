// Plans of the four variants (pitome, pitome_text, pitome_bsm, tome) without
// materialising S: energy by the tiled symmetric kernel of energy.cpp, ranking on
// (energy desc, index asc) by the same call (the threads' sorted runs, merged; else
// sort_desc of sort.h), matching as a register-tiled A x B product with a running
// argmax over A and B normalised afresh from the metric's rows (S_ab recomputed: cheaper
// than storing S during the energy pass, even for pitome_bsm's n/2 x n/2 pairs), then the
// CSR tensors exactly as reference._to_csr builds them.
// Memory per batch element: O(T * C).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "kernels.h"
#include "output.h"
#include "similarity.h"
#include "sort.h"

namespace pitome {
namespace cpu {

namespace {

enum class Variant { kPitome, kText, kBsm, kTome };

struct PlanOut {
  int32_t* slot;     // [T]
  int32_t* offsets;  // [T_out + 1]
  int32_t* members;  // [T]
};

// The three output tensors [B, T], [B, T_out + 1], [B, T], allocated on first use: with
// one batch element, inside the energy's team region by the calling thread while the
// others start on their tiles, so that the allocations are off the critical path.
struct PlanTensors {
  int64_t B, T, t_out;
  at::Tensor slot, offsets, members;
  void allocate() {
    if (slot.defined()) return;
    slot = detail::empty_cpu({B, T}, at::kInt);
    offsets = detail::empty_cpu({B, t_out + 1}, at::kInt);
    members = detail::empty_cpu({B, T}, at::kInt);
  }
  PlanOut of(int64_t b) {
    allocate();
    return PlanOut{slot.data_ptr<int32_t>() + b * T, offsets.data_ptr<int32_t>() + b * (t_out + 1),
                   members.data_ptr<int32_t>() + b * T};
  }
};

// Scratch of one task, reused over the batch elements it handles.
template <typename T>
struct Scratch {
  detail::Normalised<T> nu;
  std::vector<float> energy;
  std::vector<int64_t> pi, order, a, b, heads, sources;
  std::vector<int32_t> src_slot, dst, fill;
  std::vector<T> best;
  std::vector<uint64_t> keys, is_source;
};

// Rows of the metric: row k at m + (idx ? idx[k] : k) * stride, k < n.
template <typename in_t>
struct Rows {
  const in_t* m;
  const int64_t* idx;
  int64_t n, stride;
  Rows from(int64_t k) const {
    return idx != nullptr ? Rows{m, idx + k, n - k, stride} : Rows{m + k * stride, nullptr, n - k, stride};
  }
};

// s.best/s.dst of every row of A against the rows of B: the running argmax of their
// normalised dot products, straight from the metric. Each thread of a team normalises all
// of B and its own rows of A (no column gathers, and nothing written by one thread is read
// by another). The values are bitwise those of the energy's uT (normalisation is per row).
template <typename in_t, typename T>
void match(Scratch<T>& s, Rows<in_t> a, Rows<in_t> b, int64_t c, int64_t masked) {
  const int64_t na = a.n, nb = b.n;
  s.best.resize(na);
  s.dst.assign(na, 0);
  if (nb == 0) {
    std::fill(s.best.begin(), s.best.end(), -std::numeric_limits<T>::infinity());
    return;
  }
  if (na == 0) return;
  T* best = s.best.data();
  int32_t* dst = s.dst.data();
  const int64_t tiles = (na + detail::kRows - 1) / detail::kRows;
  const int64_t macs = na * detail::padded_ld<T>(nb) * std::max<int64_t>(c, 1);
  detail::run_team(detail::team_worth(macs), [&](int64_t tid, int64_t threads) {
    static thread_local detail::Normalised<T> ub;
    static thread_local detail::aligned_vector<T> ua;
    const int64_t per = (tiles + threads - 1) / threads * detail::kRows;
    const int64_t a0 = std::min(na, tid * per), a1 = std::min(na, a0 + per);
    if (a0 >= a1) return;
    const Rows<in_t> mine = a.from(a0);
    detail::normalise<in_t, T>(b.m, b.idx, nb, c, b.stride, ub, detail::plain_panels<T>(nb, c));
    // A, the broadcast side, as rows (no transpose); rows up to a whole tile are read
    const int64_t padded = detail::round_up(a1 - a0, detail::kRows) * c;
    if (static_cast<int64_t>(ua.size()) < padded) ua.assign(padded, T(0));
    PITOME_DISPATCH(K::normalise_rows_major<in_t, T>(mine.m, mine.idx, a1 - a0, c, mine.stride, ua.data()));
    PITOME_DISPATCH(K::argmax_kernel<T>(ua.data(), c, a1 - a0, ub.ut.data(), ub.layout.ld, nb, c, masked, best + a0,
                                        dst + a0));
  });
}

// Positions 0..n-1 of `best` ordered by best desc (NaN first), ties to the lower position.
template <typename T>
void best_first(const std::vector<T>& best, std::vector<int64_t>& order, std::vector<uint64_t>& keys) {
  detail::sort_desc(best.data(), static_cast<int64_t>(best.size()), order, keys);
}

// v += x + add for every x in [first, last), with one resize (push_back per element was a
// capacity check and a store each).
void append_shifted(std::vector<int64_t>& v, const int64_t* first, const int64_t* last, int64_t add) {
  const size_t at = v.size();
  v.resize(at + (last - first));
  int64_t* out = v.data() + at;
  for (ptrdiff_t k = 0; k < last - first; ++k) out[k] = first[k] + add;
}

// Plan tensors from heads (in output order) and sources with their slots. A group's
// members are its head, then its sources by ascending token: the sources are visited in
// token order through a bit set, which costs less than a scan over every token with a
// branch per token that does not predict.
void to_csr(const std::vector<int64_t>& heads, const std::vector<int64_t>& sources,
            const std::vector<int32_t>& src_slot, int64_t tokens, std::vector<uint64_t>& is_source,
            std::vector<int32_t>& fill, PlanOut out) {
  const int64_t num_out = static_cast<int64_t>(heads.size()), num_src = static_cast<int64_t>(sources.size());
  TORCH_CHECK(num_out + num_src == tokens, "pitome cpu_plan: internal error (plan size)");
  fill.assign(num_out, 0);  // sources per group
  is_source.assign((tokens + 63) / 64, 0);
  for (int64_t g = 0; g < num_out; ++g) out.slot[heads[g]] = static_cast<int32_t>(g);
  for (int64_t k = 0; k < num_src; ++k) {
    out.slot[sources[k]] = src_slot[k];
    is_source[sources[k] / 64] |= uint64_t{1} << (sources[k] % 64);
    fill[src_slot[k]] += 1;
  }
  int32_t at = 0;
  for (int64_t g = 0; g < num_out; ++g) {
    out.offsets[g] = at;
    out.members[at] = static_cast<int32_t>(heads[g]);
    const int32_t count = fill[g];
    fill[g] = at + 1;  // where the group's next source goes
    at += 1 + count;
  }
  out.offsets[num_out] = at;
  for (int64_t w = 0; w < static_cast<int64_t>(is_source.size()); ++w)
    for (uint64_t bits = is_source[w]; bits != 0; bits &= bits - 1) {
      const int64_t t = w * 64 + __builtin_ctzll(bits);
      out.members[fill[out.slot[t]]++] = static_cast<int32_t>(t);
    }
}

template <typename in_t, typename T>
void plan_one(const in_t* m, int64_t tokens, int64_t c, int64_t r, Variant variant, double margin,
              bool class_token, bool distill_token, Scratch<T>& s, PlanTensors& outs, int64_t b) {
  auto& heads = s.heads;
  auto& sources = s.sources;
  auto& src_slot = s.src_slot;
  heads.clear();
  sources.clear();
  src_slot.clear();

  if (variant == Variant::kTome) {
    // u over the whole sequence (protected tokens included); A even, Bset odd positions.
    s.a.clear();
    s.b.clear();
    for (int64_t t = 0; t < tokens; t += 2) s.a.push_back(t);
    for (int64_t t = 1; t < tokens; t += 2) s.b.push_back(t);
    const int64_t na = static_cast<int64_t>(s.a.size()), nb = static_cast<int64_t>(s.b.size());
    match<in_t, T>(s, Rows<in_t>{m, nullptr, na, 2 * c}, Rows<in_t>{m + c, nullptr, nb, 2 * c}, c,
                   distill_token ? 0 : -1);
    if (class_token) {  // the class token is never a source
      s.best[0] = -std::numeric_limits<T>::infinity();
      s.dst[0] = 0;
    }
    best_first<T>(s.best, s.order, s.keys);
    const int64_t n_unm = na - r;
    if (class_token) std::sort(s.order.begin() + r, s.order.end());
    auto b_slot = [&](int64_t k) -> int32_t {
      if (distill_token && k == 0) return 1;
      return static_cast<int32_t>(n_unm + k);
    };
    if (distill_token) {
      heads.push_back(s.a[s.order[r]]);
      heads.push_back(s.b[0]);
      for (int64_t k = r + 1; k < na; ++k) heads.push_back(s.a[s.order[k]]);
      for (int64_t k = 1; k < nb; ++k) heads.push_back(s.b[k]);
    } else {
      for (int64_t k = r; k < na; ++k) heads.push_back(s.a[s.order[k]]);
      for (int64_t k = 0; k < nb; ++k) heads.push_back(s.b[k]);
    }
    for (int64_t k = 0; k < r; ++k) {
      sources.push_back(s.a[s.order[k]]);
      src_slot.push_back(b_slot(s.dst[s.order[k]]));
    }
    to_csr(heads, sources, src_slot, tokens, s.is_source, s.fill, outs.of(b));
    return;
  }

  const int64_t off = class_token ? 1 : 0;
  const int64_t n = tokens - off;
  s.energy.resize(n);
  // pi: energy desc (NaN first), ties to the lower index
  auto& pi = s.pi;
  const std::function<void()> allocate = [&] { outs.allocate(); };
  detail::normalised_energy<in_t, T>(m + off * c, n, c, margin, variant == Variant::kText, s.nu, s.energy.data(),
                                     &pi, &s.keys, outs.B == 1 ? &allocate : nullptr);

  // the mergeable tokens' rows picked by the ranking
  auto rows_of = [&](const std::vector<int64_t>& tokens) {
    return Rows<in_t>{m + off * c, tokens.data(), static_cast<int64_t>(tokens.size()), c};
  };
  if (class_token) heads.push_back(0);
  s.a.clear();
  s.b.clear();
  if (variant == Variant::kBsm) {
    for (int64_t k = 0; k < n; k += 2) s.a.push_back(pi[k]);
    for (int64_t k = 1; k < n; k += 2) s.b.push_back(pi[k]);
    match<in_t, T>(s, rows_of(s.a), rows_of(s.b), c, -1);
    best_first<T>(s.best, s.order, s.keys);
    const int64_t na = static_cast<int64_t>(s.a.size());
    const int64_t n_unm = na - r;
    for (int64_t k = r; k < na; ++k) heads.push_back(s.a[s.order[k]] + off);
    append_shifted(heads, s.b.data(), s.b.data() + s.b.size(), off);
    for (int64_t k = 0; k < r; ++k) {
      sources.push_back(s.a[s.order[k]] + off);
      src_slot.push_back(static_cast<int32_t>(off + n_unm + s.dst[s.order[k]]));
    }
  } else {
    if (variant == Variant::kText) {
      for (int64_t k = 0; k < r; ++k) s.a.push_back(pi[k]);
      for (int64_t k = r; k < 2 * r; ++k) s.b.push_back(pi[k]);
    } else {
      for (int64_t k = 0; k < 2 * r; k += 2) s.a.push_back(pi[k]);
      for (int64_t k = 1; k < 2 * r; k += 2) s.b.push_back(pi[k]);
    }
    match<in_t, T>(s, rows_of(s.a), rows_of(s.b), c, -1);
    const int64_t n_prot = n - 2 * r;
    append_shifted(heads, pi.data() + 2 * r, pi.data() + n, off);
    append_shifted(heads, s.b.data(), s.b.data() + s.b.size(), off);
    for (int64_t k = 0; k < r; ++k) {
      sources.push_back(s.a[k] + off);
      src_slot.push_back(static_cast<int32_t>(off + n_prot + s.dst[k]));
    }
  }
  to_csr(heads, sources, src_slot, tokens, s.is_source, s.fill, outs.of(b));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> plan(const at::Tensor& metric, int64_t r,
                                                    c10::string_view variant, double margin,
                                                    bool class_token, bool distill_token) {
  TORCH_CHECK_VALUE(metric.dim() == 3, "pitome cpu_plan: metric must be [B, T, C], got ", metric.sizes());
  TORCH_CHECK_VALUE(metric.device().is_cpu(), "pitome cpu_plan: metric must be a CPU tensor");
  const auto st = metric.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16,
              "pitome cpu_plan: metric must be float32/float64/float16/bfloat16, got ", st);
  Variant v;
  if (variant == "pitome")
    v = Variant::kPitome;
  else if (variant == "pitome_text")
    v = Variant::kText;
  else if (variant == "pitome_bsm")
    v = Variant::kBsm;
  else if (variant == "tome")
    v = Variant::kTome;
  else
    TORCH_CHECK_VALUE(false, "pitome cpu_plan: unknown variant '", std::string(variant), "'");
  const int64_t B = metric.size(0), T = metric.size(1), C = metric.size(2);
  TORCH_CHECK_VALUE(T < (int64_t{1} << 30), "pitome cpu_plan: too many tokens for int32 plans");
  const int64_t off = class_token ? 1 : 0;
  TORCH_CHECK_VALUE(T >= off + 1, "pitome cpu_plan: metric needs at least one mergeable token, got ", T,
              " tokens with class_token=", class_token);
  TORCH_CHECK_VALUE(r >= 0, "pitome cpu_plan: r must be >= 0, got ", r);
  TORCH_CHECK_VALUE(std::isfinite(margin), "pitome cpu_plan: margin must be finite, got ", margin);
  TORCH_CHECK_VALUE(v != Variant::kText || margin < 1.0, "pitome cpu_plan: pitome_text (gauss kernel) needs margin < 1, got ",
              margin);
  TORCH_CHECK_VALUE(!distill_token || v == Variant::kTome, "pitome cpu_plan: distill_token needs variant 'tome'");
  if (v == Variant::kTome) {
    const int64_t prot = off + (distill_token ? 1 : 0);
    r = std::min<int64_t>(r, std::max<int64_t>(T - prot, 0) / 2);
  } else {
    TORCH_CHECK_VALUE(r <= (T - off) / 2, "pitome cpu_plan: ", std::string(variant), " needs 2r <= T' (r=", r,
                ", T'=", T - off, ")");
  }
  if (r <= 0) {  // identity plan
    at::Tensor slot = detail::empty_cpu({B, T}, at::kInt);
    at::Tensor offsets = detail::empty_cpu({B, T + 1}, at::kInt);
    at::Tensor members = detail::empty_cpu({B, T}, at::kInt);
    int32_t* sp = slot.data_ptr<int32_t>();
    int32_t* op = offsets.data_ptr<int32_t>();
    int32_t* mp = members.data_ptr<int32_t>();
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t) sp[b * T + t] = mp[b * T + t] = static_cast<int32_t>(t);
      for (int64_t t = 0; t <= T; ++t) op[b * (T + 1) + t] = static_cast<int32_t>(t);
    }
    return std::make_tuple(slot, offsets, members);
  }
  PlanTensors outs{B, T, T - r};
  // with several batch elements, before their threads start
  if (B != 1) outs.allocate();
  if (B == 0) return std::make_tuple(outs.slot, outs.offsets, outs.members);
  const at::Tensor m = metric.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, st, "pitome_cpu_plan", [&] {
    using in_t = scalar_t;
    using T_ = simd::compute_t<in_t>;
    const in_t* xp = m.const_data_ptr<in_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      // kept per thread across calls: no allocation (nor zero-fill) of the scratch per call
      static thread_local Scratch<T_> s;
      for (int64_t b = b0; b < b1; ++b)
        plan_one<in_t, T_>(xp + b * T * C, T, C, r, v, margin, class_token, distill_token, s, outs, b);
    });
  });
  return std::make_tuple(outs.slot, outs.offsets, outs.members);
}

}  // namespace cpu
}  // namespace pitome
