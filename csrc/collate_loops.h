// Collate-time mixing of uint8 samples (FastCollateMixup). A unit is one
// channel of one output row or, where two output rows are each other's
// partner (timm's pairings are involutions), of both rows of the pair: the
// pair's two samples are then read once, a chunk of lines at a time, for both
// outputs, so the batch moves the bytes of a plain collate.
// Compiled per instruction set: loops.h includes this file inside its per-ISA
// namespace.

// rint(v) as a byte, for 0 <= v < 2^22 (the weights are in [0, 1]): v + 1.5 * 2^23
// has a unit step, so the default rounding mode leaves rint(v) (ties to even,
// as numpy's rint and torch.round) in its low mantissa bits; clamped to 255 as
// an integer (a float clamp keeps GCC from vectorising the loop on AVX2).
MIXUP_INLINE uint8_t rint_u8(float v) {
  const uint32_t r = to_bits(v + 12582912.0f) - 0x4B400000u;
  return static_cast<uint8_t>(r < 255u ? r : 255u);
}

// dst[j] = rint(ws * a[j] + wp * b[j]), each product and the sum rounded to float32.
MIXUP_INLINE void blend_u8_tail(uint8_t* __restrict dst, const uint8_t* __restrict a, const uint8_t* __restrict b,
                                int64_t j, int64_t n, float ws, float wp) {
  for (; j < n; ++j) {
    const float pa = ws * static_cast<float>(a[j]);
    const float pb = wp * static_cast<float>(b[j]);
    dst[j] = rint_u8(pa + pb);
  }
}

#if defined(MIXUP_BLEND_U8_AVX2)
// The same arithmetic 32 bytes at a time: bytes widened straight to int32 and
// the results narrowed with two saturating packs. GCC's own vectorisation of
// the loop above spends about twice the instructions on widening and
// narrowing, and the loop is compute bound (bench: the collate row).
MIXUP_INLINE void blend_u8(uint8_t* __restrict dst, const uint8_t* __restrict a, const uint8_t* __restrict b,
                           int64_t n, float ws, float wp) {
  const __m256 vws = _mm256_set1_ps(ws), vwp = _mm256_set1_ps(wp);
  const __m256 magic = _mm256_set1_ps(12582912.0f), top = _mm256_set1_ps(255.0f);
  const __m256i magic_bits = _mm256_set1_epi32(0x4B400000);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // undoes the packs' lane interleave
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256i r[4];
    for (int k = 0; k < 4; ++k) {
      const __m128i ak = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + j + 8 * k));
      const __m128i bk = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + j + 8 * k));
      const __m256 pa = _mm256_mul_ps(vws, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(ak)));
      const __m256 pb = _mm256_mul_ps(vwp, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bk)));
      const __m256 v = _mm256_min_ps(_mm256_add_ps(pa, pb), top);  // v is never NaN
      r[k] = _mm256_sub_epi32(_mm256_castps_si256(_mm256_add_ps(v, magic)), magic_bits);
    }
    const __m256i bytes = _mm256_packus_epi16(_mm256_packus_epi32(r[0], r[1]), _mm256_packus_epi32(r[2], r[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j), _mm256_permutevar8x32_epi32(bytes, order));
  }
  blend_u8_tail(dst, a, b, j, n, ws, wp);
}
#else
MIXUP_INLINE void blend_u8(uint8_t* __restrict dst, const uint8_t* __restrict a, const uint8_t* __restrict b,
                           int64_t n, float ws, float wp) {
  blend_u8_tail(dst, a, b, 0, n, ws, wp);
}
#endif

// Lines [h0, h1) of one channel of output row i: blended from its sample a and
// partner b, or a outside the row's box and b inside it.
MIXUP_INLINE void collate_lines(const CollateArgs& args, int64_t i, uint8_t* o, const uint8_t* a, const uint8_t* b,
                                int64_t h0, int64_t h1) {
  const int64_t W = args.W, off = h0 * W, n = (h1 - h0) * W;
  if (args.boxes == nullptr || args.blend[i]) {
    blend_u8(o + off, a + off, b + off, n, args.w_self[i], args.w_part[i]);
    return;
  }
  std::memcpy(o + off, a + off, static_cast<size_t>(n));
  const Box& bx = args.boxes[i];
  const int64_t len = bx.x1 - bx.x0, y0 = max64(bx.y0, h0), y1 = min64(bx.y1, h1);
  if (len <= 0) return;
  for (int64_t h = y0; h < y1; ++h) std::memcpy(o + h * W + bx.x0, b + h * W + bx.x0, static_cast<size_t>(len));
}

// The output row that row i also writes (its partner, when the two are each
// other's partner and both are output rows), or -1.
MIXUP_INLINE int64_t paired_row(const CollateArgs& args, int64_t i) {
  const int64_t j = args.perm[i];
  return (j != i && j < args.rows && args.perm[j] == i) ? j : -1;
}

// Lines per chunk: the two samples' chunks (a few KiB each) stay in L1 while
// both output rows are written from them.
constexpr int64_t kCollateChunk = 4096;

// The blend loop does several float operations per byte: on AVX-512 full-width
// vectors run it faster than the default 256-bit ones (bench: the collate row).
#if defined(MIXUP_WIDE_VECTORS)
#define MIXUP_COLLATE_TUNE __attribute__((target("prefer-vector-width=512")))
#else
#define MIXUP_COLLATE_TUNE
#endif

MIXUP_COLLATE_TUNE void collate_units(const CollateArgs& args, int64_t u0, int64_t u1) {
  const int64_t C = args.C, H = args.H, W = args.W, plane = H * W;
  const int64_t step = W > 0 && W < kCollateChunk ? kCollateChunk / W : 1;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t i = u / C, c = u % C;
    const int64_t j = paired_row(args, i);
    if (j >= 0 && j < i) continue;  // written with its partner
    const uint8_t* a = args.samples[i] + c * plane;
    const uint8_t* b = args.samples[args.perm[i]] + c * plane;
    uint8_t* oi = args.out + (i * C + c) * plane;
    uint8_t* oj = j >= 0 ? args.out + (j * C + c) * plane : nullptr;
    for (int64_t h0 = 0; h0 < H; h0 += step) {
      const int64_t h1 = min64(h0 + step, H);
      collate_lines(args, i, oi, a, b, h0, h1);
      if (oj != nullptr) collate_lines(args, j, oj, b, a, h0, h1);
    }
  }
}

#undef MIXUP_COLLATE_TUNE
