// The CPU inner loops, compiled once per instruction set.
//
// kernels_<isa>.cpp sets a target pragma, defines MIXUP_ISA and includes this
// file; mixup_fused.cpp picks a table at run time (like ATen's CPU
// capability dispatch). Everything here has internal linkage and uses no
// standard-library templates, so code built for one instruction set is never
// shared with another. Loops run over contiguous spans with constant weights
// and use branch-free conversions, so the compiler vectorises them.

#include <cstdint>
#include <cstring>

#include "mix_types.h"

#ifndef MIXUP_ISA
#error "define MIXUP_ISA before including mix_kernels.h"
#endif

// The small helpers below must inline into the loops or nothing vectorises;
// with this many template instances GCC's inlining budget runs out otherwise.
#if defined(__GNUC__)
#define MIXUP_INLINE inline __attribute__((always_inline))
#define MIXUP_LAMBDA_INLINE __attribute__((always_inline))
#else
#define MIXUP_INLINE inline
#define MIXUP_LAMBDA_INLINE
#endif

namespace mixup_fused {
namespace MIXUP_ISA {
namespace {

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
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// IEEE half <-> float, branch free (the FP16 library's algorithm, as in c10).
// The comparisons are signed, on values below 2^31: AVX2 has no unsigned
// vector compare. For AVX2, MIXUP_MASK_SELECT also spells the selects as
// masks; GCC leaves the fp16 loops scalar there otherwise (5x slower). With
// AVX-512 the plain select is faster. Both give the same bits.
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

template <typename T>
struct IsU8 {
  static constexpr bool value = false;
};
template <>
struct IsU8<uint8_t> {
  static constexpr bool value = true;
};

// (d / s) as d * r with r = 1 / s plus one fused multiply-add correction
// (Markstein). For uint8 input there are only 256 values of d per channel, so
// Norm checks all of them against the true quotient once per call and uses
// this only when every one is bit-identical; the division it replaces is the
// slowest instruction in the uint8 loops.
MIXUP_INLINE float fast_div(float d, float s, float r) {
  const float q = d * r;
  return __builtin_fmaf(__builtin_fmaf(-q, s, d), r, q);
}
MIXUP_INLINE double fast_div(double d, double s, double) { return d / s; }

// Software prefetch for the streaming loops: before working on elements
// [from, from + len) of a row, ask for the same span kAhead elements further
// on (clipped to the row's end, ``limit``). Loops over 1- and 2-byte elements
// (bf16, fp16, uint8) do much arithmetic per cache line and otherwise have
// too few loads in flight to hide DRAM latency: in place bf16, 64x3x224x224,
// caches flushed, 2 threads: 3.1-3.3 -> 1.2-1.3 ms. float32 streams are left
// to the hardware prefetcher (the same time cold, 15% slower warm with it).
// The chunked loops cut their spans into kBlock pieces; the line loops
// prefetch one line, kAhead elements on.
constexpr int64_t kBlock = 1024;
constexpr int64_t kAhead = 4 * kBlock;
template <int RW, typename T>
MIXUP_INLINE void prefetch_span(const T* row, int64_t from, int64_t len, int64_t limit) {
  if (sizeof(T) >= 4) return;
  const int64_t s = from + kAhead;
  const int64_t e = min64(s + len, limit);
  if (s >= e) return;
  const char* c = reinterpret_cast<const char*>(row + s);
  const int64_t bytes = (e - s) * static_cast<int64_t>(sizeof(T));
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, RW, 3);
}

// Per-channel statistics. For NHWC lines (channels cycling along the line)
// they are also spread out per column of a line, so the loops stay simple
// element-wise code that vectorises.
template <typename acc_t>
struct Norm {
  bool on = false;
  bool fast = false;  // fast_div is exact for every input value (uint8 input only)
  int64_t C = 1;
  acc_t* mean = nullptr;  // [C]; std [C]; rcp [C]; for NHWC also line_mean, line_std, line_rcp [L]
  acc_t* std = nullptr;
  acc_t* rcp = nullptr;
  acc_t* line_mean = nullptr;
  acc_t* line_std = nullptr;
  acc_t* line_rcp = nullptr;
  Norm(bool enabled, int64_t channels, int64_t line, bool nhwc, const double* m, const double* s, bool u8_input)
      : on(enabled), C(channels) {
    if (!on) return;
    const int64_t L = nhwc ? line : 0;
    mean = new acc_t[3 * C + 3 * L];
    std = mean + C;
    rcp = std + C;
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = static_cast<acc_t>(m[c]);
      std[c] = static_cast<acc_t>(s[c]);
      rcp[c] = acc_t(1) / std[c];
    }
#if defined(MIXUP_FAST_DIV)
    fast = u8_input && sizeof(acc_t) == 4;
    for (int64_t c = 0; fast && c < C; ++c)
      for (int v = 0; fast && v < 256; ++v) {
        const acc_t d = static_cast<acc_t>(v) - mean[c];
        fast = fast_div(d, std[c], rcp[c]) == d / std[c];
      }
#else
    (void)u8_input;
#endif
    if (!nhwc) return;
    line_mean = rcp + C;
    line_std = line_mean + L;
    line_rcp = line_std + L;
    for (int64_t j = 0; j < L; ++j) {
      line_mean[j] = mean[j % C];
      line_std[j] = std[j % C];
      line_rcp[j] = rcp[j % C];
    }
  }
  ~Norm() { delete[] mean; }
  Norm(const Norm&) = delete;
  Norm& operator=(const Norm&) = delete;
};

// The per-element input transform f of a span: the identity, or the
// normalisation (v - mean) / std with one channel's statistics (NCHW lines) or
// with each column's (NHWC lines, channels cycling along the line). FAST uses
// fast_div, which Norm checked gives the division's bits.
template <typename acc_t>
struct Plain {
  MIXUP_INLINE acc_t operator()(acc_t v, int64_t) const { return v; }
};
template <bool FAST, typename acc_t>
struct PerChannel {
  acc_t m, s, r;
  MIXUP_INLINE acc_t operator()(acc_t v, int64_t) const {
    const acc_t d = v - m;
    return FAST ? fast_div(d, s, r) : d / s;
  }
};
template <bool FAST, typename acc_t>
struct PerColumn {
  const acc_t* __restrict m;
  const acc_t* __restrict s;
  const acc_t* __restrict r;
  MIXUP_INLINE acc_t operator()(acc_t v, int64_t j) const {
    const acc_t d = v - m[j];
    return FAST ? fast_div(d, s[j], r[j]) : d / s[j];
  }
};

// Calls body(f) with the transform for a span starting at line column ``c``
// (NHWC) or of channel ``c`` (NCHW); each body is compiled once per transform.
template <typename acc_t, typename Body>
MIXUP_INLINE void with_transform(const Norm<acc_t>& nm, int64_t c, bool cycle, const Body& body) {
  if (!nm.on) {
    body(Plain<acc_t>{});
  } else if (!cycle) {
    if (nm.fast)
      body(PerChannel<true, acc_t>{nm.mean[c], nm.std[c], nm.rcp[c]});
    else
      body(PerChannel<false, acc_t>{nm.mean[c], nm.std[c], nm.rcp[c]});
  } else {
    if (nm.fast)
      body(PerColumn<true, acc_t>{nm.line_mean + c, nm.line_std + c, nm.line_rcp + c});
    else
      body(PerColumn<false, acc_t>{nm.line_mean + c, nm.line_std + c, nm.line_rcp + c});
  }
}

// dst[j] = f(src[j]) over n elements.
template <typename in_t, typename out_t, typename acc_t>
MIXUP_INLINE void copy_span(out_t* dst, const in_t* src, int64_t n, const Norm<acc_t>& nm, int64_t c, bool cycle) {
  with_transform(nm, c, cycle, [=](auto f) MIXUP_LAMBDA_INLINE {
    out_t* __restrict d = dst;
    const in_t* __restrict x = src;
    for (int64_t j = 0; j < n; ++j) d[j] = Narrow<out_t>::from(f(ld<acc_t>(x[j]), j));
  });
}

// dst[j] = ws * f(a[j]) + wp * f(b[j]).
template <typename in_t, typename out_t, typename acc_t>
MIXUP_INLINE void mix_span(out_t* dst, const in_t* a, const in_t* b, int64_t n, acc_t ws, acc_t wp,
                           const Norm<acc_t>& nm, int64_t c, bool cycle) {
  with_transform(nm, c, cycle, [=](auto f) MIXUP_LAMBDA_INLINE {
    out_t* __restrict d = dst;
    const in_t* __restrict xa = a;
    const in_t* __restrict xb = b;
    for (int64_t j = 0; j < n; ++j)
      d[j] = Narrow<out_t>::from(ws * f(ld<acc_t>(xa[j]), j) + wp * f(ld<acc_t>(xb[j]), j));
  });
}

// Two output rows of a pair (i, p = perm[i], perm[p] = i) from one read of
// both input rows: oi = wsi * f(a) + wpi * f(b), op = wsp * f(b) + wpp * f(a),
// each rounded exactly as mix_span rounds it, with f computed once per element.
template <typename in_t, typename out_t, typename acc_t>
MIXUP_INLINE void mix_pair_span(out_t* oi, out_t* op, const in_t* a, const in_t* b, int64_t n, acc_t wsi, acc_t wpi,
                                acc_t wsp, acc_t wpp, const Norm<acc_t>& nm, int64_t c, bool cycle) {
  with_transform(nm, c, cycle, [=](auto f) MIXUP_LAMBDA_INLINE {
    out_t* __restrict di = oi;
    out_t* __restrict dp = op;
    const in_t* __restrict xa = a;
    const in_t* __restrict xb = b;
    for (int64_t j = 0; j < n; ++j) {
      const acc_t va = f(ld<acc_t>(xa[j]), j);
      const acc_t vb = f(ld<acc_t>(xb[j]), j);
      di[j] = Narrow<out_t>::from(wsi * va + wpi * vb);
      dp[j] = Narrow<out_t>::from(wsp * vb + wpp * va);
    }
  });
}

// A line of L columns cut at the edges of two column intervals [a0, a1) and
// [b0, b1): within each of the (at most five) segments, being inside either
// interval is constant, so the loops over a segment have no per-column
// condition and vectorise on every instruction set.
struct Segments {
  int64_t cut[6];
  Segments(int64_t a0, int64_t a1, int64_t b0, int64_t b1, int64_t L) : cut{0, a0, a1, b0, b1, L} {
    for (int u = 1; u < 6; ++u)  // insertion sort of six values
      for (int v = u; v > 0 && cut[v - 1] > cut[v]; --v) {
        const int64_t t = cut[v];
        cut[v] = cut[v - 1];
        cut[v - 1] = t;
      }
  }
};

// Out-of-place forward of a mixup-only batch whose perm is an involution:
// units [u0, u1) over (pair, chunk or line range), each pair's rows written
// together (half the input reads and, with mean/std, half the normalising).
template <typename in_t, typename out_t, typename acc_t>
void mix_pairs_out_units(const MixArgs& args, const Norm<acc_t>& nm, int64_t u0, int64_t u1) {
  const Geometry& g = args.g;
  const in_t* x = static_cast<const in_t*>(args.x);
  out_t* out = static_cast<out_t*>(args.out);
  const bool lines = by_lines(g, false, args.normalize);
  const int64_t upr = units_per_row(g, lines);
  const bool cycle = g.layout == kNHWC;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t i = args.firsts[u / upr];
    const RowPlan& pi = args.plan[i];
    const int64_t p = pi.src;
    const RowPlan& pp = args.plan[p];
    const acc_t wsi = static_cast<acc_t>(pi.ws), wpi = static_cast<acc_t>(pi.wp);
    const acc_t wsp = static_cast<acc_t>(pp.ws), wpp = static_cast<acc_t>(pp.wp);
    const in_t* xa = x + i * g.x_stride;
    const in_t* xb = x + p * g.x_stride;
    out_t* oi = out + i * g.out_stride;
    out_t* op = out + p * g.out_stride;
    int64_t first, count, len;  // a run of ``count`` spans of ``len`` elements
    if (!lines) {
      first = (u % upr) * kChunk;
      const int64_t n = min64(kChunk, g.row - first);
      len = kBlock;
      count = (n + len - 1) / len;  // the last span may be shorter
    } else {
      const int64_t lpu = lines_per_unit(g);
      const int64_t l0 = (u % upr) * lpu;
      first = l0;
      count = min64(num_lines(g), l0 + lpu) - l0;
      len = line_len(g);
    }
    const int64_t end = lines ? 0 : min64(first + kChunk, g.row);
    for (int64_t k = 0; k < count; ++k) {
      const int64_t off = lines ? (first + k) * len : first + k * len;
      const int64_t c = (lines && !cycle) ? (first + k) / g.H : 0;
      if (!lines) len = min64(kBlock, end - off);
      prefetch_span<0>(xa, off, len, g.row);
      prefetch_span<1>(oi, off, len, g.row);
      if (i != p) {
        prefetch_span<0>(xb, off, len, g.row);
        prefetch_span<1>(op, off, len, g.row);
      }
      if (i == p)
        mix_span<in_t, out_t, acc_t>(oi + off, xa + off, xa + off, len, wsi, wpi, nm, c, cycle);
      else
        mix_pair_span<in_t, out_t, acc_t>(oi + off, op + off, xa + off, xb + off, len, wsi, wpi, wsp, wpp, nm, c,
                                          cycle);
    }
  }
}

// Out-of-place forward and backward over units [u0, u1).
template <typename in_t, typename out_t, typename acc_t>
void mix_rows_units(const MixArgs& args, int64_t u0, int64_t u1) {
  const Geometry& g = args.g;
  const in_t* x = static_cast<const in_t*>(args.x);
  out_t* out = static_cast<out_t*>(args.out);
  const Norm<acc_t> nm(args.normalize, g.C, line_len(g), g.layout == kNHWC, args.mean, args.std, IsU8<in_t>::value);
  if (args.firsts != nullptr) {
    mix_pairs_out_units<in_t, out_t, acc_t>(args, nm, u0, u1);
    return;
  }
  const bool lines = by_lines(g, args.cutmix, args.normalize);
  const int64_t upr = units_per_row(g, lines);
  if (!lines) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t i = u / upr, s = (u % upr) * kChunk;
      const int64_t n = min64(kChunk, g.row - s);
      const RowPlan& pl = args.plan[i];
      const in_t* xa = x + i * g.x_stride;
      const in_t* xb = x + pl.src * g.x_stride;
      out_t* o = out + i * g.out_stride;
      for (int64_t b0 = s; b0 < s + n; b0 += kBlock) {
        const int64_t len = min64(kBlock, s + n - b0);
        prefetch_span<0>(xa, b0, len, g.row);
        prefetch_span<0>(xb, b0, len, g.row);
        prefetch_span<1>(o, b0, len, g.row);
        mix_span<in_t, out_t, acc_t>(o + b0, xa + b0, xb + b0, len, static_cast<acc_t>(pl.ws),
                                     static_cast<acc_t>(pl.wp), nm, 0, false);
      }
    }
    return;
  }
  const int64_t L = line_len(g), nlines = num_lines(g), lpu = lines_per_unit(g);
  const int64_t k = g.layout == kNHWC ? g.C : 1;
  const bool cycle = g.layout == kNHWC;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t i = u / upr;
    const int64_t l0 = (u % upr) * lpu, l1 = min64(nlines, l0 + lpu);
    const RowPlan& pl = args.plan[i];
    const acc_t ws = static_cast<acc_t>(pl.ws), wp = static_cast<acc_t>(pl.wp);
    const in_t* xa = x + i * g.x_stride;
    const in_t* xb = x + pl.src * g.x_stride;
    out_t* o = out + i * g.out_stride;
    for (int64_t l = l0; l < l1; ++l) {
      const int64_t h = cycle ? l : l % g.H;
      const int64_t c = cycle ? 0 : l / g.H;
      const int64_t off = l * L;
      prefetch_span<0>(xa, off, L, g.row);
      prefetch_span<0>(xb, off, L, g.row);
      prefetch_span<1>(o, off, L, g.row);
      if (!args.backward) {
        if (!args.cutmix || pl.self_mix) {
          mix_span<in_t, out_t, acc_t>(o + off, xa + off, xb + off, L, ws, wp, nm, c, cycle);
          continue;
        }
        const Box& bs = pl.self_box;
        if (h < bs.y0 || h >= bs.y1 || bs.x0 == bs.x1) {
          copy_span<in_t, out_t, acc_t>(o + off, xa + off, L, nm, c, cycle);
        } else {
          // Self outside the box, partner inside: three spans.
          const int64_t c0 = bs.x0 * k, c1 = bs.x1 * k;
          // (NHWC: the channel statistics start at the span's first column.)
          copy_span<in_t, out_t, acc_t>(o + off, xa + off, c0, nm, c, cycle);
          copy_span<in_t, out_t, acc_t>(o + off + c0, xb + off + c0, c1 - c0, nm, cycle ? c0 : c, cycle);
          copy_span<in_t, out_t, acc_t>(o + off + c1, xa + off + c1, L - c1, nm, cycle ? c1 : c, cycle);
        }
        continue;
      }
      // Backward: own term (weighted, or outside its own box) plus the
      // partner term (weighted, or inside the partner's box).
      const Box& bs = pl.self_box;
      const Box& bp = pl.part_box;
      const bool hs = !pl.self_mix && h >= bs.y0 && h < bs.y1;
      const bool hp = !pl.part_mix && h >= bp.y0 && h < bp.y1;
      const int64_t s0 = hs ? bs.x0 * k : 0, s1 = hs ? bs.x1 * k : 0;
      const int64_t p0 = hp ? bp.x0 * k : 0, p1 = hp ? bp.x1 * k : 0;
      const acc_t own_w = pl.self_mix ? ws : acc_t(1);
      const acc_t part_w = pl.part_mix ? wp : acc_t(1);
      const bool part_all = pl.part_mix;
      // Segments between the box edges (see Segments).
      const Segments sg(s0, s1, p0, p1, L);
      for (int q = 0; q < 5; ++q) {
        const int64_t j0 = sg.cut[q], j1 = sg.cut[q + 1];
        if (j0 >= j1) continue;
        const bool in_s = j0 >= s0 && j0 < s1;
        const bool in_p = part_all || (j0 >= p0 && j0 < p1);
        const in_t* __restrict ya = xa + off;
        const in_t* __restrict yb = xb + off;
        out_t* __restrict yo = o + off;
        // (own term or +0) + (partner term or +0), as the reference sums them.
        const acc_t zero = acc_t(0);
        if (!in_s && in_p)
          for (int64_t j = j0; j < j1; ++j)
            yo[j] = Narrow<out_t>::from(own_w * ld<acc_t>(ya[j]) + part_w * ld<acc_t>(yb[j]));
        else if (!in_s)
          for (int64_t j = j0; j < j1; ++j) yo[j] = Narrow<out_t>::from(own_w * ld<acc_t>(ya[j]) + zero);
        else if (in_p)
          for (int64_t j = j0; j < j1; ++j) yo[j] = Narrow<out_t>::from(zero + part_w * ld<acc_t>(yb[j]));
        else
          for (int64_t j = j0; j < j1; ++j) yo[j] = Narrow<out_t>::from(zero + zero);
      }
    }
  }
}

// What an in-place pair segment writes into a row: the blend, the partner's
// pixels, or its own (left alone).
constexpr int kMix = 0, kOther = 1, kOwn = 2;

template <int SI, int SP, typename scalar_t, typename acc_t>
MIXUP_INLINE void pair_segment_as(scalar_t* __restrict xi, scalar_t* __restrict xp, int64_t j0, int64_t j1, acc_t wi,
                                  acc_t ri, acc_t wp, acc_t rp) {
  for (int64_t j = j0; j < j1; ++j) {
    const scalar_t a = xi[j];
    const scalar_t b = xp[j];
    if (SI == kMix) xi[j] = Narrow<scalar_t>::from(wi * ld<acc_t>(a) + ri * ld<acc_t>(b));
    if (SI == kOther) xi[j] = b;
    if (SP == kMix) xp[j] = Narrow<scalar_t>::from(wp * ld<acc_t>(b) + rp * ld<acc_t>(a));
    if (SP == kOther) xp[j] = a;
  }
}

// Rows i and p (i != p) over columns [j0, j1) of a line, each as ``si`` / ``sp``.
template <typename scalar_t, typename acc_t>
inline void pair_segment(int si, int sp, scalar_t* xi, scalar_t* xp, int64_t j0, int64_t j1, acc_t wi, acc_t ri,
                         acc_t wp, acc_t rp) {
#define MIXUP_SEG(SI, SP)                                                    \
  if (si == SI && sp == SP) {                                                \
    pair_segment_as<SI, SP, scalar_t, acc_t>(xi, xp, j0, j1, wi, ri, wp, rp); \
    return;                                                                  \
  }
  MIXUP_SEG(kMix, kMix)
  MIXUP_SEG(kMix, kOther)
  MIXUP_SEG(kMix, kOwn)
  MIXUP_SEG(kOther, kMix)
  MIXUP_SEG(kOther, kOther)
  MIXUP_SEG(kOther, kOwn)
  MIXUP_SEG(kOwn, kMix)
  MIXUP_SEG(kOwn, kOther)
#undef MIXUP_SEG
  // (kOwn, kOwn): nothing moves.
}

// In-place forward on an involution: each pair (i, perm[i]) is read once and
// written once. Units [u0, u1) over (pair, chunk or line range).
template <typename scalar_t, typename acc_t>
void pairs_units(const PairArgs& args, int64_t u0, int64_t u1) {
  const Geometry& g = args.g;
  scalar_t* x = static_cast<scalar_t*>(args.x);
  const bool lines = by_lines(g, args.cutmix, false);
  const int64_t upr = units_per_row(g, lines);
  if (!lines) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t i = args.firsts[u / upr], p = args.perm[i];
      const int64_t s = (u % upr) * kChunk, n = min64(kChunk, g.row - s);
      const acc_t wi = static_cast<acc_t>(args.lam[i]), wp = static_cast<acc_t>(args.lam[p]);
      const acc_t ri = acc_t(1) - wi, rp = acc_t(1) - wp;
      scalar_t* __restrict xi = x + i * g.x_stride + s;
      if (i == p) {
        if (wi == acc_t(1)) continue;  // blended with 1: kept (see below)
        for (int64_t j = 0; j < n; ++j) {
          const acc_t a = ld<acc_t>(xi[j]);
          xi[j] = Narrow<scalar_t>::from(wi * a + ri * a);
        }
        continue;
      }
      scalar_t* __restrict xp = x + p * g.x_stride + s;
      if (wi == acc_t(1) || wp == acc_t(1)) {
        // A row blended with weight exactly 1 keeps its values bit for bit,
        // as timm skips lam == 1 (1 * a + 0 * b is not a when b is inf or
        // NaN, or a is -0.0). Rare: a float32 Beta draw that rounds to 1.
        pair_segment<scalar_t, acc_t>(wi == acc_t(1) ? kOwn : kMix, wp == acc_t(1) ? kOwn : kMix, xi, xp, 0, n, wi,
                                      ri, wp, rp);
        continue;
      }
      for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
        prefetch_span<1>(xi, b0, kBlock, n);
        prefetch_span<1>(xp, b0, kBlock, n);
        const int64_t b1 = min64(n, b0 + kBlock);
        for (int64_t j = b0; j < b1; ++j) {
          const acc_t a = ld<acc_t>(xi[j]);
          const acc_t b = ld<acc_t>(xp[j]);
          xi[j] = Narrow<scalar_t>::from(wi * a + ri * b);
          xp[j] = Narrow<scalar_t>::from(wp * b + rp * a);
        }
      }
    }
    return;
  }
  const int64_t L = line_len(g), nlines = num_lines(g), lpu = lines_per_unit(g);
  const int64_t k = g.layout == kNHWC ? g.C : 1;
  const bool nhwc = g.layout == kNHWC;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t i = args.firsts[u / upr], p = args.perm[i];
    const int64_t l0 = (u % upr) * lpu, l1 = min64(nlines, l0 + lpu);
    const acc_t wi = static_cast<acc_t>(args.lam[i]), wp = static_cast<acc_t>(args.lam[p]);
    const acc_t ri = acc_t(1) - wi, rp = acc_t(1) - wp;
    const Box& bi = args.boxes[i];
    const Box& bp = args.boxes[p];
    // A row blended with weight exactly 1 is kept, as above: it has no box, so
    // as a cut row it keeps its own pixels everywhere.
    const bool mi = args.mix_rows[i] && wi != acc_t(1), mp = args.mix_rows[p] && wp != acc_t(1);
    scalar_t* xi = x + i * g.x_stride;
    scalar_t* xp = x + p * g.x_stride;
    for (int64_t l = l0; l < l1; ++l) {
      const int64_t h = nhwc ? l : l % g.H;
      const int64_t off = l * L;
      prefetch_span<1>(xi, off, L, g.row);
      prefetch_span<1>(xp, off, L, g.row);
      const bool hi = !mi && h >= bi.y0 && h < bi.y1;
      const bool hp = !mp && h >= bp.y0 && h < bp.y1;
      const int64_t i0 = hi ? bi.x0 * k : 0, i1 = hi ? bi.x1 * k : 0;
      const int64_t p0 = hp ? bp.x0 * k : 0, p1 = hp ? bp.x1 * k : 0;
      if (i == p) {
        if (mi)
          for (int64_t j = 0; j < L; ++j) {
            const acc_t a = ld<acc_t>(xi[off + j]);
            xi[off + j] = Narrow<scalar_t>::from(wi * a + ri * a);
          }
        continue;  // a cut sample paired with itself keeps its pixels
      }
      if (!mi && !mp && !hi && !hp) continue;  // both cut, and no box crosses this line
#if defined(MIXUP_MASKED_STORES)
      if (!mi && !mp) {
        // Both cut. With masked vector stores (AVX-512) one loop over the span
        // of both boxes is faster than the segments (64x3x224x224 fp32 in
        // place, caches flushed: 0.93 against 1.15 ms); the bits are the same.
        const int64_t lo = min64(hi ? i0 : p0, hp ? p0 : i0), hi_end = max64(i1, p1);
        scalar_t* __restrict ri_ = xi + off;
        scalar_t* __restrict rp_ = xp + off;
        for (int64_t j = lo; j < hi_end; ++j) {
          const scalar_t a = ri_[j];
          const scalar_t b = rp_[j];
          if (j >= i0 && j < i1) ri_[j] = b;
          if (j >= p0 && j < p1) rp_[j] = a;
        }
        continue;
      }
#endif
      // Per segment, each row takes the blend (a mixed row), its partner's
      // pixels (inside its box) or keeps its own.
      const Segments sg(i0, i1, p0, p1, L);
      for (int q = 0; q < 5; ++q) {
        const int64_t j0 = sg.cut[q], j1 = sg.cut[q + 1];
        if (j0 >= j1) continue;
        const int si = mi ? kMix : (j0 >= i0 && j0 < i1) ? kOther : kOwn;
        const int sp = mp ? kMix : (j0 >= p0 && j0 < p1) ? kOther : kOwn;
        pair_segment<scalar_t, acc_t>(si, sp, xi + off, xp + off, j0, j1, wi, ri, wp, rp);
      }
    }
  }
}

template <typename A, typename B>
struct AccOf {
  using type = float;
};
template <typename B>
struct AccOf<double, B> {
  using type = double;
};
template <typename A>
struct AccOf<A, double> {
  using type = double;
};
template <>
struct AccOf<double, double> {
  using type = double;
};

template <typename in_t, typename out_t>
void mix_rows_entry(const MixArgs& args, int64_t u0, int64_t u1) {
  mix_rows_units<in_t, out_t, typename AccOf<in_t, out_t>::type>(args, u0, u1);
}
template <typename scalar_t>
void pairs_entry(const PairArgs& args, int64_t u0, int64_t u1) {
  pairs_units<scalar_t, typename AccOf<scalar_t, scalar_t>::type>(args, u0, u1);
}

}  // namespace

#define MIXUP_ROW(in_t) \
  { &mix_rows_entry<in_t, float>, &mix_rows_entry<in_t, double>, &mix_rows_entry<in_t, f16>, &mix_rows_entry<in_t, bf16> }

// Indexed by DType: kF32, kF64, kF16, kBF16, kU8 (inputs) and the first four (outputs).
extern const KernelTable kTable;
const KernelTable kTable = {
    MIXUP_ISA_NAME,
    {MIXUP_ROW(float), MIXUP_ROW(double), MIXUP_ROW(f16), MIXUP_ROW(bf16), MIXUP_ROW(uint8_t)},
    {&pairs_entry<float>, &pairs_entry<double>, &pairs_entry<f16>, &pairs_entry<bf16>},
};

#undef MIXUP_ROW
#undef MIXUP_INLINE
#undef MIXUP_LAMBDA_INLINE

}  // namespace MIXUP_ISA
}  // namespace mixup_fused
