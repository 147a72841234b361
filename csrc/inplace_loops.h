// The in-place loops: each pair (i, perm[i]) of an involution is read once
// and written once, the physical minimum. Compiled per instruction set:
// loops.h includes this file inside its per-ISA namespace.

// What an in-place pair segment writes into a row: the blend, the partner's
// pixels, or its own (left alone).
constexpr int kMix = 0, kOther = 1, kOwn = 2;

// 32-bit words of two 16-bit elements, at any even address (see f32x2_to_bf16x2).
typedef uint32_t word2_t __attribute__((aligned(2), may_alias));

// Elements as unsigned integers of their size, for moves that keep the bits:
// a loop over the fp16 / bf16 structs themselves stays scalar.
typedef uint16_t raw16_t __attribute__((may_alias));
typedef uint32_t raw32_t __attribute__((may_alias));
typedef uint64_t raw64_t __attribute__((may_alias));
template <int N>
struct RawOf {
  using type = uint8_t;
};
template <>
struct RawOf<2> {
  using type = raw16_t;
};
template <>
struct RawOf<4> {
  using type = raw32_t;
};
template <>
struct RawOf<8> {
  using type = raw64_t;
};

// a[j] <-> b[j] over n elements, bit for bit.
template <typename T>
MIXUP_INLINE void swap_span(T* __restrict a, T* __restrict b, int64_t n) {
  using R = typename RawOf<static_cast<int>(sizeof(T))>::type;
  R* __restrict ra = reinterpret_cast<R*>(a);
  R* __restrict rb = reinterpret_cast<R*>(b);
  for (int64_t j = 0; j < n; ++j) {
    const R t = ra[j];
    ra[j] = rb[j];
    rb[j] = t;
  }
}

template <int SI, int SP, typename scalar_t, typename acc_t>
MIXUP_INLINE void pair_segment_as(scalar_t* __restrict xi, scalar_t* __restrict xp, int64_t j0, int64_t j1, acc_t wi,
                                  acc_t ri, acc_t wp, acc_t rp) {
  if constexpr (IsSame<scalar_t, bf16>::value && IsSame<acc_t, float>::value) {
    // Two elements per word, no lane shuffles (see f32x2_to_bf16x2).
    word2_t* __restrict wi_ = reinterpret_cast<word2_t*>(xi + j0);
    word2_t* __restrict wp_ = reinterpret_cast<word2_t*>(xp + j0);
    const int64_t nw = (j1 - j0) / 2;
    for (int64_t k = 0; k < nw; ++k) {
      const uint32_t a = wi_[k];
      const uint32_t b = wp_[k];
      const float a0 = bf16_lo_to_f32(a), a1 = bf16_hi_to_f32(a);
      const float b0 = bf16_lo_to_f32(b), b1 = bf16_hi_to_f32(b);
      if (SI == kMix) wi_[k] = f32x2_to_bf16x2(wi * a0 + ri * b0, wi * a1 + ri * b1);
      if (SI == kOther) wi_[k] = b;
      if (SP == kMix) wp_[k] = f32x2_to_bf16x2(wp * b0 + rp * a0, wp * b1 + rp * a1);
      if (SP == kOther) wp_[k] = a;
    }
    j0 += 2 * nw;
  }
#if defined(MIXUP_F16C)
  if constexpr (IsSame<scalar_t, f16>::value && IsSame<acc_t, float>::value && (SI == kMix || SP == kMix)) {
    // Eight lanes by F16C; a copied lane keeps its bits (NaN payloads too).
    const __m256 vwi = _mm256_set1_ps(wi), vri = _mm256_set1_ps(ri);
    const __m256 vwp = _mm256_set1_ps(wp), vrp = _mm256_set1_ps(rp);
    if constexpr (SI == kMix && SP == kMix) {
      // Both rows blended: 16 lanes of each per step, one NaN test per step.
      for (; j0 + 16 <= j1; j0 += 16) {
        const __m128i ra0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xi + j0));
        const __m128i ra1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xi + j0 + 8));
        const __m128i rb0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xp + j0));
        const __m128i rb1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xp + j0 + 8));
        const __m256 a0 = _mm256_cvtph_ps(ra0), a1 = _mm256_cvtph_ps(ra1);
        const __m256 b0 = _mm256_cvtph_ps(rb0), b1 = _mm256_cvtph_ps(rb1);
        f32x8x2_to_f16(xi + j0, _mm256_add_ps(_mm256_mul_ps(vwi, a0), _mm256_mul_ps(vri, b0)), xp + j0,
                       _mm256_add_ps(_mm256_mul_ps(vwp, b0), _mm256_mul_ps(vrp, a0)));
        f32x8x2_to_f16(xi + j0 + 8, _mm256_add_ps(_mm256_mul_ps(vwi, a1), _mm256_mul_ps(vri, b1)), xp + j0 + 8,
                       _mm256_add_ps(_mm256_mul_ps(vwp, b1), _mm256_mul_ps(vrp, a1)));
      }
    }
    for (; j0 + 8 <= j1; j0 += 8) {
      const __m128i ra = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xi + j0));
      const __m128i rb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xp + j0));
      const __m256 a = _mm256_cvtph_ps(ra), b = _mm256_cvtph_ps(rb);
      if (SI == kMix) f32x8_to_f16(xi + j0, _mm256_add_ps(_mm256_mul_ps(vwi, a), _mm256_mul_ps(vri, b)));
      if (SI == kOther) _mm_storeu_si128(reinterpret_cast<__m128i*>(xi + j0), rb);
      if (SP == kMix) f32x8_to_f16(xp + j0, _mm256_add_ps(_mm256_mul_ps(vwp, b), _mm256_mul_ps(vrp, a)));
      if (SP == kOther) _mm_storeu_si128(reinterpret_cast<__m128i*>(xp + j0), ra);
    }
  }
#endif
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

// The software prefetch of the in-place line loop (see prefetch_span: 1- and
// 2-byte elements only), for the line ``la`` of the pair (i, p) at xi / xp:
// only the columns that line will move. A blended row's line is read whole
// (and its partner's with it); where both rows are cut, the columns of the
// boxes crossing it, and nothing where none does: asking for the whole line
// there would read from memory the pixels CutMix leaves alone.
template <typename scalar_t>
MIXUP_INLINE void prefetch_pair_line(const PairArgs& args, const LineIndex& la, int64_t i, int64_t p, bool mi,
                                     bool mp, const scalar_t* xi, const scalar_t* xp, int64_t L, int64_t k) {
  if (sizeof(scalar_t) >= 4) return;
  int64_t j0 = 0, j1 = 0;
  if (mi || mp) {
    j1 = i == p && !mi ? 0 : L;
  } else if (i != p) {
    const Box& bi = args.boxes[i];
    const Box& bp = args.boxes[p];
    const bool hi = la.in(bi), hp = la.in(bp);
    if (hi && hp) {
      j0 = min64(bi.x0, bp.x0) * k;
      j1 = max64(bi.x1, bp.x1) * k;
    } else if (hi || hp) {
      j0 = (hi ? bi.x0 : bp.x0) * k;
      j1 = (hi ? bi.x1 : bp.x1) * k;
    }
  }
  if (j0 >= j1) return;
  const uintptr_t e = sizeof(scalar_t);
  for (const scalar_t* r : {xi, xp}) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(r + j0) & ~uintptr_t(63);
    const uintptr_t b = reinterpret_cast<uintptr_t>(r) + static_cast<uintptr_t>(j1) * e;
    for (uintptr_t c = a; c < b; c += 64) __builtin_prefetch(reinterpret_cast<const void*>(c), 1, 3);
    if (i == p) break;
  }
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
      const acc_t wi = static_cast<acc_t>(args.w_self[i]), wp = static_cast<acc_t>(args.w_self[p]);
      const acc_t ri = static_cast<acc_t>(args.w_part[i]), rp = static_cast<acc_t>(args.w_part[p]);
      scalar_t* __restrict xi = x + i * g.x_stride + s;
      if (i == p) {
        if (ri == acc_t(0)) continue;  // blended with weights (1, 0): kept (see below)
        for (int64_t j = 0; j < n; ++j) {
          const acc_t a = ld<acc_t>(xi[j]);
          xi[j] = Narrow<scalar_t>::from(wi * a + ri * a);
        }
        continue;
      }
      scalar_t* __restrict xp = x + p * g.x_stride + s;
      if (ri == acc_t(0) || rp == acc_t(0)) {
        // A row blended with its partner's weight exactly 0 keeps its values
        // bit for bit, as timm skips lam == 1 (1 * a + 0 * b is not a when b
        // is inf or NaN, or a is -0.0). Rare: a float32 Beta draw that rounds to 1.
        pair_segment<scalar_t, acc_t>(ri == acc_t(0) ? kOwn : kMix, rp == acc_t(0) ? kOwn : kMix, xi, xp, 0, n, wi,
                                      ri, wp, rp);
        continue;
      }
      for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
        prefetch_span<1>(xi, b0, kBlock, n);
        prefetch_span<1>(xp, b0, kBlock, n);
        pair_segment_as<kMix, kMix, scalar_t, acc_t>(xi, xp, b0, min64(n, b0 + kBlock), wi, ri, wp, rp);
      }
    }
    return;
  }
  if (args.cut_mask != nullptr) {
    cut_mask_pairs_units<scalar_t>(args, u0, u1);
    return;
  }
  const int64_t L = line_len(g), nlines = num_lines(g), lpu = lines_per_unit(g);
  const int64_t k = g.layout == kNHWC ? g.C : 1;
  const int64_t ahead = (kAhead + L - 1) / L;  // lines
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t i = args.firsts[u / upr], p = args.perm[i];
    const int64_t l0 = (u % upr) * lpu, l1 = min64(nlines, l0 + lpu);
    const acc_t wi = static_cast<acc_t>(args.w_self[i]), wp = static_cast<acc_t>(args.w_self[p]);
    const acc_t ri = static_cast<acc_t>(args.w_part[i]), rp = static_cast<acc_t>(args.w_part[p]);
    const Box& bi = args.boxes[i];
    const Box& bp = args.boxes[p];
    // A row blended with its partner's weight exactly 0 is kept, as above: it
    // has no box, so as a cut row it keeps its own pixels everywhere.
    const bool mi = args.mix_rows[i] && ri != acc_t(0), mp = args.mix_rows[p] && rp != acc_t(0);
    scalar_t* xi = x + i * g.x_stride;
    scalar_t* xp = x + p * g.x_stride;
    LineIndex li(g, l0);
    LineIndex la(g, l0 + ahead);  // the line prefetched (used while l + ahead < nlines)
    for (int64_t l = l0; l < l1; ++l, li.next(), la.next()) {
      const int64_t off = l * L;
      if (l + ahead < nlines) prefetch_pair_line(args, la, i, p, mi, mp, xi + off + ahead * L, xp + off + ahead * L, L, k);
      // (A kept blended row has no box: its NO_BOX coordinates are never a span,
      // which matters where a line has no box dims of its own, as in 1-D.)
      const bool hi = !args.mix_rows[i] && li.in(bi);
      const bool hp = !args.mix_rows[p] && li.in(bp);
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
        // of both boxes is faster than the segments (bench: the cutmix rows,
        // ours mix in-place); the bits are the same.
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
#else
      if (!mi && !mp) {
        // Both cut: the rows swap where their boxes overlap; elsewhere each
        // box takes the partner's pixels, whose own box does not reach there,
        // so the copies may run in any order. Two memcpys and one swap loop,
        // with fewer data-dependent branches per line than the segments.
        scalar_t* __restrict ri_ = xi + off;
        scalar_t* __restrict rp_ = xp + off;
        const int64_t o0 = max64(i0, p0), o1 = min64(i1, p1);
        const int64_t e = static_cast<int64_t>(sizeof(scalar_t));
        if (o0 < o1) {
          swap_span(ri_ + o0, rp_ + o0, o1 - o0);
          if (i0 < o0) std::memcpy(ri_ + i0, rp_ + i0, (o0 - i0) * e);
          if (o1 < i1) std::memcpy(ri_ + o1, rp_ + o1, (i1 - o1) * e);
          if (p0 < o0) std::memcpy(rp_ + p0, ri_ + p0, (o0 - p0) * e);
          if (o1 < p1) std::memcpy(rp_ + o1, ri_ + o1, (p1 - o1) * e);
        } else {
          if (i0 < i1) std::memcpy(ri_ + i0, rp_ + i0, (i1 - i0) * e);
          if (p0 < p1) std::memcpy(rp_ + p0, ri_ + p0, (p1 - p0) * e);
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

