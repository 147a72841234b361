// The normalising prologue of the loops, (v - mean[c]) / std[c], compiled
// per instruction set: loops.h includes this file inside its per-ISA
// namespace. Each span's loop is compiled once per transform (identity, one
// channel's statistics, or a statistic per column of an NHWC line).

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

