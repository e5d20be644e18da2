// Internal, per ISA clone (compiled inside each clone's namespace by isa_clones.h): the
// clone's vectors, as wide as one register of its ISA (64 bytes with AVX-512, 32 with
// AVX2, 16 otherwise), and their loads and stores. GCC lowers a generic vector wider than
// the target's registers through memory, one piece per operation, which made the lower
// clones many times slower on simd::V's 64-byte vectors. These shadow simd::V and
// friends in every per-ISA kernel; the layouts (panels padded to two 64-byte vectors,
// blocks of multiples of them) stay those of simd::V, which are multiples of these.

#if defined(PITOME_KAVX512)
constexpr int kVectorBytes = 64;
#elif defined(PITOME_KAVX2)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif
template <typename T>
struct V;
template <>
struct V<float> {
  typedef float type __attribute__((vector_size(kVectorBytes)));
  typedef int32_t itype __attribute__((vector_size(kVectorBytes)));
  static constexpr int W = kVectorBytes / sizeof(float);
};
template <>
struct V<double> {
  typedef double type __attribute__((vector_size(kVectorBytes)));
  typedef int64_t itype __attribute__((vector_size(kVectorBytes)));
  static constexpr int W = kVectorBytes / sizeof(double);
};
template <typename T>
using vec_t = typename V<T>::type;
template <typename T>
using ivec_t = typename V<T>::itype;
static_assert(simd::V<float>::W % V<float>::W == 0, "layouts of simd::V");

template <typename T>
PITOME_KINLINE vec_t<T> load(const T* p) {
  vec_t<T> v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
PITOME_KINLINE void store(T* p, vec_t<T> v) {
  __builtin_memcpy(p, &v, sizeof(v));
}
template <typename T>
PITOME_KINLINE vec_t<T> splat(T x) {
  return vec_t<T>{} + x;
}
