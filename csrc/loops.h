// The CPU inner loops, compiled once per instruction set.
//
// kernels_<isa>.cpp sets a target pragma, defines MIXUP_ISA and includes this
// file; isa.cpp picks a table at run time (like ATen's CPU
// capability dispatch). Everything here has internal linkage and uses no
// standard-library templates, so code built for one instruction set is never
// shared with another. Loops run over contiguous spans with constant weights
// and use branch-free conversions, so the compiler vectorises them.

#include <cstdint>
#include <cstring>
#include <vector>

#include "kernel_types.h"

#if defined(MIXUP_BLEND_U8_AVX2) || defined(MIXUP_F16C) || defined(MIXUP_DEINTERLEAVE_SSSE3)
#include <immintrin.h>
#endif

#ifndef MIXUP_ISA
#error "define MIXUP_ISA before including loops.h"
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

#include "half.h"  // (inside this namespace: per instruction set, too)

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

template <typename T>
struct IsU8 {
  static constexpr bool value = false;
};
template <>
struct IsU8<uint8_t> {
  static constexpr bool value = true;
};
template <typename A, typename B>
struct IsSame {
  static constexpr bool value = false;
};
template <typename A>
struct IsSame<A, A> {
  static constexpr bool value = true;
};

// Software prefetch for the streaming loops: before working on elements
// [from, from + len) of a row, ask for the same span kAhead elements further
// on (clipped to the row's end, ``limit``). Loops over 1- and 2-byte elements
// (bf16, fp16, uint8) do much arithmetic per cache line and otherwise have
// too few loads in flight to hide DRAM latency (bench: the bf16 and uint8
// rows, caches flushed); float32 streams are left to the hardware prefetcher.
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

#include "normalize.h"  // (inside this namespace, as half.h)

// Where a run of lines is: channel c (kNCHW; 0 for kNHWC lines) and the
// spatial (d, h), advanced line by line without a division per line.
struct LineIndex {
  int64_t c, d, h, D, H;
  MIXUP_INLINE LineIndex(int64_t D_, int64_t H_, int64_t c_, int64_t dh) : c(c_), d(dh / H_), h(dh % H_), D(D_), H(H_) {}
  MIXUP_INLINE LineIndex(const Geometry& g, int64_t l) : LineIndex(g.D, g.H, line_channel(g, l), line_dh(g, l)) {}
  MIXUP_INLINE void next() {
    if (++h < H) return;
    h = 0;
    if (++d < D) return;
    d = 0;
    ++c;
  }
  MIXUP_INLINE int64_t dh() const { return d * H + h; }
  // Whether this line crosses the box.
  MIXUP_INLINE bool in(const Box& b) const { return d >= b.d0 && d < b.d1 && h >= b.y0 && h < b.y1; }
};

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
      const int64_t c = lines ? line_channel(g, first + k) : 0;
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

#include "cut_mask_loops.h"  // (inside this namespace, as half.h)

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
  if (args.cut_mask != nullptr) {
    cut_mask_rows_units<in_t, out_t, acc_t>(args, nm, u0, u1);
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
    LineIndex li(g, l0);
    for (int64_t l = l0; l < l1; ++l, li.next()) {
      const int64_t c = li.c;
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
        if (!li.in(bs) || bs.x0 == bs.x1) {
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
      const bool hs = !pl.self_mix && li.in(bs);
      const bool hp = !pl.part_mix && li.in(bp);
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

#include "inplace_loops.h"  // (inside this namespace, as half.h)

#include "collate_loops.h"  // (inside this namespace, as half.h)

#include "map_loops.h"  // (inside this namespace, as half.h)

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
    &collate_units,
    {&maps_units<uint64_t>, &maps_units<uint32_t>, &maps_units<uint8_t>},
};

#undef MIXUP_ROW
#undef MIXUP_INLINE
#undef MIXUP_LAMBDA_INLINE

}  // namespace MIXUP_ISA
}  // namespace mixup_fused
