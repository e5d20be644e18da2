// Energy of every mergeable token without a T x T buffer.
//
// S = u u^T is symmetric, so the rows are cut into nb blocks and only the tiles (I, J)
// with I <= J are computed: an off-diagonal tile credits its row sums to the rows of I
// and its column sums to the rows of J (half the FLOPs and half the exps of the full
// matrix). Each tile writes its partial sums into its own slots part[J, i] / part[I, j]
// (contiguous per tile, so threads do not share cache lines), and E_i = sum_J part[J, i]
// in J order (in double), so the result is bitwise the same for any number of threads.
// Memory: u, uT and part[nb, n] with nb <= 64, i.e. O(n * c).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <memory>

#include "kernels.h"
#include "similarity.h"

namespace pitome {
namespace cpu {
namespace detail {

namespace {
constexpr int64_t kMaxBlocks = 64;
}  // namespace

template <typename T>
void energy_of_rows(const Normalised<T>& nu, double margin, bool gauss, float* out) {
  const int64_t n = nu.n, c = nu.c, ld = nu.ld;
  if (n == 0) return;
  constexpr int W = V<T>::W;
  // Blocks of bs rows (a multiple of 2 vectors, at most kMaxBlocks blocks); the remainder
  // n % bs is block 0, so that only its few rows (not columns) are padded.
  const int64_t bs = std::max<int64_t>(2 * W, round_up((n + kMaxBlocks - 1) / kMaxBlocks, 2 * W));
  std::vector<int64_t> start{0};
  if (n % bs != 0 && n > bs) start.push_back(n % bs);
  while (start.back() + bs <= n) start.push_back(start.back() + bs);
  if (start.back() != n) start.push_back(n);
  const int64_t nb = static_cast<int64_t>(start.size()) - 1;
  const int64_t units = nb * (nb + 1) / 2;
  // every slot part[J, i] is written by exactly one tile: no initialisation needed
  std::unique_ptr<T[]> part(new T[n * nb]);
  // unit -> (I, J), I <= J, row-major over the upper triangle
  std::vector<int32_t> unit_i(units), unit_j(units);
  {
    int64_t t = 0;
    for (int64_t I = 0; I < nb; ++I)
      for (int64_t J = I; J < nb; ++J) {
        unit_i[t] = static_cast<int32_t>(I);
        unit_j[t] = static_cast<int32_t>(J);
        ++t;
      }
  }
  const T tm = static_cast<T>(margin);
  const T tsigma = static_cast<T>(1.0 - margin);
  // cost of a unit: register tiles (8 rows x 1 vector) it computes
  std::vector<int64_t> cum(units + 1, 0);
  for (int64_t t = 0; t < units; ++t) {
    const int64_t I = unit_i[t], J = unit_j[t];
    const int64_t rows = start[I + 1] - start[I], cols = start[J + 1] - start[J];
    int64_t cost = (rows + kRows - 1) / kRows * ((cols + W - 1) / W);
    if (I == J) cost = cost / 2 + 1;
    cum[t + 1] = cum[t] + cost;
  }
  // contiguous groups of equal cost, one per thread (the result does not depend on them)
  const int64_t macs = cum[units] * kRows * W * std::max<int64_t>(c, 1);
  const int64_t groups = (macs < (int64_t{1} << 18) || at::in_parallel_region())
                             ? 1
                             : std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), units));
  std::vector<int64_t> gstart(groups + 1, units);
  gstart[0] = 0;
  for (int64_t g = 1, t = 0; g < groups; ++g) {
    while (t < units && cum[t] * groups < cum[units] * g) ++t;
    gstart[g] = t;
  }
  const T* u = nu.u.data();
  const T* ut = nu.ut.data();
  T* pp = part.get();
  const int64_t* st = start.data();
  at::parallel_for(0, groups, 1, [&](int64_t g0, int64_t g1) {
    std::vector<T> rowsum(bs + 2 * W), colsum(bs + 2 * W);
    for (int64_t t = gstart[g0]; t < gstart[g1]; ++t) {
      const int64_t I = unit_i[t], J = unit_j[t];
      const int64_t i0 = st[I], i1 = st[I + 1];
      const int64_t j0 = st[J], j1 = st[J + 1];
      const bool diag = I == J;
      std::fill(colsum.begin(), colsum.end(), T(0));
      T* rs = rowsum.data();
      T* cs = colsum.data();
      if (gauss)
        PITOME_DISPATCH(K::energy_tile<T, true>(u, ut, c, ld, i0, i1, j0, j1, diag, tm, tsigma, rs, cs));
      else
        PITOME_DISPATCH(K::energy_tile<T, false>(u, ut, c, ld, i0, i1, j0, j1, diag, tm, tsigma, rs, cs));
      if (diag) {
        for (int64_t i = i0; i < i1; ++i) pp[I * n + i] = rs[i - i0] + cs[i - i0];
      } else {
        for (int64_t i = i0; i < i1; ++i) pp[J * n + i] = rs[i - i0];
        for (int64_t j = j0; j < j1; ++j) pp[I * n + j] = cs[j - j0];
      }
    }
  });
  // sum of the nb tile partials of every row in double (in J order), then the mean
  const double dn = static_cast<double>(n);
  // reference (gauss): mean(exp(...)) / (sigma * sqrt(2 pi))
  const double denom = gauss ? (1.0 - margin) * std::sqrt(2.0 * M_PI) : 1.0;
  for (int64_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (int64_t J = 0; J < nb; ++J) s += static_cast<double>(pp[J * n + i]);
    out[i] = static_cast<float>(gauss ? (s / dn) / denom : s / dn);
  }
}

template void energy_of_rows<float>(const Normalised<float>&, double, bool, float*);
template void energy_of_rows<double>(const Normalised<double>&, double, bool, float*);

}  // namespace detail

at::Tensor energy(const at::Tensor& metric, double margin, c10::string_view kernel, bool class_token) {
  TORCH_CHECK(metric.dim() == 3, "pitome cpu_energy: metric must be [B, T, C], got ", metric.sizes());
  TORCH_CHECK(metric.device().is_cpu(), "pitome cpu_energy: metric must be a CPU tensor");
  TORCH_CHECK(kernel == "elu" || kernel == "gauss", "pitome cpu_energy: kernel must be 'elu' or 'gauss', got '",
              std::string(kernel), "'");
  const auto st = metric.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16,
              "pitome cpu_energy: metric must be float32/float64/float16/bfloat16, got ", st);
  const int64_t B = metric.size(0), T = metric.size(1), C = metric.size(2);
  const int64_t off = class_token ? 1 : 0;
  TORCH_CHECK(T >= off, "pitome cpu_energy: class_token needs at least one token");
  const int64_t n = T - off;
  at::Tensor out = at::empty({B, n}, metric.options().dtype(at::kFloat));
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
      for (int64_t b = b0; b < b1; ++b) {
        detail::normalise<in_t, T_>(mp + (b * T + off) * C, n, C, nu);
        detail::energy_of_rows<T_>(nu, margin, gauss, op + b * n);
      }
    });
  });
  return out;
}

}  // namespace cpu
}  // namespace pitome
