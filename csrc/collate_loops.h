// Collate-time mixing of uint8 samples (FastCollateMixup). For [C, H, W]
// samples a unit is one channel of one output row or, where two output rows are each other's
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
// The same arithmetic 32 bytes at a time: bytes widened straight to int32,
// converted back with the default rounding mode (ties to even, as rint) and
// narrowed with two saturating packs, which also clamp to 255. GCC's own
// vectorisation of the loop above spends about twice the instructions on
// widening and narrowing, and the loop is compute bound (bench: the collate
// row). A pair of rows that are each other's partner shares the widening.
MIXUP_INLINE __m256 widen_u8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

MIXUP_INLINE __m256i blend8(__m256 fa, __m256 fb, __m256 ws, __m256 wp) {
  return _mm256_cvtps_epi32(_mm256_add_ps(_mm256_mul_ps(ws, fa), _mm256_mul_ps(wp, fb)));
}

MIXUP_INLINE void store_u8(uint8_t* dst, const __m256i r[4]) {
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // undoes the packs' lane interleave
  const __m256i bytes = _mm256_packus_epi16(_mm256_packus_epi32(r[0], r[1]), _mm256_packus_epi32(r[2], r[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_permutevar8x32_epi32(bytes, order));
}

MIXUP_INLINE void blend_u8(uint8_t* __restrict dst, const uint8_t* __restrict a, const uint8_t* __restrict b,
                           int64_t n, float ws, float wp) {
  const __m256 vws = _mm256_set1_ps(ws), vwp = _mm256_set1_ps(wp);
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256i r[4];
    for (int k = 0; k < 4; ++k) r[k] = blend8(widen_u8(a + j + 8 * k), widen_u8(b + j + 8 * k), vws, vwp);
    store_u8(dst + j, r);
  }
  blend_u8_tail(dst, a, b, j, n, ws, wp);
}

// da = rint(wsa * a + wpa * b) and db = rint(wsb * b + wpb * a) from one read of a and b.
MIXUP_INLINE void blend_u8_pair(uint8_t* __restrict da, uint8_t* __restrict db, const uint8_t* __restrict a,
                                const uint8_t* __restrict b, int64_t n, float wsa, float wpa, float wsb, float wpb) {
  const __m256 vwsa = _mm256_set1_ps(wsa), vwpa = _mm256_set1_ps(wpa);
  const __m256 vwsb = _mm256_set1_ps(wsb), vwpb = _mm256_set1_ps(wpb);
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256i ra[4], rb[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 fa = widen_u8(a + j + 8 * k), fb = widen_u8(b + j + 8 * k);
      ra[k] = blend8(fa, fb, vwsa, vwpa);
      rb[k] = blend8(fb, fa, vwsb, vwpb);
    }
    store_u8(da + j, ra);
    store_u8(db + j, rb);
  }
  blend_u8_tail(da, a, b, j, n, wsa, wpa);
  blend_u8_tail(db, b, a, j, n, wsb, wpb);
}
#else
MIXUP_INLINE void blend_u8(uint8_t* __restrict dst, const uint8_t* __restrict a, const uint8_t* __restrict b,
                           int64_t n, float ws, float wp) {
  blend_u8_tail(dst, a, b, 0, n, ws, wp);
}

MIXUP_INLINE void blend_u8_pair(uint8_t* __restrict da, uint8_t* __restrict db, const uint8_t* __restrict a,
                                const uint8_t* __restrict b, int64_t n, float wsa, float wpa, float wsb, float wpb) {
  blend_u8_tail(da, a, b, 0, n, wsa, wpa);
  blend_u8_tail(db, b, a, 0, n, wsb, wpb);
}
#endif

MIXUP_INLINE bool blends(const CollateArgs& args, int64_t i) { return args.boxes == nullptr || args.blend[i]; }

// dst[x] = cols[x] ? b[x] : a[x], with cols all 0 or all 1 bits per byte (a
// line of a cut row; vectorised to full-width selects).
MIXUP_INLINE void select_u8(uint8_t* __restrict dst, const uint8_t* __restrict a, const uint8_t* __restrict b,
                            const uint8_t* __restrict cols, int64_t n) {
  for (int64_t x = 0; x < n; ++x) dst[x] = static_cast<uint8_t>((a[x] & ~cols[x]) | (b[x] & cols[x]));
}

// The column mask of row i's box: 0xFF in [x0, x1), 0 elsewhere; W bytes.
MIXUP_INLINE void box_columns(const CollateArgs& args, int64_t i, uint8_t* cols) {
  const Box& bx = args.boxes[i];
  const int64_t W = args.W, x0 = min64(max64(bx.x0, 0), W), x1 = min64(max64(bx.x1, x0), W);
  std::memset(cols, 0, static_cast<size_t>(W));
  std::memset(cols + x0, 0xFF, static_cast<size_t>(x1 - x0));
}

// Lines [h0, h1) of one channel of output row i: blended from its sample a and
// partner b, or a outside the row's box and b inside it (cols: box_columns).
// A cut line is written once, by one select over the line: short box
// segments copied over a full copy cost a call each (bench: the collate row).
MIXUP_INLINE void collate_lines(const CollateArgs& args, int64_t i, uint8_t* o, const uint8_t* a, const uint8_t* b,
                                const uint8_t* cols, int64_t h0, int64_t h1) {
  const int64_t W = args.W;
  if (blends(args, i)) {
    const int64_t off = h0 * W;
    blend_u8(o + off, a + off, b + off, (h1 - h0) * W, args.w_self[i], args.w_part[i]);
    return;
  }
  const Box& bx = args.boxes[i];
  const int64_t y0 = min64(max64(bx.y0, h0), h1), y1 = bx.x1 > bx.x0 ? min64(max64(bx.y1, y0), h1) : y0;
  std::memcpy(o + h0 * W, a + h0 * W, static_cast<size_t>((y0 - h0) * W));
  if (bx.x0 <= 0 && bx.x1 >= W) {  // whole lines of the partner
    std::memcpy(o + y0 * W, b + y0 * W, static_cast<size_t>((y1 - y0) * W));
  } else {
    for (int64_t h = y0; h < y1; ++h) select_u8(o + h * W, a + h * W, b + h * W, cols, W);
  }
  std::memcpy(o + y1 * W, a + y1 * W, static_cast<size_t>((h1 - y1) * W));
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

// Samples stored channel-interleaved: [H, W, C] buffers viewed as [C, H, W],
// as timm's ToNumpy (np.rollaxis of the HWC image) makes them. A unit is one
// output row or a pair of rows that are each other's partner, line by line:
// a line is mixed in its interleaved order (a blend is per element, a cut per
// pixel) and split into the C planes of the output as it is written, so each
// sample is read once, without a transposing copy first (bench: the collate
// row over interleaved samples).

#if defined(MIXUP_DEINTERLEAVE_SSSE3)
// Byte p of channel c's 16 comes from byte 3p + c of three 16-byte source
// vectors: from vector k at 3p + c - 16k (0x80, a zero, elsewhere).
struct Deinterleave3 {
  uint8_t m[3][3][16];
};
constexpr Deinterleave3 deinterleave3_masks() {
  Deinterleave3 r{};
  for (int c = 0; c < 3; ++c)
    for (int k = 0; k < 3; ++k)
      for (int p = 0; p < 16; ++p) {
        const int at = 3 * p + c - 16 * k;
        r.m[c][k][p] = at >= 0 && at < 16 ? static_cast<uint8_t>(at) : 0x80;
      }
  return r;
}
alignas(16) constexpr Deinterleave3 kDeinterleave3 = deinterleave3_masks();

// The three-channel split 16 pixels at a time; returns the pixels done.
MIXUP_INLINE int64_t deinterleave3_u8(uint8_t* dst, int64_t plane, const uint8_t* src, int64_t n) {
  const auto mask = [](int c, int k) { return _mm_load_si128(reinterpret_cast<const __m128i*>(kDeinterleave3.m[c][k])); };
  int64_t x = 0;
  for (; x + 16 <= n; x += 16) {
    const __m128i* s = reinterpret_cast<const __m128i*>(src + 3 * x);
    const __m128i v0 = _mm_loadu_si128(s), v1 = _mm_loadu_si128(s + 1), v2 = _mm_loadu_si128(s + 2);
    for (int c = 0; c < 3; ++c) {
      const __m128i r = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(v0, mask(c, 0)), _mm_shuffle_epi8(v1, mask(c, 1))),
                                     _mm_shuffle_epi8(v2, mask(c, 2)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c * plane + x), r);
    }
  }
  return x;
}
#endif

// dst[c * plane + x] = src[x * C + c] for x < n: n interleaved pixels into C planes.
MIXUP_INLINE void deinterleave_u8(uint8_t* __restrict dst, int64_t plane, const uint8_t* __restrict src, int64_t C,
                                  int64_t n) {
  if (C == 1) {
    std::memcpy(dst, src, static_cast<size_t>(n));
    return;
  }
  int64_t x = 0;
#if defined(MIXUP_DEINTERLEAVE_SSSE3)
  if (C == 3) x = deinterleave3_u8(dst, plane, src, n);
#endif
  for (; x < n; ++x)
    for (int64_t c = 0; c < C; ++c) dst[c * plane + x] = src[x * C + c];
}

// Line h of output row i (o: the row's first plane) from its sample's line a
// and its partner's line b, both interleaved; tmp holds W * C bytes.
MIXUP_INLINE void collate_line_hwc(const CollateArgs& args, int64_t i, uint8_t* o, const uint8_t* a,
                                   const uint8_t* b, uint8_t* tmp, int64_t h) {
  const int64_t C = args.C, W = args.W, plane = args.H * W;
  uint8_t* dst = o + h * W;
  if (blends(args, i)) {
    blend_u8(tmp, a, b, W * C, args.w_self[i], args.w_part[i]);
    deinterleave_u8(dst, plane, tmp, C, W);
    return;
  }
  // A cut line: the sample's pixels, then the partner's over the box (in L1 by then).
  deinterleave_u8(dst, plane, a, C, W);
  const Box& bx = args.boxes[i];
  const int64_t x0 = min64(max64(bx.x0, 0), W), x1 = min64(max64(bx.x1, x0), W);
  if (h >= bx.y0 && h < bx.y1 && x1 > x0) deinterleave_u8(dst + x0, plane, b + x0 * C, C, x1 - x0);
}

void collate_rows_hwc(const CollateArgs& args, int64_t u0, int64_t u1) {
  const int64_t C = args.C, H = args.H, W = args.W, line = W * C, plane = H * W;
  std::vector<uint8_t> tmp(static_cast<size_t>(2 * line));
  uint8_t* const ti = tmp.data();
  uint8_t* const tj = tmp.data() + line;
  for (int64_t i = u0; i < u1; ++i) {
    const int64_t j = paired_row(args, i);
    if (j >= 0 && j < i) continue;  // written with its partner
    const uint8_t* a = args.samples[i];
    const uint8_t* b = args.samples[args.perm[i]];
    uint8_t* oi = args.out + i * C * plane;
    uint8_t* oj = j >= 0 ? args.out + j * C * plane : nullptr;
    const bool both_blend = oj != nullptr && blends(args, i) && blends(args, j);
    for (int64_t h = 0; h < H; ++h) {
      const uint8_t* al = a + h * line;
      const uint8_t* bl = b + h * line;
      if (both_blend) {
        blend_u8_pair(ti, tj, al, bl, line, args.w_self[i], args.w_part[i], args.w_self[j], args.w_part[j]);
        deinterleave_u8(oi + h * W, plane, ti, C, W);
        deinterleave_u8(oj + h * W, plane, tj, C, W);
        continue;
      }
      collate_line_hwc(args, i, oi, al, bl, ti, h);
      if (oj != nullptr) collate_line_hwc(args, j, oj, bl, al, ti, h);
    }
  }
}

// Units: (row or pair, channel) of [C, H, W] samples, or rows (pairs) of interleaved ones.
MIXUP_COLLATE_TUNE void collate_units(const CollateArgs& args, int64_t u0, int64_t u1) {
  if (args.interleaved) {
    collate_rows_hwc(args, u0, u1);
    return;
  }
  const int64_t C = args.C, H = args.H, W = args.W, plane = H * W;
  const int64_t step = W > 0 && W < kCollateChunk ? kCollateChunk / W : 1;
  std::vector<uint8_t> cols(args.boxes == nullptr ? 0 : static_cast<size_t>(2 * W));
  uint8_t* const cols_i = cols.data();
  uint8_t* const cols_j = cols.data() + W;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t i = u / C, c = u % C;
    const int64_t j = paired_row(args, i);
    if (j >= 0 && j < i) continue;  // written with its partner
    if (!blends(args, i)) box_columns(args, i, cols_i);
    if (j >= 0 && !blends(args, j)) box_columns(args, j, cols_j);
    const uint8_t* a = args.samples[i] + c * plane;
    const uint8_t* b = args.samples[args.perm[i]] + c * plane;
    uint8_t* oi = args.out + (i * C + c) * plane;
    uint8_t* oj = j >= 0 ? args.out + (j * C + c) * plane : nullptr;
    const bool both_blend = oj != nullptr && blends(args, i) && blends(args, j);
    for (int64_t h0 = 0; h0 < H; h0 += step) {
      const int64_t h1 = min64(h0 + step, H);
      if (both_blend) {
        const int64_t off = h0 * W, n = (h1 - h0) * W;
        blend_u8_pair(oi + off, oj + off, a + off, b + off, n, args.w_self[i], args.w_part[i], args.w_self[j],
                      args.w_part[j]);
        continue;
      }
      collate_lines(args, i, oi, a, b, cols_i, h0, h1);
      if (oj != nullptr) collate_lines(args, j, oj, b, a, cols_j, h0, h1);
    }
  }
}

#undef MIXUP_COLLATE_TUNE
