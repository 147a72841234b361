// The cut-mask loops: a free-form mask [B, D, H, W] (one byte per pixel)
// says where each row takes its partner's pixels, out of place, in place and
// in the backward. Compiled per instruction set: loops.h includes this file
// inside its per-ISA namespace.

// dst[j] = f(b[j]) where the cut mask m[j] is nonzero, else f(a[j]): a
// select per element, no branch (both sides are loaded and transformed).
template <typename in_t, typename out_t, typename acc_t>
MIXUP_INLINE void select_span(out_t* dst, const in_t* a, const in_t* b, const uint8_t* m, int64_t n,
                              const Norm<acc_t>& nm, int64_t c, bool cycle) {
  with_transform(nm, c, cycle, [=](auto f) MIXUP_LAMBDA_INLINE {
    out_t* __restrict d = dst;
    const in_t* __restrict xa = a;
    const in_t* __restrict xb = b;
    const uint8_t* __restrict mk = m;
    for (int64_t j = 0; j < n; ++j) {
      const acc_t va = f(ld<acc_t>(xa[j]), j);
      const acc_t vb = f(ld<acc_t>(xb[j]), j);
      d[j] = Narrow<out_t>::from(mk[j] != 0 ? vb : va);
    }
  });
}

// The backward of a cut-mask row: (own term or +0) + (partner term or +0),
// as the reference sums them: g[k] outside cut k, g[q] inside cut q.
template <typename in_t, typename out_t, typename acc_t>
MIXUP_INLINE void cut_grad_span(out_t* __restrict dst, const in_t* __restrict a, const in_t* __restrict b,
                                const uint8_t* __restrict ma, const uint8_t* __restrict mb, int64_t n) {
  const acc_t zero = acc_t(0);
  for (int64_t j = 0; j < n; ++j) {
    const acc_t va = ld<acc_t>(a[j]);
    const acc_t vb = ld<acc_t>(b[j]);
    dst[j] = Narrow<out_t>::from((ma[j] != 0 ? zero : va) + (mb[j] != 0 ? vb : zero));
  }
}

// The storage of an element as an unsigned integer of its width: in-place
// cuts and label maps move bits, never values.
template <int N>
struct Bits {
  using type = uint64_t;
};
template <> struct Bits<1> { using type = uint8_t; };
template <> struct Bits<2> { using type = uint16_t; };
template <> struct Bits<4> { using type = uint32_t; };

// Two rows of a pair, each taking the other's element where its own cut mask
// is set: one read and one write of both, a select per element.
template <typename T>
MIXUP_INLINE void select_pair_span(T* __restrict xi, T* __restrict xp, const uint8_t* __restrict mi,
                                   const uint8_t* __restrict mp, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const T a = xi[j];
    const T b = xp[j];
    xi[j] = mi[j] != 0 ? b : a;
    xp[j] = mp[j] != 0 ? a : b;
  }
}

// The cut mask's line (d, h) of a row, one byte per element of an image
// line: kNCHW lines are the mask's own lines of W; a kNHWC line of W * C
// elements repeats each mask byte C times, spread out in a buffer per slot
// (the two rows of a pair, or a row and its partner).
struct MaskLines {
  const uint8_t* mask;
  int64_t per_row, W, C;
  uint8_t* buf;  // [2, W * C], kNHWC only
  MaskLines(const uint8_t* m, const Geometry& g)
      : mask(m), per_row(g.D * g.H * g.W), W(g.W), C(g.C), buf(nullptr) {
    if (m != nullptr && g.layout == kNHWC) buf = new uint8_t[2 * (g.W * g.C > 0 ? g.W * g.C : 1)];
  }
  ~MaskLines() { delete[] buf; }
  MaskLines(const MaskLines&) = delete;
  MaskLines& operator=(const MaskLines&) = delete;
  MIXUP_INLINE const uint8_t* line(int slot, int64_t row, int64_t dh) const {
    const uint8_t* src = mask + row * per_row + dh * W;
    if (buf == nullptr) return src;
    uint8_t* __restrict dst = buf + slot * W * C;
    for (int64_t w = 0; w < W; ++w)
      for (int64_t c = 0; c < C; ++c) dst[w * C + c] = src[w];
    return dst;
  }
};

// Units [u0, u1) over (row or pair r, line range): f(r, off, L, li) for each
// line, starting at element ``off`` of the row, L elements long, at ``li``.
template <typename F>
MIXUP_INLINE void for_unit_lines(const Geometry& g, int64_t u0, int64_t u1, F&& f) {
  const int64_t L = line_len(g), nlines = num_lines(g), lpu = lines_per_unit(g);
  const int64_t upr = units_per_row(g, true);
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t r = u / upr, l0 = (u % upr) * lpu, l1 = min64(nlines, l0 + lpu);
    LineIndex li(g, l0);
    for (int64_t l = l0; l < l1; ++l, li.next()) f(r, l * L, L, li);
  }
}

// Out-of-place forward and backward with a cut mask, over lines: the
// partner where row i's mask is set (forward); g[i] outside cut i plus g[q]
// inside cut q (backward, q = pl.src).
template <typename in_t, typename out_t, typename acc_t>
void cut_mask_rows_units(const MixArgs& args, const Norm<acc_t>& nm, int64_t u0, int64_t u1) {
  const Geometry& g = args.g;
  const in_t* x = static_cast<const in_t*>(args.x);
  out_t* out = static_cast<out_t*>(args.out);
  const bool cycle = g.layout == kNHWC;
  const MaskLines cut(args.cut_mask, g);
  for_unit_lines(g, u0, u1, [&](int64_t i, int64_t off, int64_t L, const LineIndex& li) MIXUP_LAMBDA_INLINE {
    const int64_t src = args.plan[i].src, dh = li.dh();
    const in_t* xa = x + i * g.x_stride;
    const in_t* xb = x + src * g.x_stride;
    out_t* o = out + i * g.out_stride;
    prefetch_span<0>(xa, off, L, g.row);
    prefetch_span<0>(xb, off, L, g.row);
    prefetch_span<1>(o, off, L, g.row);
    const uint8_t* mi = cut.line(0, i, dh);
    if (!args.backward)
      select_span<in_t, out_t, acc_t>(o + off, xa + off, xb + off, mi, L, nm, li.c, cycle);
    else
      cut_grad_span<in_t, out_t, acc_t>(o + off, xa + off, xb + off, mi, cut.line(1, src, dh), L);
  });
}

// In place with a cut mask: each row of a pair takes the other's pixels
// where its own mask is set, over lines (a row paired with itself is kept:
// where(C, x, x) is x). Elements move as bits.
template <typename scalar_t>
void cut_mask_pairs_units(const PairArgs& args, int64_t u0, int64_t u1) {
  using bits_t = typename Bits<sizeof(scalar_t)>::type;
  const Geometry& g = args.g;
  bits_t* x = static_cast<bits_t*>(args.x);
  const MaskLines cut(args.cut_mask, g);
  for_unit_lines(g, u0, u1, [&](int64_t r, int64_t off, int64_t L, const LineIndex& li) MIXUP_LAMBDA_INLINE {
    const int64_t i = args.firsts[r], p = args.perm[i], dh = li.dh();
    if (i == p) return;
    bits_t* xi = x + i * g.x_stride;
    bits_t* xp = x + p * g.x_stride;
    prefetch_span<1>(xi, off, L, g.row);
    prefetch_span<1>(xp, off, L, g.row);
    select_pair_span(xi + off, xp + off, cut.line(0, i, dh), cut.line(1, p, dh), L);
  });
}
