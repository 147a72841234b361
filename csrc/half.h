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

