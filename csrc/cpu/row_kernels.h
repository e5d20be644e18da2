// Internal, per ISA clone (compiled inside each clone's namespace by isa_clones.h, for
// rows.h): the merges' row kernels on the clone's own vectors, which copy and sum rows
// faster than memcpy and the generic loops of the merges.

// dst[0, n) = src[0, n), in bytes (no overlap): four vectors a step, then one, then the
// tail. For rows of a few KB copied in random order (a ViT's tokens), memcpy's size
// dispatch costs more than this loop.
PITOME_KTARGET __attribute__((noinline)) inline void copy_bytes(void* dst, const void* src, int64_t n) {
  typedef char bytes_t __attribute__((vector_size(kVectorBytes)));
  constexpr int64_t B = kVectorBytes;
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  int64_t i = 0;
  for (; i + 4 * B <= n; i += 4 * B) {
    bytes_t a, b, c, e;
    __builtin_memcpy(&a, s + i, B);
    __builtin_memcpy(&b, s + i + B, B);
    __builtin_memcpy(&c, s + i + 2 * B, B);
    __builtin_memcpy(&e, s + i + 3 * B, B);
    __builtin_memcpy(d + i, &a, B);
    __builtin_memcpy(d + i + B, &b, B);
    __builtin_memcpy(d + i + 2 * B, &c, B);
    __builtin_memcpy(d + i + 3 * B, &e, B);
  }
  for (; i + B <= n; i += B) {
    bytes_t a;
    __builtin_memcpy(&a, s + i, B);
    __builtin_memcpy(d + i, &a, B);
  }
  if (i < n) {
#if defined(PITOME_KAVX512)
    const __mmask64 m = _bzhi_u64(~0ULL, static_cast<unsigned>(n - i));
    _mm512_mask_storeu_epi8(d + i, m, _mm512_maskz_loadu_epi8(m, s + i));
#else
    std::memcpy(d + i, s + i, n - i);
#endif
  }
}

// float32 groups: o[k] = inv * sum_j w[mem[j]] * x[mem[j], k] (x at xb, rows of K features)
// for k < K - K % (4 W), four vectors at a time in registers: the head times its weight,
// then one multiply-add per member in member order, then times inv: the operations of
// merge.cpp's generic loops in their order, which keep their sums on the stack (a load
// and a store per member and vector on top of the member's load). w == nullptr: every
// weight is one. Returns the number of features done.
PITOME_KTARGET __attribute__((noinline)) inline int64_t weighted_rows(const float* xb, int64_t K, const int32_t* mem,
                                                                      int64_t cnt, const float* w, float inv,
                                                                      float* o) {
  typedef vec_t<float> v;
  constexpr int W = V<float>::W;
  const int64_t done = K - K % (4 * W);
  for (int64_t k = 0; k < done; k += 4 * W) {
    const float* h = xb + mem[0] * K + k;
    const float w0 = w ? w[mem[0]] : 1.f;
    v a0 = load<float>(h) * w0, a1 = load<float>(h + W) * w0;
    v a2 = load<float>(h + 2 * W) * w0, a3 = load<float>(h + 3 * W) * w0;
    for (int64_t j = 1; j < cnt; ++j) {
      const float* r = xb + mem[j] * K + k;
      const float wj = w ? w[mem[j]] : 1.f;
      a0 += load<float>(r) * wj;
      a1 += load<float>(r + W) * wj;
      a2 += load<float>(r + 2 * W) * wj;
      a3 += load<float>(r + 3 * W) * wj;
    }
    store<float>(o + k, a0 * inv);
    store<float>(o + k + W, a1 * inv);
    store<float>(o + k + 2 * W, a2 * inv);
    store<float>(o + k + 3 * W, a3 * inv);
  }
  return done;
}
