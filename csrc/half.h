// fp16 and bf16 <-> float conversions, and the load / store helpers of the
// loops (ld, Narrow), compiled per instruction set: loops.h includes this file
// inside its per-ISA namespace. Branch-free, so that the loops vectorise; the
// results are bitwise those of c10's conversions.

struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};

MIXUP_INLINE uint32_t to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
MIXUP_INLINE float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE half <-> float, branch free (the FP16 library's algorithm, as in c10).
// The comparisons are signed, on values below 2^31: AVX2 has no unsigned
// vector compare. For AVX2, MIXUP_MASK_SELECT also spells the selects as
// masks: GCC leaves the fp16 loops scalar there otherwise; with AVX-512 the
// plain select is faster (bench: the fp16 rows). Both give the same bits.
MIXUP_INLINE uint32_t select(bool c, uint32_t a, uint32_t b) {
#if defined(MIXUP_MASK_SELECT)
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  return (a & m) | (b & ~m);
#else
  return c ? a : b;
#endif
}
MIXUP_INLINE float f16_to_f32(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized = from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
#if defined(MIXUP_MASK_SELECT)
  const bool denormal = static_cast<int32_t>(two_w >> 27) == 0;  // two_w < 2^27
#else
  const bool denormal = two_w < (1u << 27);
#endif
  return from_bits(sign | select(denormal, to_bits(denormalized), to_bits(normalized)));
}
MIXUP_INLINE uint16_t f32_to_f16(float f) {
  float base = (__builtin_fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
  const uint32_t w = to_bits(f);
  const uint32_t sign = w & 0x80000000u;
#if defined(MIXUP_MASK_SELECT)
  int32_t exponent = static_cast<int32_t>((w >> 23) & 0xFFu);  // bias = max(exponent, 0x71) << 24
  exponent = exponent < 0x71 ? 0x71 : exponent;
  base = from_bits((static_cast<uint32_t>(exponent) << 23) + 0x07800000u) + base;
#else
  uint32_t bias = (w + w) & 0xFF000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  base = from_bits((bias >> 1) + 0x07800000u) + base;
#endif
  const uint32_t bits = to_bits(base);
  const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
#if defined(MIXUP_MASK_SELECT)
  const bool nan = static_cast<int32_t>(w & 0x7FFFFFFFu) > 0x7F800000;
#else
  const bool nan = (w + w) > 0xFF000000u;
#endif
  return static_cast<uint16_t>((sign >> 16) | select(nan, 0x7E00u, nonsign));
}
// bfloat16: round to nearest even; NaN stays a (quiet) NaN.
MIXUP_INLINE float bf16_to_f32(uint16_t h) { return from_bits(static_cast<uint32_t>(h) << 16); }
MIXUP_INLINE uint16_t f32_to_bf16(float f) {
  const uint32_t u = to_bits(f);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded);
}

// The same conversions on two bfloat16 packed in a 32-bit word (the even
// element in the low half, the odd one in the high half), as the in-place
// loops read them: widening either half is one shift or mask, and narrowing
// leaves each result in its own half, so a vectorised loop over words needs
// no lane shuffles (the widening loads and packing stores cost more than the
// arithmetic otherwise). The bits are those of bf16_to_f32 / f32_to_bf16.
MIXUP_INLINE float bf16_lo_to_f32(uint32_t w) { return from_bits(w << 16); }
MIXUP_INLINE float bf16_hi_to_f32(uint32_t w) { return from_bits(w & 0xFFFF0000u); }
// f32_to_bf16(f) << 16.
// (NaN told by f != f, one vector compare; the mask is taken after the select.)
MIXUP_INLINE uint32_t f32_to_bf16_hi(float f) {
  const uint32_t u = to_bits(f);
  return select(f != f, u | 0x00400000u, u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
}
MIXUP_INLINE uint32_t f32x2_to_bf16x2(float lo, float hi) { return (f32_to_bf16_hi(lo) >> 16) | f32_to_bf16_hi(hi); }

#if defined(MIXUP_F16C)
// float -> fp16, eight lanes, by F16C (the widening is vcvtph2ps itself). Bitwise
// the conversion above (checked over every float): the hardware keeps a NaN's payload where
// the software conversion makes it sign | 0x7E00, so NaN lanes are set so.
MIXUP_INLINE void f32x8_to_f16(f16* p, __m256 v) {
  __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  if (__builtin_expect(!_mm256_testz_ps(nan, nan), 0)) {
    const __m256i n = _mm256_castps_si256(nan);
    const __m128i m = _mm_packs_epi32(_mm256_castsi256_si128(n), _mm256_extracti128_si256(n, 1));
    const __m128i q = _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16(static_cast<int16_t>(0x8000))),
                                   _mm_set1_epi16(0x7E00));
    h = _mm_blendv_epi8(h, q, m);
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
}
// Two such stores with one test for NaN lanes between them.
MIXUP_INLINE void f32x8x2_to_f16(f16* p, __m256 v, f16* q, __m256 w) {
  const __m256 nan = _mm256_or_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), _mm256_cmp_ps(w, w, _CMP_UNORD_Q));
  if (__builtin_expect(!_mm256_testz_ps(nan, nan), 0)) {
    f32x8_to_f16(p, v);
    f32x8_to_f16(q, w);
    return;
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm256_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#endif

MIXUP_INLINE float widen(float v) { return v; }
MIXUP_INLINE double widen(double v) { return v; }
MIXUP_INLINE float widen(uint8_t v) { return static_cast<float>(v); }
MIXUP_INLINE float widen(bf16 v) { return bf16_to_f32(v.bits); }
MIXUP_INLINE float widen(f16 v) { return f16_to_f32(v.bits); }

template <typename acc_t, typename T>
MIXUP_INLINE acc_t ld(const T& v) {
  return static_cast<acc_t>(widen(v));
}

template <typename T>
struct Narrow {
  template <typename A>
  static MIXUP_INLINE T from(A v) {
    return static_cast<T>(v);
  }
};
template <>
struct Narrow<bf16> {
  template <typename A>
  static MIXUP_INLINE bf16 from(A v) {
    return bf16{f32_to_bf16(static_cast<float>(v))};
  }
};
template <>
struct Narrow<f16> {
  template <typename A>
  static MIXUP_INLINE f16 from(A v) {
    return f16{f32_to_f16(static_cast<float>(v))};
  }
};

