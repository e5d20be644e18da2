// Internal, per ISA clone (compiled inside each clone's namespace by isa_clones.h, for
// sort.h): a bitonic sort of up to 256 signed 64-bit keys in the clone's vectors (8 keys
// each with AVX-512, 4 with AVX2). Every vector is sorted by a network of lane shuffles,
// then runs of 1, 2, 4, ... vectors are merged by reversing the second run and
// half-cleaning at vector distances, then at lane distances 4, 2, 1 (AVX-512) or 2, 1.
// Branch-free, so its time does not depend on the keys: for the few hundred energies of
// a layer it beats the radix sort of sort_desc.

// keys_t: one vector of this clone's width (kVectorBytes), kKeyLanes keys.
typedef int64_t keys_t __attribute__((vector_size(kVectorBytes)));
constexpr int kKeyLanes = kVectorBytes / static_cast<int>(sizeof(int64_t));

#if !defined(__clang__)
// Compare-exchange of every lane with lane ^ D: lanes where keep_low is set take the min.
template <int D>
PITOME_KINLINE keys_t lane_exchange(keys_t v, keys_t keep_low) {
  keys_t partner;
  for (int l = 0; l < kKeyLanes; ++l) partner[l] = l ^ D;
  const keys_t p = __builtin_shuffle(v, partner);
  const keys_t lo = v < p ? v : p, hi = v < p ? p : v;
  return keep_low ? lo : hi;
}

// Lane stage (block size K, distance D) of the bitonic network sorting the lanes ascending.
template <int K, int D>
PITOME_KINLINE keys_t network_stage(keys_t v) {
  keys_t keep_low;
  for (int l = 0; l < kKeyLanes; ++l) keep_low[l] = (((l & D) == 0) == ((l & K) == 0)) ? -1 : 0;
  return lane_exchange<D>(v, keep_low);
}

// The stages (K, K/2), ..., (K, 1).
template <int K, int D = K / 2>
PITOME_KINLINE keys_t network_block(keys_t v) {
  v = network_stage<K, D>(v);
  if constexpr (D > 1)
    return network_block<K, D / 2>(v);
  else
    return v;
}

// The lanes of one vector sorted ascending: blocks K = 2, 4, ..., kKeyLanes.
template <int K = 2>
PITOME_KINLINE keys_t sort_lanes(keys_t v) {
  v = network_block<K>(v);
  if constexpr (K < kKeyLanes)
    return sort_lanes<2 * K>(v);
  else
    return v;
}

// The last stages of a merge: a bitonic vector sorted ascending.
PITOME_KINLINE keys_t merge_lanes(keys_t v) { return network_block<kKeyLanes>(v); }

// keys[0, n) sorted ascending in place, n <= 256 (keys distinct or not). keys must have
// room for n rounded up to a power of two (at least 8): the tail is padding.
PITOME_KTARGET inline void sort_keys_small(int64_t* keys, int64_t n) {
  keys_t v[256 / kKeyLanes];
  int64_t nv = 1;
  while (nv * kKeyLanes < n) nv *= 2;
  std::fill(keys + n, keys + nv * kKeyLanes, std::numeric_limits<int64_t>::max());
  __builtin_memcpy(v, keys, nv * sizeof(keys_t));
  for (int64_t i = 0; i < nv; ++i) v[i] = sort_lanes(v[i]);
  keys_t reversed;
  for (int l = 0; l < kKeyLanes; ++l) reversed[l] = kKeyLanes - 1 - l;
  for (int64_t w = 1; w < nv; w *= 2) {
    for (int64_t base = 0; base < nv; base += 2 * w) {
      keys_t* second = v + base + w;
      for (int64_t i = 0; i < w / 2; ++i) std::swap(second[i], second[w - 1 - i]);
      for (int64_t i = 0; i < w; ++i) second[i] = __builtin_shuffle(second[i], reversed);
      for (int64_t d = w; d >= 1; d /= 2)
        for (int64_t i = base; i < base + 2 * w; ++i) {
          if ((i - base) & d) continue;
          const keys_t a = v[i], b = v[i + d];
          v[i] = a < b ? a : b;
          v[i + d] = a < b ? b : a;
        }
      for (int64_t i = base; i < base + 2 * w; ++i) v[i] = merge_lanes(v[i]);
    }
  }
  __builtin_memcpy(keys, v, nv * sizeof(keys_t));
}
#endif
