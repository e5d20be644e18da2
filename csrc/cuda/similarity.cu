// Unit rows and the two similarity kernels (energy and matching), in tiles of 32 x 32
// similarities held in shared memory, never a T x T buffer. Every similarity is one FMA
// chain over the features in order and every row's energy is summed in the same order
// wherever the row sits, so copies of a token get the same bits (exact ties stay exact).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <cmath>
#include <limits>

#include "common.cuh"
#include "kernels.h"
#include "rows.cuh"

namespace pitome {
namespace cuda {
namespace {

constexpr int kTile = 32;        // rows and columns of a similarity tile
constexpr int kChunk = 32;       // features per shared-memory step
constexpr int kWarps = 8;        // per block: each warp kTile / kWarps rows of the tile
constexpr int kRowsPerWarp = kTile / kWarps;

// u[b, i, :] = m[b, i, :] / max(||m[b, i, :]||, 1e-12), one warp per row
template <typename scalar_t>
__global__ void normalize_kernel(const scalar_t* __restrict__ m, acc_t<scalar_t>* __restrict__ u, int64_t rows,
                                 int64_t C) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / kWarp;
  if (i >= rows) return;
  normalize_row(m + i * C, u + i * C, C, threadIdx.x % kWarp);
}

// Loads rows idx(r) (r < kTile) of u, features [c0, c0 + kChunk), into tile (zero past the end).
template <typename acc, typename Index>
__device__ __forceinline__ void load_tile(acc (*tile)[kChunk + 1], const acc* u, int64_t C, int64_t c0,
                                          Index idx) {
  for (int e = threadIdx.x; e < kTile * kChunk; e += kWarps * kWarp) {
    const int r = e / kChunk, c = e % kChunk;
    const int64_t row = idx(r);
    tile[r][c] = (row >= 0 && c0 + c < C) ? u[row * C + c0 + c] : acc(0);
  }
}

// dots[q] = <u[row(warp * kRowsPerWarp + q)], u[col(lane)]> for this thread's rows of one
// 32 x 32 tile: the features in chunks through shared memory, one FMA chain in order.
template <typename acc, typename RowIndex, typename ColIndex>
__device__ __forceinline__ void tile_dots(acc (*rows)[kChunk + 1], acc (*cols)[kChunk + 1], const acc* u,
                                          int64_t C, RowIndex row, ColIndex col, acc (&dots)[kRowsPerWarp]) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  for (int q = 0; q < kRowsPerWarp; ++q) dots[q] = 0;
  for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
    load_tile(rows, u, C, c0, row);
    load_tile(cols, u, C, c0, col);
    __syncthreads();
    const int steps = static_cast<int>(C - c0 < kChunk ? C - c0 : kChunk);
    for (int c = 0; c < steps; ++c) {
      const acc v = cols[lane][c];
      for (int q = 0; q < kRowsPerWarp; ++q) dots[q] = fma(rows[warp * kRowsPerWarp + q][c], v, dots[q]);
    }
    __syncthreads();
  }
}

// e[b, i] = mean_j phi(<u_i, u_j>): lane l of a warp takes columns j = l (mod 32) of every
// column tile, in order, and the lanes' sums are added in one fixed butterfly.
template <typename acc, bool kGauss>
__global__ void energy_kernel(const acc* __restrict__ u, float* __restrict__ e, int64_t N, int64_t C, acc margin,
                              acc sigma, acc scale) {
  __shared__ acc rows[kTile][kChunk + 1];
  __shared__ acc cols[kTile][kChunk + 1];
  const int64_t b = blockIdx.y, row0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const acc* ub = u + b * N * C;
  acc sums[kRowsPerWarp] = {};
  for (int64_t col0 = 0; col0 < N; col0 += kTile) {
    acc dots[kRowsPerWarp];
    tile_dots(rows, cols, ub, C, [&](int r) { return row0 + r < N ? row0 + r : int64_t(-1); },
              [&](int r) { return col0 + r < N ? col0 + r : int64_t(-1); }, dots);
    if (col0 + lane < N)
      for (int q = 0; q < kRowsPerWarp; ++q) sums[q] += energy_term<acc, kGauss>(dots[q], margin, sigma);
  }
  for (int q = 0; q < kRowsPerWarp; ++q) {
    const float energy = energy_of_row<acc, kGauss>(sums[q], N, scale);
    const int64_t row = row0 + warp * kRowsPerWarp + q;
    if (lane == 0 && row < N) e[b * N + row] = energy;
  }
}

// best[b, p] / dst[b, p] = the first maximum over q of <u[a[b, p]], u[bset[b, q]]>
template <typename acc>
__global__ void match_kernel(const acc* __restrict__ u, const int64_t* __restrict__ a, int64_t stride_ab,
                             const int64_t* __restrict__ bset, int64_t stride_bb, acc* __restrict__ best_out,
                             int64_t* __restrict__ dst_out, int64_t N, int64_t NA, int64_t NB, int64_t C,
                             bool mask_row0, bool mask_col0) {
  __shared__ acc rows[kTile][kChunk + 1];
  __shared__ acc cols[kTile][kChunk + 1];
  const int64_t b = blockIdx.y, row0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const acc* ub = u + b * N * C;
  const int64_t* ab = a + b * stride_ab;
  const int64_t* bb = bset + b * stride_bb;
  const acc ninf = -std::numeric_limits<acc>::infinity();
  acc best[kRowsPerWarp];
  int64_t at[kRowsPerWarp];
  for (int q = 0; q < kRowsPerWarp; ++q) best[q] = ninf, at[q] = NB;
  for (int64_t col0 = 0; col0 < NB; col0 += kTile) {
    acc dots[kRowsPerWarp];
    tile_dots(rows, cols, ub, C, [&](int r) { return row0 + r < NA ? ab[row0 + r] : int64_t(-1); },
              [&](int r) { return col0 + r < NB ? bb[col0 + r] : int64_t(-1); }, dots);
    const int64_t q_col = col0 + lane;
    if (q_col < NB) {
      for (int q = 0; q < kRowsPerWarp; ++q) {
        const int64_t p = row0 + warp * kRowsPerWarp + q;
        const acc s = (mask_row0 && p == 0) || (mask_col0 && q_col == 0) ? ninf : dots[q];
        if (at[q] == NB || beats(s, q_col, best[q], at[q])) best[q] = s, at[q] = q_col;
      }
    }
  }
  for (int q = 0; q < kRowsPerWarp; ++q) {
    acc v = best[q];
    int64_t i = at[q];
    warp_argmax(v, i, NB);
    const int64_t p = row0 + warp * kRowsPerWarp + q;
    if (lane == 0 && p < NA) {
      best_out[b * NA + p] = v;
      dst_out[b * NA + p] = i;
    }
  }
}

}  // namespace

at::Tensor normalize(const at::Tensor& metric_in) {
  TORCH_CHECK(on_device(metric_in), "pitome::cuda: metric must be a CUDA tensor");
  const DeviceGuard guard(metric_in.device());
  const auto metric = metric_in.contiguous();
  const int64_t B = metric.size(0), N = metric.size(1), C = metric.size(2);
  auto u = at::empty({B, N, C}, metric.options().dtype(compute_type(metric)));
  if (B * N == 0) return u;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, metric.scalar_type(), "pitome_cuda_normalize", [&] {
    launch(normalize_kernel<scalar_t>, blocks_for(B * N, kWarps), kWarps * kWarp,
        metric.data_ptr<scalar_t>(), u.data_ptr<acc_t<scalar_t>>(), B * N, C);
  });
  return u;
}

at::Tensor energy_from_unit(const at::Tensor& u, double margin, bool gauss) {
  const int64_t B = u.size(0), N = u.size(1), C = u.size(2);
  auto e = at::empty({B, N}, u.options().dtype(at::kFloat));
  if (B * N == 0) return e;
  const dim3 grid(blocks_for(N, kTile), B);
  const double sigma = 1.0 - margin, scale = sigma * std::sqrt(2.0 * 3.14159265358979323846);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "pitome_cuda_energy", [&] {
    if (gauss)
      launch(energy_kernel<scalar_t, true>, grid, kWarps * kWarp,
        u.data_ptr<scalar_t>(), e.data_ptr<float>(), N, C, scalar_t(margin), scalar_t(sigma), scalar_t(scale));
    else
      launch(energy_kernel<scalar_t, false>, grid, kWarps * kWarp,
        u.data_ptr<scalar_t>(), e.data_ptr<float>(), N, C, scalar_t(margin), scalar_t(sigma), scalar_t(scale));
  });
  return e;
}

std::tuple<at::Tensor, at::Tensor> match(const at::Tensor& u, const at::Tensor& a_in, const at::Tensor& b_in,
                                         bool mask_row0, bool mask_col0) {
  const int64_t B = u.size(0), N = u.size(1), C = u.size(2);
  const auto a = a_in.to(at::kLong).expand({B, a_in.size(1)}).contiguous();
  const auto bset = b_in.to(at::kLong).expand({B, b_in.size(1)}).contiguous();
  const int64_t NA = a.size(1), NB = bset.size(1);
  auto best = at::empty({B, NA}, u.options());
  auto dst = at::zeros({B, NA}, u.options().dtype(at::kLong));
  if (B * NA == 0 || NB == 0) return {best.fill_(-std::numeric_limits<double>::infinity()), dst};
  const dim3 grid(blocks_for(NA, kTile), B);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "pitome_cuda_match", [&] {
    launch(match_kernel<scalar_t>, grid, kWarps * kWarp,
        u.data_ptr<scalar_t>(), a.data_ptr<int64_t>(), NA, bset.data_ptr<int64_t>(), NB, best.data_ptr<scalar_t>(), dst.data_ptr<int64_t>(), N, NA, NB, C,
        mask_row0, mask_col0);
  });
  return {best, dst};
}

at::Tensor energy(const at::Tensor& metric, double margin, c10::string_view kernel, bool class_token) {
  TORCH_CHECK_VALUE(kernel == "elu" || kernel == "gauss", "kernel must be 'elu' or 'gauss', got '",
                    std::string(kernel), "'");
  const auto m = class_token ? metric.slice(1, 1) : metric;
  return energy_from_unit(normalize(m), margin, kernel == "gauss");
}

}  // namespace cuda
}  // namespace pitome
