// The label-map loops: maps [B, D * H * W] move with the pixels, by lines of
// W labels: copied by segments at a box's edges, or selected per element
// with a cut mask's line. Labels are moved as bits (T: an unsigned integer of
// the label's width), never blended. Compiled per instruction set: loops.h
// includes this file inside its per-ISA namespace.

template <typename T>
MIXUP_INLINE void copy_labels(T* dst, const T* src, int64_t n) {
  if (n > 0) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
}

// Out of place: unit u covers lines [l0, l1) of output row i.
template <typename T>
void maps_out_units(const MapArgs& a, int64_t u0, int64_t u1) {
  const int64_t W = a.W, DH = a.D * a.H, S = DH * W;
  const int64_t lpu = map_lines_per_unit(W), upr = map_units_per_row(a.D, a.H, W);
  const T* in = static_cast<const T*>(a.in);
  T* out = static_cast<T*>(a.out);
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t i = u / upr, l0 = (u % upr) * lpu, l1 = min64(DH, l0 + lpu);
    const T* own = in + i * S;
    const T* part = in + a.perm[i] * S;
    T* o = out + i * S;
    if (a.cut_rows == nullptr || !a.cut_rows[i]) {  // a blended row keeps its own map
      copy_labels(o + l0 * W, own + l0 * W, (l1 - l0) * W);
      continue;
    }
    if (a.cut_mask != nullptr) {
      const uint8_t* __restrict m = a.cut_mask + i * S;
      T* __restrict d = o;
      const T* __restrict ma = own;
      const T* __restrict mb = part;
      for (int64_t j = l0 * W; j < l1 * W; ++j) d[j] = m[j] != 0 ? mb[j] : ma[j];
      continue;
    }
    const Box& b = a.boxes[i];
    LineIndex li(a.D, a.H, 0, l0);
    for (int64_t l = l0; l < l1; ++l, li.next()) {
      const int64_t off = l * W;
      if (!li.in(b)) {
        copy_labels(o + off, own + off, W);
        continue;
      }
      copy_labels(o + off, own + off, b.x0);
      copy_labels(o + off + b.x0, part + off + b.x0, b.x1 - b.x0);
      copy_labels(o + off + b.x1, own + off + b.x1, W - b.x1);
    }
  }
}

// In place on an involution: unit u covers lines [l0, l1) of the pair (i, p),
// each label of both rows read once and written once.
template <typename T>
void maps_pairs_units(const MapArgs& a, int64_t u0, int64_t u1) {
  const int64_t W = a.W, DH = a.D * a.H, S = DH * W;
  const int64_t lpu = map_lines_per_unit(W), upr = map_units_per_row(a.D, a.H, W);
  T* maps = static_cast<T*>(const_cast<void*>(a.in));
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t i = a.firsts[u / upr], p = a.perm[i];
    const int64_t l0 = (u % upr) * lpu, l1 = min64(DH, l0 + lpu);
    const bool ci = a.cut_rows != nullptr && a.cut_rows[i], cp = a.cut_rows != nullptr && a.cut_rows[p];
    if (i == p || (!ci && !cp)) continue;  // nothing moves
    T* mi = maps + i * S;
    T* mp = maps + p * S;
    if (a.cut_mask != nullptr) {
      for (int64_t l = l0; l < l1; ++l)
        select_pair_span(mi + l * W, mp + l * W, a.cut_mask + i * S + l * W, a.cut_mask + p * S + l * W, W);
      continue;
    }
    const Box& bi = a.boxes[i];
    const Box& bp = a.boxes[p];
    LineIndex li(a.D, a.H, 0, l0);
    for (int64_t l = l0; l < l1; ++l, li.next()) {
      const bool hi = ci && li.in(bi);
      const bool hp = cp && li.in(bp);
      if (!hi && !hp) continue;
      const int64_t i0 = hi ? bi.x0 : 0, i1 = hi ? bi.x1 : 0;
      const int64_t p0 = hp ? bp.x0 : 0, p1 = hp ? bp.x1 : 0;
      T* __restrict ri = mi + l * W;
      T* __restrict rp = mp + l * W;
      const Segments sg(i0, i1, p0, p1, W);
      for (int q = 0; q < 5; ++q) {
        const int64_t j0 = sg.cut[q], j1 = sg.cut[q + 1];
        if (j0 >= j1) continue;
        const bool ti = j0 >= i0 && j0 < i1, tp = j0 >= p0 && j0 < p1;
        if (ti && tp)
          for (int64_t j = j0; j < j1; ++j) {
            const T v = ri[j];
            ri[j] = rp[j];
            rp[j] = v;
          }
        else if (ti)
          copy_labels(ri + j0, rp + j0, j1 - j0);
        else if (tp)
          copy_labels(rp + j0, ri + j0, j1 - j0);
      }
    }
  }
}

template <typename T>
void maps_units(const MapArgs& a, int64_t u0, int64_t u1) {
  if (a.out != nullptr)
    maps_out_units<T>(a, u0, u1);
  else
    maps_pairs_units<T>(a, u0, u1);
}
