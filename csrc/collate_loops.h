// Collate-time mixing of uint8 samples (FastCollateMixup): one (row, channel)
// plane per unit, read from the samples and written once into the batch.
// Compiled per instruction set: loops.h includes this file inside its per-ISA
// namespace.

// rint(v) as a byte, for 0 <= v (the weights are never negative): clamped to
// 255, v + 1.5 * 2^23 has a unit step, so the default rounding mode leaves
// rint(v) (ties to even, as numpy's rint and torch.round) in its low mantissa
// bits. Unlike nearbyint and a float-to-int conversion this vectorises well.
MIXUP_INLINE uint8_t rint_u8(float v) {
  v = v > 255.0f ? 255.0f : v;
  return static_cast<uint8_t>(to_bits(v + 12582912.0f));
}

// The blend loop is compute bound: on AVX-512 full-width vectors run it
// faster than the default 256-bit ones (bench: collate rows of FastCollateMixup).
#if defined(MIXUP_WIDE_VECTORS)
#define MIXUP_COLLATE_TUNE __attribute__((target("prefer-vector-width=512")))
#else
#define MIXUP_COLLATE_TUNE
#endif

// dst[j] = rint(ws * a[j] + wp * b[j]), each product and the sum rounded to float32.
MIXUP_INLINE void blend_u8(uint8_t* __restrict dst, const uint8_t* __restrict a, const uint8_t* __restrict b,
                           int64_t n, float ws, float wp) {
  for (int64_t j = 0; j < n; ++j) {
    const float pa = ws * static_cast<float>(a[j]);
    const float pb = wp * static_cast<float>(b[j]);
    dst[j] = rint_u8(pa + pb);
  }
}

MIXUP_COLLATE_TUNE void collate_units(const CollateArgs& args, int64_t u0, int64_t u1) {
  const int64_t C = args.C, H = args.H, W = args.W, plane = H * W;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t i = u / C, c = u % C;
    const uint8_t* a = args.samples[i] + c * plane;
    const uint8_t* b = args.samples[args.perm[i]] + c * plane;
    uint8_t* o = args.out + (i * C + c) * plane;
    if (args.boxes == nullptr || args.blend[i]) {
      blend_u8(o, a, b, plane, args.w_self[i], args.w_part[i]);
      continue;
    }
    // Cut: the sample outside its box, the partner inside it.
    std::memcpy(o, a, static_cast<size_t>(plane));
    const Box& bx = args.boxes[i];
    const int64_t len = bx.x1 - bx.x0;
    if (len <= 0) continue;
    for (int64_t h = bx.y0; h < bx.y1; ++h)
      std::memcpy(o + h * W + bx.x0, b + h * W + bx.x0, static_cast<size_t>(len));
  }
}

#undef MIXUP_COLLATE_TUNE
