// Internal, per ISA clone (compiled inside each clone's namespace by isa_clones.h, for
// similarity.h): the vector kernels of the energy and the matching, on the clone's
// vectors (clone_vectors.h). Every function carries the clone's target attribute itself.

// Rows of a register tile: its 2 * kRows accumulators, two column vectors and a broadcast
// fit in 32 registers at 8 rows (AVX-512), in 16 at 4 (AVX2, SSE). A divisor of
// detail::kRows, so that the callers' padding to whole tiles of detail::kRows covers it.
constexpr int kRows = kVectorBytes == 64 ? detail::kRows : detail::kRows / 2;
static_assert(detail::kRows % kRows == 0, "tiles of detail::kRows rows");

#if !defined(__clang__)
// op folded over the lanes of x, halving the width each step (lane i = op(lane i,
// lane i + w) for w = W/2, ..., 1), in registers: through a stack buffer every row paid a
// store-forwarding stall, and the AVX-512 reduce intrinsics draw a false
// -Wmaybe-uninitialized from GCC 12.
template <typename T, int w = V<T>::W / 2, typename Op>
PITOME_KINLINE T lane_fold(vec_t<T> x, Op op) {
  ivec_t<T> upper;
  for (int i = 0; i < V<T>::W; ++i) upper[i] = i < w ? i + w : i;
  x = op(x, __builtin_shuffle(x, upper));
  if constexpr (w > 1)
    return lane_fold<T, w / 2>(x, op);
  else
    return x[0];
}
#endif

// Horizontal sum in lane_fold's fixed pairwise order.
template <typename T>
PITOME_KINLINE T hsum(vec_t<T> v) {
#if defined(__clang__)  // no __builtin_shuffle: the same order through memory
  T buf[V<T>::W];
  __builtin_memcpy(buf, &v, sizeof(v));
  for (int h = V<T>::W / 2; h >= 1; h /= 2)
    for (int i = 0; i < h; ++i) buf[i] += buf[i + h];
  return buf[0];
#else
  return lane_fold<T>(v, [](vec_t<T> a, vec_t<T> b) PITOME_KTARGET { return a + b; });
#endif
}

// exp(x) for x <= ~88, within about 1 ulp; below -87.34 the result is 0. n = round(x / ln2),
// r = x - n ln2 in two steps (Cody-Waite), exp(r) by a degree-6 minimax polynomial on
// [-ln2/2, ln2/2] (relative error 2e-9 before rounding), then times 2^n: one vscalefps on
// AVX-512, else through the exponent bits. 11 vector operations in the AVX-512 clone (the
// ELU energy's epilogue is mostly this). kInRange: the caller guarantees x in
// [-87.33654, 88.37626] (or does not use the lanes outside), where the result is the same
// without the clamps.
template <bool kInRange = false>
PITOME_KINLINE vec_t<float> vexp(vec_t<float> x) {
  typedef vec_t<float> v;
  typedef ivec_t<float> vi;
  const v lo = splat(-87.33654f);
  const v hi = splat(88.37626f);
  const vi under = x < lo;
  const vi over = x > hi;
  v xc = x;
  if constexpr (!kInRange) {
    xc = under ? lo : xc;
    xc = over ? hi : xc;
  }
  // n by the 1.5 * 2^23 trick (round to nearest)
  const v magic = splat(12582912.0f);
  const v n = (xc * 1.44269504088896341f + magic) - magic;
  v r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  v p = splat(1.3843643246e-3f);
  p = p * r + 8.3741638809e-3f;
  p = p * r + 4.1668001562e-2f;
  p = p * r + 1.6666431725e-1f;
  p = p * r + 4.9999994040e-1f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
#if defined(PITOME_KAVX512)
  // the masked form with every lane set: the plain intrinsic's undefined pass-through
  // draws a false -Wmaybe-uninitialized from GCC 12
  v y = (v)_mm512_mask_scalef_ps((__m512)p, 0xffff, (__m512)p, (__m512)n);
#else
  const vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  v scale;
  __builtin_memcpy(&scale, &e, sizeof(scale));
  v y = p * scale;
#endif
  if constexpr (!kInRange) {
    y = under ? splat(0.0f) : y;
    y = over ? splat(std::numeric_limits<float>::infinity()) : y;
  }
  return y;
}

template <bool kInRange = false>
PITOME_KINLINE vec_t<double> vexp(vec_t<double> x) {
  vec_t<double> y;
  for (int i = 0; i < V<double>::W; ++i) y[i] = std::exp(x[i]);
  return y;
}

#if !defined(__clang__)
// One butterfly stage of a W x W transpose held in W row vectors: in every pair of rows
// (i, i + D), a's lanes with bit D set take b's lanes D to the left, and b's lanes without
// it take a's lanes D to the right. Stages D = W/2, ..., 1 transpose the block.
template <typename T, int D>
PITOME_KINLINE void transpose_stages(vec_t<T> (&rows)[V<T>::W]) {
  constexpr int W = V<T>::W;
  ivec_t<T> mask_a, mask_b;
  for (int j = 0; j < W; ++j) {
    mask_a[j] = (j & D) ? W + j - D : j;
    mask_b[j] = (j & D) ? W + j : j + D;
  }
  for (int i = 0; i < W; ++i) {
    if (i & D) continue;
    const vec_t<T> a = rows[i], b = rows[i + D];
    rows[i] = __builtin_shuffle(a, b, mask_a);
    rows[i + D] = __builtin_shuffle(a, b, mask_b);
  }
  if constexpr (D > 1) transpose_stages<T, D / 2>(rows);
}
#endif

#if !defined(__clang__)
// Lane r of the result: the sum of all lanes of rows[r], for W rows at once. Stage D
// adds the pairs (rows[i], rows[i + D]) into rows[i]: the lanes with bit D clear sum rows[i]'s
// lanes l and l + D, the others rows[i + D]'s lanes l - D and l, so that after stage 1 lane
// l of rows[0] holds row l's total. 2W - 2 shuffles and W - 1 adds in a fixed order, where
// one horizontal sum per row took 2 log2(W) shuffles and adds.
template <typename T, int D>
PITOME_KINLINE vec_t<T> sum_rows_stages(vec_t<T> (&rows)[V<T>::W]) {
  constexpr int W = V<T>::W;
  ivec_t<T> first, second;
  for (int l = 0; l < W; ++l) {
    first[l] = (l & D) ? W + l - D : l;
    second[l] = (l & D) ? W + l : l + D;
  }
  for (int i = 0; i < D; ++i)
    rows[i] = __builtin_shuffle(rows[i], rows[i + D], first) + __builtin_shuffle(rows[i], rows[i + D], second);
  if constexpr (D > 1)
    return sum_rows_stages<T, D / 2>(rows);
  else
    return rows[0];
}
#endif

// Lane l of the result: the sum of the lanes of x[l], for W vectors at once, as the
// balanced binary tree over lane positions that adds neighbours first (lanes (0, 1), then
// pairs of those, ...): the tree energy_row_tile's column side builds across the rows of
// its register tiles. Stage D adds the lanes D apart of each pair (x[2m], x[2m + 1]) into
// x[m]: the lanes with bit D clear take x[2m]'s, the others x[2m + 1]'s, so that after the
// last stage lane l of x[0] holds x[l]'s total. 2W - 2 shuffles and W - 1 adds.
template <typename T, int D = 1>
PITOME_KINLINE vec_t<T> lane_trees(vec_t<T> (&x)[V<T>::W]) {
  constexpr int W = V<T>::W;
#if defined(__clang__)  // no two-operand __builtin_shuffle: the same trees through memory
  static_assert(D == 1, "one call");
  T in[W][W], out[W];
  for (int r = 0; r < W; ++r) __builtin_memcpy(in[r], &x[r], sizeof(x[r]));
  for (int r = 0; r < W; ++r) {
    for (int w = 1; w < W; w *= 2)
      for (int l = 0; l < W; l += 2 * w) in[r][l] += in[r][l + w];
    out[r] = in[r][0];
  }
  return load<T>(out);
#else
  ivec_t<T> first, second;
  for (int l = 0; l < W; ++l) {
    first[l] = (l & D) ? W + l - D : l;
    second[l] = (l & D) ? W + l : l + D;
  }
  for (int m = 0; m < W / (2 * D); ++m)
    x[m] = __builtin_shuffle(x[2 * m], x[2 * m + 1], first) + __builtin_shuffle(x[2 * m], x[2 * m + 1], second);
  if constexpr (2 * D < W)
    return lane_trees<T, 2 * D>(x);
  else
    return x[0];
#endif
}

// The balanced binary tree sum of x[0, N) (N a power of two), neighbours first.
template <int N, typename T>
PITOME_KINLINE vec_t<T> tree_sum(const vec_t<T>* x) {
  if constexpr (N == 1)
    return x[0];
  else
    return tree_sum<N / 2, T>(x) + tree_sum<N / 2, T>(x + N / 2);
}

template <typename T>
PITOME_KINLINE vec_t<T> vsqrt(vec_t<T> x) {
#if defined(PITOME_KAVX512)
  // the masked forms with every lane set, as in vexp (GCC 12's false warning)
  if constexpr (std::is_same_v<T, float>)
    return (vec_t<T>)_mm512_mask_sqrt_ps((__m512)x, 0xffff, (__m512)x);
  else
    return (vec_t<T>)_mm512_mask_sqrt_pd((__m512d)x, 0xff, (__m512d)x);
#else
  for (int l = 0; l < V<T>::W; ++l) x[l] = std::sqrt(x[l]);
  return x;
#endif
}

// The squares of x[0, c) summed over vector lanes (the lanes still to be added up): two
// chains over alternate vectors, then added.
template <typename T>
PITOME_KINLINE vec_t<T> row_lane_squares(const T* x, int64_t c) {
  typedef vec_t<T> v;
  constexpr int W = V<T>::W;
  v acc0 = v{}, acc1 = v{};
  int64_t k = 0;
  for (; k + 2 * W <= c; k += 2 * W) {
    const v x0 = load<T>(x + k), x1 = load<T>(x + k + W);
    acc0 += x0 * x0;
    acc1 += x1 * x1;
  }
  if (k + W <= c) {
    const v x0 = load<T>(x + k);
    acc0 += x0 * x0;
  }
  return acc0 + acc1;
}

// The squares of the features past x's last whole vector, in order.
template <typename T>
PITOME_KINLINE T row_tail_squares(const T* x, int64_t c) {
  constexpr int W = V<T>::W;
  T ss = T(0);
  for (int64_t k = c / W * W; k < c; ++k) ss += x[k] * x[k];
  return ss;
}

// max(||x||, 1e-12) for the row x[0, c) (NaN stays NaN), its squares summed as
// normalise_rows' vector path sums them: lane sums in lane_fold's order, then the tail.
template <typename T>
PITOME_KINLINE T row_norm(const T* x, int64_t c) {
  const T tiny = static_cast<T>(1e-12);
  T norm = std::sqrt(hsum<T>(row_lane_squares<T>(x, c)) + row_tail_squares<T>(x, c));
  if (!(norm >= tiny)) norm = (norm != norm) ? norm : tiny;
  return norm;
}

// x / norm rounded to nearest, as the reference divides (x: a T or a vector of them), from
// inv = 1 / norm (correctly rounded). With FMA, x * inv is within an ulp of the quotient, the remainder
// x - q * norm is exact (one FMA) and q + remainder * inv rounds to the nearest quotient
// (Markstein's correction), at a fraction of a vector division's cost; this needs a norm
// whose reciprocal is a normal number, and elements whose remainder does not underflow
// (|x| above about 2^-100 in float32). Otherwise, and without FMA, it divides. Rounding
// exactly like the reference keeps exact ties exact: a one-channel row becomes exactly +-1.
// `reciprocal` is by_reciprocal(norm), which callers hoist out of their loops.
template <typename T>
PITOME_KINLINE bool by_reciprocal(T norm) {
#if defined(PITOME_KAVX512) || defined(PITOME_KAVX2)
  return norm <= T(1ull << 60) * T(1ull << 40);  // 2^100; false for NaN and inf
#else
  return false;
#endif
}

template <typename T, typename X>
PITOME_KINLINE X unit_values(X x, T norm, T inv, bool reciprocal) {
  if (!reciprocal) return x / norm;
  const X q = x * inv;
  const X remainder = x - q * norm;  // contracted into one FMA (-ffp-contract=fast)
  return q + remainder * inv;
}

// uT[layout.offset(i) + k * ld] = x_ik / max(||x_i||, 1e-12) (unit_values) for the rows x_i
// (i < n) at m + rows[i] * stride (m + i * stride when rows is null): the normalised rows,
// transposed. The sum of squares is
// accumulated in T over vector lanes, like torch's norm (float for
// float32/bfloat16/float16 inputs). Blocks of W full rows (from 0 and from layout.first,
// so that no block spans two panels) are scaled and transposed in registers (W x W at a
// time); the edges (rows left over, c % W features) go one element at a time. Inputs
// other than T are converted into `converted` ([n, c], row stride c) first (exactly).
template <typename in_t, typename T>
PITOME_KTARGET void normalise_rows(const in_t* m, const int64_t* rows, int64_t n, int64_t c, int64_t stride, T* ut,
                                   Panels layout, T* converted) {
  const int64_t ld = layout.ld;
  auto row = [&](int64_t i) { return m + (rows != nullptr ? rows[i] : i) * stride; };
  typedef vec_t<T> v;
  constexpr int W = V<T>::W;
  constexpr int64_t kChunk = 64;  // rows per phase (a multiple of W), so that the per-row latencies overlap
  T norms[kChunk], inv_norms[kChunk];
  auto source = [&](int64_t i) -> const T* {
    if constexpr (std::is_same_v<in_t, T>)
      return row(i);
    else
      return converted + i * c;
  };
  // the squares of row i summed over vector lanes (the lanes still to be added up)
  auto convert = [&](int64_t i) {
    if constexpr (!std::is_same_v<in_t, T>)
      for (int64_t k = 0; k < c; ++k) converted[i * c + k] = static_cast<T>(row(i)[k]);
  };
  auto lane_squares = [&](int64_t i) PITOME_KTARGET {
    convert(i);
    return row_lane_squares<T>(source(i), c);
  };
  auto tail_squares = [&](int64_t i) PITOME_KTARGET { return row_tail_squares<T>(source(i), c); };
  const T tiny = static_cast<T>(1e-12);
  const int64_t first = std::min(n, layout.first);
  for (int64_t i0 = 0, i1 = 0; i0 < n; i0 = i1) {
    // chunks end at `first`, and W-row blocks start at a chunk's start
    i1 = std::min(i0 < first ? first : n, i0 + kChunk);
    int64_t i = i0;
#if !defined(__clang__)
    // W rows at a time: their lane sums reduced together (sum_rows_stages), the square
    // root and reciprocal as vectors
    // (a last block of fewer rows is padded with zero rows: the scalar path per row cost
    // as much as a whole block)
    for (; i < i1; i += W) {
      const int64_t nr = std::min<int64_t>(W, i1 - i);
      v rows[W];
      for (int r = 0; r < W; ++r) rows[r] = r < nr ? lane_squares(i + r) : v{};
      v ss = sum_rows_stages<T, W / 2>(rows);
      if (c % W != 0)
        for (int r = 0; r < nr; ++r) ss[r] += tail_squares(i + r);
      v norm = vsqrt<T>(ss);
      norm = (norm >= tiny) ? norm : ((norm != norm) ? norm : splat<T>(tiny));
      store<T>(norms + (i - i0), norm);
      store<T>(inv_norms + (i - i0), T(1) / norm);
    }
#endif
    for (; i < i1; ++i) {
      convert(i);
      norms[i - i0] = row_norm<T>(source(i), c);
      inv_norms[i - i0] = T(1) / norms[i - i0];
    }
    for (int64_t b0 = i0; b0 < i1; b0 += W) {
      const int64_t b1 = std::min(i1, b0 + W);
      int64_t c_done = 0;
#if !defined(__clang__)
      {
        // a block of fewer rows writes zeros into the panel's padding columns after them
        // (b0 is a multiple of W from its panel's start, and panels are 2W-aligned)
        const int64_t nr = b1 - b0;
        bool reciprocal = true;
        for (int64_t i = b0; i < b1; ++i) reciprocal &= by_reciprocal(norms[i - i0]);
        c_done = c / W * W;
        T* const col = ut + layout.offset(b0);
        for (int64_t k0 = 0; k0 < c_done; k0 += W) {
          v blk[W];
          for (int r = 0; r < W; ++r)
            blk[r] = r < nr ? unit_values(load<T>(source(b0 + r) + k0), norms[b0 + r - i0], inv_norms[b0 + r - i0],
                                          reciprocal)
                            : v{};
          transpose_stages<T, W / 2>(blk);
          T* dst = col + k0 * ld;
          for (int r = 0; r < W; ++r) store<T>(dst + r * ld, blk[r]);
        }
      }
#endif
      for (int64_t i = b0; i < b1; ++i) {
        const T* x = source(i);
        T* const col = ut + layout.offset(i);
        const bool reciprocal = by_reciprocal(norms[i - i0]);
        for (int64_t k = c_done; k < c; ++k) col[k * ld] = unit_values(x[k], norms[i - i0], inv_norms[i - i0], reciprocal);
      }
    }
  }
}

// out[i * c + k] = x_ik / max(||x_i||, 1e-12) (unit_values) for the rows x_i of normalise_rows,
// row-major: bitwise the values normalise_rows writes (the same sums in the same order), for
// the broadcast side of a product, which needs no transpose.
template <typename in_t, typename T>
PITOME_KTARGET void normalise_rows_major(const in_t* m, const int64_t* rows, int64_t n, int64_t c, int64_t stride,
                                         T* out) {
  constexpr int W = V<T>::W;
  for (int64_t i = 0; i < n; ++i) {
    const in_t* row = m + (rows != nullptr ? rows[i] : i) * stride;
    T* o = out + i * c;
    const T* x;
    if constexpr (std::is_same_v<in_t, T>) {
      x = row;
    } else {
      for (int64_t k = 0; k < c; ++k) o[k] = static_cast<T>(row[k]);
      x = o;
    }
    const T norm = row_norm<T>(x, c), inv = T(1) / norm;
    const bool reciprocal = by_reciprocal(norm);
    int64_t k = 0;
    if (reciprocal)  // two loops, so that each is vectorised without a branch
      for (; k + W <= c; k += W) store<T>(o + k, unit_values(load<T>(x + k), norm, inv, true));
    else
      for (; k + W <= c; k += W) store<T>(o + k, load<T>(x + k) / norm);
    for (; k < c; ++k) o[k] = unit_values(x[k], norm, inv, reciprocal);
  }
}

// acc[r][h] = dot products of the R (kRows, or half that for a short last tile) broadcast
// columns of A, element (k, r) at ap[k * lda + r] (uT columns) or, with kARows, at
// ap[r * lda + k] (normalised rows), with the columns bp[k * ldb + h * W + lane], for
// h < (two ? 2 : 1): one register tile, accumulated in k order (both the energy and the
// matching compute S_ij with exactly this chain).
template <int R, typename T, bool kARows = false>
PITOME_KINLINE void dot_tile(const T* ap, int64_t lda, const T* bp, int64_t ldb, int64_t c, bool two,
                             vec_t<T> (&acc)[R][2]) {
  typedef vec_t<T> v;
  constexpr int W = V<T>::W;
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = v{};
  if (two) {
    for (int64_t k = 0; k < c; ++k) {
      const v b0 = load<T>(bp + k * ldb);
      const v b1 = load<T>(bp + k * ldb + W);
      for (int r = 0; r < R; ++r) {
        const T ar = kARows ? ap[r * lda + k] : ap[k * lda + r];
        acc[r][0] += ar * b0;
        acc[r][1] += ar * b1;
      }
    }
  } else {
    for (int64_t k = 0; k < c; ++k) {
      const v b0 = load<T>(bp + k * ldb);
      for (int r = 0; r < R; ++r) acc[r][0] += (kARows ? ap[r * lda + k] : ap[k * lda + r]) * b0;
    }
  }
}

// One register tile's running argmax (the R rows of ua at ap, broadcast) over the nb
// columns of ubT; see argmax_kernel.
template <int R, typename T>
PITOME_KINLINE void argmax_tile(const T* ap, int64_t lda, const T* ubT, int64_t ldb, int64_t c, int64_t nb,
                                int64_t masked, int rows, T* best, int32_t* dst) {
  typedef vec_t<T> v;
  typedef ivec_t<T> vi;
  constexpr int W = V<T>::W;
  const v ninf = splat<T>(-std::numeric_limits<T>::infinity());
  v lane;
  for (int l = 0; l < W; ++l) lane[l] = static_cast<T>(l);
  const v nbv = splat<T>(static_cast<T>(nb));
  const v maskv = splat<T>(static_cast<T>(masked));
  v bestv[R], bidx[R];
  for (int r = 0; r < R; ++r) {
    bestv[r] = ninf;
    bidx[r] = v{};
  }
  for (int64_t j = 0; j < nb; j += 2 * W) {
    v acc[R][2];
    dot_tile<R, T, true>(ap, lda, ubT + j, ldb, c, j + W < nb, acc);
    for (int h = 0; h < 2; ++h) {
      const v idx = lane + static_cast<T>(j + h * W);
      const vi bad = (idx >= nbv) | (idx == maskv);
      for (int r = 0; r < R; ++r) {
        const v val = bad ? ninf : acc[r][h];
        const vi upd = (val > bestv[r]) | ((val != val) & (bestv[r] == bestv[r]));
        bestv[r] = upd ? val : bestv[r];
        bidx[r] = upd ? idx : bidx[r];
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
#if defined(PITOME_KAVX512) && !defined(__clang__)  // lane_fold is GCC-only
    if constexpr (std::is_same_v<T, float>) {
      // lane_argmax's rule in mask registers: NaN lanes if any, else the lanes equal to the
      // maximum; of those, the lowest column
      const __m512 vals = (__m512)bestv[r];
      const __mmask16 nan = _mm512_cmp_ps_mask(vals, vals, _CMP_UNORD_Q);
      const T mx = lane_fold<T>(bestv[r], [](v a, v b) PITOME_KTARGET { return a > b ? a : b; });  // used only without NaN lanes
      const __mmask16 hit = nan ? nan : _mm512_cmp_ps_mask(vals, _mm512_set1_ps(mx), _CMP_EQ_OQ);
      best[r] = nan ? std::numeric_limits<T>::quiet_NaN() : mx;
      const v cols = (v)_mm512_mask_blend_ps(hit, _mm512_set1_ps(std::numeric_limits<T>::infinity()), (__m512)bidx[r]);
      dst[r] = static_cast<int32_t>(lane_fold<T>(cols, [](v a, v b) PITOME_KTARGET { return a < b ? a : b; }));
      continue;
    }
#endif
    T vals[W], idxs[W];
    store<T>(vals, bestv[r]);
    store<T>(idxs, bidx[r]);
    lane_argmax<T, W>(vals, idxs, best[r], dst[r]);
  }
}

// For every row a in [0, na) of ua [na rounded up to kRows, lda] (normalised rows, from
// normalise_rows_major; the padding rows are read, their results dropped): best[a] =
// max_b <u_a, u_b> and dst[a] = the first b reaching it, over the nb columns of ubT
// [c, ldb] (padding zero). Column `masked` (or -1) counts as -inf. Column indices are
// tracked as T (exact below 2^24) so that every lane operation stays on one vector type.
template <typename T>
PITOME_KTARGET void argmax_kernel(const T* ua, int64_t lda, int64_t na, const T* ubT, int64_t ldb, int64_t nb,
                                  int64_t c, int64_t masked, T* best, int32_t* dst) {
  for (int64_t i = 0; i < na; i += kRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kRows, na - i));
    if (rows <= kRows / 2)  // a short last tile: half the FMAs
      argmax_tile<kRows / 2, T>(ua + i * lda, lda, ubT, ldb, c, nb, masked, rows, best + i, dst + i);
    else
      argmax_tile<kRows, T>(ua + i * lda, lda, ubT, ldb, c, nb, masked, rows, best + i, dst + i);
  }
}

// phi(S) of a vector of similarities: ELU of S - margin, or the Gaussian exp(-(1-S)^2/2s^2).
// kSmallMargin: margin <= kSmallMarginLimit, so the ELU takes exp only of S - margin in
// [-1 - kSmallMarginLimit, 0] (|S| <= 1 + rounding), where vexp needs no clamps.
template <typename T, bool kGauss, bool kSmallMargin>
PITOME_KINLINE vec_t<T> kernel_value(vec_t<T> s, T margin, T inv_sigma) {
  if (kGauss) {
    // times the reciprocal (within an ulp of the reference's division): a vector division
    // per 16 values was the Gaussian's extra cost over the ELU
    const vec_t<T> t = (T(1) - s) * inv_sigma;
    return vexp(T(-0.5) * (t * t));
  } else {
    const vec_t<T> z = s - margin;
    const vec_t<T> e = vexp<kSmallMargin>(z) - T(1);
    return z > T(0) ? z : e;
  }
}

// Columns of an energy chunk (see energy_tile): a vector, or the two of a register tile's
// step where a vector is narrower than a register tile (so that a tile's rows lie in one
// chunk). Always a multiple of the register tile's rows.
template <typename T>
constexpr int energy_chunk() {
  return V<T>::W > kRows ? V<T>::W : kRows;
}

// Rows [i, i + nrows) (nrows <= R) of an energy tile (see energy_tile).
template <int R, typename T, bool kGauss, bool kSmallMargin>
PITOME_KINLINE void energy_row_tile(const T* a, const T* b, int64_t c, int64_t ld, int64_t i, int nrows, int64_t jb,
                                    int64_t i0, int64_t i1, int64_t j0, int64_t j1, bool diag, T margin, T inv_sigma,
                                    T* rowsum, T* colsum, T* colhalf) {
  typedef vec_t<T> v;
  typedef ivec_t<T> vi;
  constexpr int W = V<T>::W;
  constexpr int Z = energy_chunk<T>();
  static_assert(Z == W || Z == 2 * W, "a chunk is one step's vector or both");
  static_assert(Z == kRows || Z == 2 * kRows, "a chunk is one register tile's rows or two");
  // the rows' running sums, W rows a vector (lanes past R unused)
  constexpr int NS = R > W ? R / W : 1;
  v lane;
  for (int l = 0; l < W; ++l) lane[l] = static_cast<T>(l);
  const v j1v = splat<T>(static_cast<T>(j1));
  // In a diagonal tile the rows continue the sums the column side built over the chunks
  // before theirs (complete: those chunks' register tiles came first).
  v sum[NS];
  for (int g = 0; g < NS; ++g) sum[g] = diag ? load<T>(colsum + (i - i0) + g * W) : v{};
  // Which half of its chunk this register tile is, when a chunk spans two (the first half
  // is parked in colhalf until the second adds it), and whether the block ends here.
  const bool first_half = Z == 2 * kRows && (i - i0) / kRows % 2 == 0;
  const bool last = i + kRows >= i1;
  for (int64_t j = jb; j < j1; j += 2 * W) {
    const int nv = (j + W < j1) ? 2 : 1;
    v acc[R][2];
    dot_tile<R, T>(a + (i - i0), ld, b + (j - j0), ld, c, nv == 2, acc);
    // phi of the tile, zero past column j1: a zero leaf leaves every tree sum as it is
    // (phi is never -0)
    v val[2][R];
    for (int h = 0; h < 2; ++h) {
      const int64_t jj = j + h * W;
      const vi bad = (lane + static_cast<T>(jj)) >= j1v;
      for (int r = 0; r < R; ++r) {
        const v x = kernel_value<T, kGauss, kSmallMargin>(acc[r][h], margin, inv_sigma);
        val[h][r] = jj + W > j1 ? (bad ? v{} : x) : x;
      }
    }
    // Column side: each chunk's tree over the tile's rows, added to the columns' sums. The
    // chunk of a diagonal tile's rows (its first step) is left to the row side.
    const bool own_chunk = diag && j == jb;
    for (int h = 0; h < nv; ++h) {
      if (own_chunk && (Z == 2 * W || h == 0)) continue;
      v tree;
      if (nrows < R) {  // zero leaves for the rows past the block (indices fixed: no memset)
        v rows[R];
        for (int r = 0; r < R; ++r) rows[r] = r < nrows ? val[h][r] : v{};
        tree = tree_sum<R, T>(rows);
      } else {
        tree = tree_sum<R, T>(val[h]);
      }
      T* cs = colsum + (j + h * W - j0);
      T* half = colhalf + (j + h * W - j0);
      if (first_half && !last)
        store<T>(half, tree);
      else if (Z == 2 * kRows && !first_half)
        store<T>(cs, load<T>(cs) + (load<T>(half) + tree));
      else
        store<T>(cs, load<T>(cs) + tree);
    }
    // Row side: each chunk's tree over its columns (lane_trees), added to the rows' sums.
    if constexpr (Z == 2 * W) {  // one chunk per step, R a multiple of W
      for (int g = 0; g < NS; ++g) {
        v x0[W], x1[W];
        for (int l = 0; l < W; ++l) {
          x0[l] = val[0][g * W + l];
          x1[l] = val[1][g * W + l];
        }
        sum[g] += lane_trees<T>(x0) + lane_trees<T>(x1);
      }
    } else if constexpr (R == W) {  // one chunk per vector
      v x0[W], x1[W];
      for (int l = 0; l < W; ++l) {
        x0[l] = val[0][l];
        x1[l] = val[1][l];
      }
      sum[0] = (sum[0] + lane_trees<T>(x0)) + lane_trees<T>(x1);
    } else {  // one chunk per vector, both vectors' rows in one call: lanes [0, R), [R, 2R)
      static_assert(2 * R <= W, "R divides W");
      v x[W];
      for (int l = 0; l < W; ++l) x[l] = l < 2 * R ? val[l / R][l % R] : v{};
      const v t = lane_trees<T>(x);
      ivec_t<T> down;
      for (int l = 0; l < W; ++l) down[l] = (l + R) % W;
#if defined(__clang__)
      v t1;
      for (int l = 0; l < W; ++l) t1[l] = t[down[l]];
#else
      const v t1 = __builtin_shuffle(t, down);
#endif
      sum[0] = (sum[0] + t) + t1;
    }
  }
  // whole vectors: lanes past nrows land on rows later tiles write (or past the block)
  for (int g = 0; g < NS; ++g) store<T>(rowsum + (i - i0) + g * W, sum[g]);
}

// Tile (rows [i0, i1), columns [j0, j1)) of phi(u u^T): row sums into rowsum[i - i0],
// column sums added into colsum[j - j0]. Every row's sum over a block of columns is one
// function of the row's values, wherever the row sits (so identical rows get identical
// bits): the chain, in column order, of its chunks' sums (energy_chunk() columns each, the
// last padded with zeros), each a balanced binary tree over the chunk's positions. The
// row side builds a chunk's tree across vector lanes (lane_trees), the column side across
// the rows of its register tiles (tree_sum), two tiles' halves joined through colhalf
// where a chunk spans two register tiles. Off-diagonal tiles credit every element to its
// row and its column. A diagonal tile (diag: i0 == j0, i1 == j1) computes, for the rows of
// each chunk, the chunks from their own on: their own chunk (both triangles) is credited
// to the rows alone, the later ones to rows and columns; a row's sum starts from what the
// column side built over the chunks before its own. Column i0 of uT is at a, column j0 at
// b, both in panels of ld columns (feature k at k * ld); the panels are padded (with zeros)
// to 2 vectors, so tiles never read out of bounds; column blocks are full (j1 - j0 a
// multiple of 2 vectors) except in a diagonal tile. rowsum, colsum and colhalf have room
// for 2 vectors past the tile.
template <typename T, bool kGauss, bool kSmallMargin>
PITOME_KTARGET void energy_tile(const T* a, const T* b, int64_t c, int64_t ld, int64_t i0, int64_t i1, int64_t j0,
                                int64_t j1, bool diag, T margin, T inv_sigma, T* rowsum, T* colsum, T* colhalf) {
  constexpr int Z = energy_chunk<T>();
  for (int64_t i = i0; i < i1; i += kRows) {
    const int nrows = static_cast<int>(std::min<int64_t>(kRows, i1 - i));
    const int64_t jb = diag ? j0 + (i - i0) / Z * Z : j0;
    if (nrows <= kRows / 2)  // a short row block (the remainder block): half the FMAs
      energy_row_tile<kRows / 2, T, kGauss, kSmallMargin>(a, b, c, ld, i, nrows, jb, i0, i1, j0, j1, diag, margin,
                                                          inv_sigma, rowsum, colsum, colhalf);
    else
      energy_row_tile<kRows, T, kGauss, kSmallMargin>(a, b, c, ld, i, nrows, jb, i0, i1, j0, j1, diag, margin,
                                                      inv_sigma, rowsum, colsum, colhalf);
  }
}

// out[i] = float((sum over J < nb of part[J * ld + i], in J order, in double) / dn / denom)
// for i in [i0, i1): the energies from the tiles' partial sums. Eight rows at a time in
// vector lanes (each lane keeps its row's J order, so the result is the scalar loop's to the
// bit): as a scalar loop every row was a chain of nb dependent double adds.
template <typename T>
PITOME_KTARGET void sum_partials(const T* part, int64_t ld, int64_t nb, int64_t i0, int64_t i1, double dn,
                                 double denom, float* out) {
  typedef vec_t<double> vd;
  constexpr int W = V<double>::W;
  typedef T in_w __attribute__((vector_size(W * sizeof(T))));
  typedef float out_w __attribute__((vector_size(W * sizeof(float))));
  int64_t i = i0;
  for (; i + W <= i1; i += W) {
    vd s = vd{};
    for (int64_t J = 0; J < nb; ++J) {
      in_w x;
      __builtin_memcpy(&x, part + J * ld + i, sizeof(x));
      s += __builtin_convertvector(x, vd);
    }
    const out_w e = __builtin_convertvector(s / dn / denom, out_w);
    __builtin_memcpy(out + i, &e, sizeof(e));
  }
  for (; i < i1; ++i) {
    double s = 0.0;
    for (int64_t J = 0; J < nb; ++J) s += static_cast<double>(part[J * ld + i]);
    out[i] = static_cast<float>(s / dn / denom);
  }
}
