// mixup_fused: op schemas and the CPU kernels.
//
// The schemas are declared once here (TORCH_LIBRARY); the CPU kernels are
// registered below and the CUDA kernels are registered from Python onto the
// Triton launchers (mixup_fused/ops.py).
//
// Every CPU kernel validates all of its arguments before it writes anything,
// so a call that raises leaves its inputs untouched. Work is split over
// (row, chunk) units with at::parallel_for; inner loops run over contiguous
// spans with constant weights so that the compiler can vectorise them.

#include <Python.h>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

// An empty Python module, so that ``import mixup_fused._C`` loads this
// library and runs the registrations below (as in pytorch/extension-cpp).
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace mixup_fused {
namespace {

constexpr int64_t kChunk = 32768;  // elements per parallel work unit

struct Box {
  int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
};

enum class Layout { Flat, NCHW, NHWC };

bool is_channels_last(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// Rows must be dense runs in contiguous or channels_last order; anything else
// is copied to contiguous first.
at::Tensor dense_rows(const at::Tensor& x) {
  if (x.is_contiguous() || is_channels_last(x)) return x;
  return x.contiguous();
}

at::Tensor empty_out_like(const at::Tensor& x, at::ScalarType dtype) {
  auto opts = x.options().dtype(dtype);
  if (is_channels_last(x)) return at::empty(x.sizes(), opts, at::MemoryFormat::ChannelsLast);
  return at::empty(x.sizes(), opts);
}

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// ---------------------------------------------------------------------------
// Validation (the same rules as mixup_fused/_checks.py)
// ---------------------------------------------------------------------------

void check_same_device(const at::Tensor& x, const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.device() == x.device(), "mixup_fused: ", name, " is on ", t.device(),
                    " but x is on ", x.device(), "; all tensors must be on the same device");
}

std::vector<int64_t> checked_perm(const at::Tensor& x, const at::Tensor& perm, bool involution) {
  const int64_t B = x.size(0);
  check_same_device(x, perm, "perm");
  TORCH_CHECK_TYPE(perm.scalar_type() == at::kLong || perm.scalar_type() == at::kInt,
                   "mixup_fused: perm must be an int64 tensor, got ", perm.scalar_type());
  TORCH_CHECK_VALUE(perm.dim() == 1 && perm.size(0) == B, "mixup_fused: perm must have shape [B] = [", B,
                    "], got ", perm.sizes());
  auto p = perm.to(at::kLong).contiguous();
  std::vector<int64_t> out(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + B);
  std::vector<char> seen(B, 0);
  for (int64_t i = 0; i < B; ++i) {
    TORCH_CHECK_VALUE(out[i] >= 0 && out[i] < B, "mixup_fused: perm[", i, "] = ", out[i],
                      " is out of range [0, ", B, ")");
    TORCH_CHECK_VALUE(!seen[out[i]], "mixup_fused: perm is not a permutation: ", out[i], " appears twice");
    seen[out[i]] = 1;
  }
  if (involution) {
    for (int64_t i = 0; i < B; ++i) {
      TORCH_CHECK_VALUE(out[out[i]] == i, "mixup_fused: inplace=True needs perm to be an involution ",
                        "(perm[perm[i]] == i), but perm[", i, "] = ", out[i], " and perm[", out[i],
                        "] = ", out[out[i]]);
    }
  }
  return out;
}

std::vector<double> checked_lam(const at::Tensor& x, const at::Tensor& lam) {
  const int64_t B = x.size(0);
  check_same_device(x, lam, "lam");
  TORCH_CHECK_TYPE(is_float(lam.scalar_type()), "mixup_fused: lam must be a floating tensor, got ",
                   lam.scalar_type());
  TORCH_CHECK_VALUE(lam.dim() == 1 && lam.size(0) == B, "mixup_fused: lam must have shape [B] = [", B,
                    "], got ", lam.sizes());
  auto l = lam.to(at::kDouble).contiguous();
  std::vector<double> out(l.data_ptr<double>(), l.data_ptr<double>() + B);
  for (int64_t i = 0; i < B; ++i) {
    TORCH_CHECK_VALUE(out[i] >= 0.0 && out[i] <= 1.0, "mixup_fused: lam[", i, "] = ", out[i],
                      " must be in [0, 1]");
  }
  return out;
}

std::vector<Box> checked_boxes(const at::Tensor& x, const c10::optional<at::Tensor>& boxes) {
  std::vector<Box> out;
  if (!boxes.has_value()) return out;
  const auto& b = *boxes;
  const int64_t B = x.size(0);
  check_same_device(x, b, "boxes");
  TORCH_CHECK_VALUE(x.dim() == 4, "mixup_fused: boxes (CutMix) need x of shape [B, C, H, W], got x of shape ",
                    x.sizes());
  TORCH_CHECK_TYPE(!is_float(b.scalar_type()) && b.scalar_type() != at::kBool,
                   "mixup_fused: boxes must be an integer tensor, got ", b.scalar_type());
  TORCH_CHECK_VALUE(b.dim() == 2 && b.size(0) == B && b.size(1) == 4,
                    "mixup_fused: boxes must have shape [B, 4] = [", B, ", 4], got ", b.sizes());
  const int64_t H = x.size(2), W = x.size(3);
  auto bl = b.to(at::kLong).contiguous();
  const int64_t* d = bl.data_ptr<int64_t>();
  out.resize(B);
  for (int64_t i = 0; i < B; ++i) {
    Box bx{d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]};
    TORCH_CHECK_VALUE(0 <= bx.y0 && bx.y0 <= bx.y1 && bx.y1 <= H && 0 <= bx.x0 && bx.x0 <= bx.x1 && bx.x1 <= W,
                      "mixup_fused: boxes[", i, "] = (", bx.y0, ", ", bx.y1, ", ", bx.x0, ", ", bx.x1,
                      ") must satisfy 0 <= y0 <= y1 <= H = ", H, " and 0 <= x0 <= x1 <= W = ", W);
    out[i] = bx;
  }
  return out;
}

// Returns the class ids (empty for soft targets).
std::vector<int64_t> checked_target(const at::Tensor& x, const at::Tensor& target, int64_t num_classes,
                                    double label_smoothing) {
  const int64_t B = x.size(0);
  TORCH_CHECK_VALUE(num_classes >= 1, "mixup_fused: num_classes must be >= 1, got ", num_classes);
  TORCH_CHECK_VALUE(label_smoothing >= 0.0 && label_smoothing <= 1.0,
                    "mixup_fused: label_smoothing must be in [0, 1], got ", label_smoothing);
  check_same_device(x, target, "target");
  std::vector<int64_t> ids;
  if (is_float(target.scalar_type())) {
    TORCH_CHECK_VALUE(target.dim() == 2 && target.size(0) == B && target.size(1) == num_classes,
                      "mixup_fused: soft target must have shape [B, num_classes] = [", B, ", ", num_classes,
                      "], got ", target.sizes());
    return ids;
  }
  TORCH_CHECK_TYPE(target.scalar_type() != at::kBool && !at::isComplexType(target.scalar_type()),
                   "mixup_fused: target must hold int64 class ids or floating soft targets, got ",
                   target.scalar_type());
  TORCH_CHECK_VALUE(target.dim() == 1 && target.size(0) == B, "mixup_fused: target (class ids) must have shape [B] = [",
                    B, "], got ", target.sizes());
  auto t = target.to(at::kLong).contiguous();
  ids.assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + B);
  for (int64_t i = 0; i < B; ++i) {
    TORCH_CHECK_VALUE(ids[i] >= 0 && ids[i] < num_classes, "mixup_fused: target[", i, "] = ", ids[i],
                      " is not a class id in [0, num_classes = ", num_classes, ")");
  }
  return ids;
}

void check_x(const at::Tensor& x, bool normalize) {
  TORCH_CHECK_VALUE(x.dim() >= 1, "mixup_fused: x must have a batch dimension, got a 0-d tensor");
  if (normalize) {
    TORCH_CHECK_TYPE(is_float(x.scalar_type()) || x.scalar_type() == at::kByte,
                     "mixup_fused: x must be uint8 or floating when mean/std are given, got ", x.scalar_type());
  } else {
    TORCH_CHECK_TYPE(is_float(x.scalar_type()), "mixup_fused: x must be a floating tensor (float32, float16, ",
                     "bfloat16 or float64), got ", x.scalar_type(),
                     "; integer images need mean and std to be normalised");
  }
}

struct Norm {
  bool on = false;
  std::vector<double> mean, std;
};

Norm checked_norm(const at::Tensor& x, const c10::optional<at::Tensor>& mean, const c10::optional<at::Tensor>& std) {
  Norm n;
  TORCH_CHECK_VALUE(mean.has_value() == std.has_value(), "mixup_fused: mean and std must be given together");
  if (!mean.has_value()) return n;
  TORCH_CHECK_VALUE(x.dim() == 4, "mixup_fused: mean/std need x of shape [B, C, H, W], got ", x.sizes());
  const int64_t C = x.size(1);
  for (const auto* pr : {&mean, &std}) {
    const char* name = pr == &mean ? "mean" : "std";
    const auto& t = **pr;
    check_same_device(x, t, name);
    TORCH_CHECK_TYPE(is_float(t.scalar_type()), "mixup_fused: ", name, " must be a floating tensor, got ",
                     t.scalar_type());
    TORCH_CHECK_VALUE(t.numel() == C, "mixup_fused: ", name, " must have C = ", C, " values, got ", t.numel());
  }
  auto m = mean->to(at::kDouble).contiguous();
  auto s = std->to(at::kDouble).contiguous();
  n.on = true;
  n.mean.assign(m.data_ptr<double>(), m.data_ptr<double>() + C);
  n.std.assign(s.data_ptr<double>(), s.data_ptr<double>() + C);
  for (int64_t c = 0; c < C; ++c) {
    TORCH_CHECK_VALUE(std::isfinite(n.mean[c]), "mixup_fused: mean[", c, "] = ", n.mean[c], " must be finite");
    TORCH_CHECK_VALUE(std::isfinite(n.std[c]) && n.std[c] != 0.0, "mixup_fused: std[", c, "] = ", n.std[c],
                      " must be finite and nonzero");
  }
  return n;
}

// ---------------------------------------------------------------------------
// Inner loops
// ---------------------------------------------------------------------------

template <typename acc_t>
struct NormT {
  bool on = false;
  int64_t C = 1;
  std::vector<acc_t> mean, std;
};

// dst[j] = f(src[j]) over n elements; f normalises with channel c (NCHW) or
// with channels cycling from 0 (NHWC, n a multiple of C).
template <typename in_t, typename out_t, typename acc_t>
inline void copy_span(out_t* __restrict dst, const in_t* __restrict src, int64_t n, const NormT<acc_t>& nm,
                      int64_t c, bool cycle) {
  if (!nm.on) {
    for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<out_t>(static_cast<acc_t>(src[j]));
  } else if (!cycle) {
    const acc_t m = nm.mean[c], s = nm.std[c];
    for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<out_t>((static_cast<acc_t>(src[j]) - m) / s);
  } else {
    const int64_t C = nm.C;
    for (int64_t j = 0; j < n; j += C)
      for (int64_t k = 0; k < C; ++k)
        dst[j + k] = static_cast<out_t>((static_cast<acc_t>(src[j + k]) - nm.mean[k]) / nm.std[k]);
  }
}

// dst[j] = ws * f(a[j]) + wp * f(b[j]).
template <typename in_t, typename out_t, typename acc_t>
inline void mix_span(out_t* __restrict dst, const in_t* __restrict a, const in_t* __restrict b, int64_t n, acc_t ws,
                     acc_t wp, const NormT<acc_t>& nm, int64_t c, bool cycle) {
  if (!nm.on) {
    for (int64_t j = 0; j < n; ++j)
      dst[j] = static_cast<out_t>(ws * static_cast<acc_t>(a[j]) + wp * static_cast<acc_t>(b[j]));
  } else if (!cycle) {
    const acc_t m = nm.mean[c], s = nm.std[c];
    for (int64_t j = 0; j < n; ++j) {
      const acc_t va = (static_cast<acc_t>(a[j]) - m) / s;
      const acc_t vb = (static_cast<acc_t>(b[j]) - m) / s;
      dst[j] = static_cast<out_t>(ws * va + wp * vb);
    }
  } else {
    const int64_t C = nm.C;
    for (int64_t j = 0; j < n; j += C)
      for (int64_t k = 0; k < C; ++k) {
        const acc_t va = (static_cast<acc_t>(a[j + k]) - nm.mean[k]) / nm.std[k];
        const acc_t vb = (static_cast<acc_t>(b[j + k]) - nm.mean[k]) / nm.std[k];
        dst[j + k] = static_cast<out_t>(ws * va + wp * vb);
      }
  }
}

struct Geometry {
  Layout layout = Layout::Flat;
  int64_t B = 0, row = 0, C = 1, H = 1, W = 1;
  int64_t x_stride = 0, out_stride = 0;
  // A "line" is a run with constant h (and constant c for NCHW).
  int64_t line_len() const { return layout == Layout::NHWC ? W * C : W; }
  int64_t lines() const { return layout == Layout::NHWC ? H : C * H; }
  int64_t col_scale() const { return layout == Layout::NHWC ? C : 1; }
};

Geometry geometry(const at::Tensor& x, const at::Tensor* out, bool image) {
  Geometry g;
  g.B = x.size(0);
  g.row = g.B > 0 ? x.numel() / g.B : 0;
  g.x_stride = g.B > 1 ? x.stride(0) : g.row;
  g.out_stride = out ? (g.B > 1 ? out->stride(0) : g.row) : g.x_stride;
  if (image) {
    g.layout = is_channels_last(x) ? Layout::NHWC : Layout::NCHW;
    g.C = x.size(1);
    g.H = x.size(2);
    g.W = x.size(3);
  }
  return g;
}

// Splits [0, n) into parallel units and calls fn(unit_begin, unit_end) on each.
template <typename F>
void parallel_units(int64_t n, int64_t grain, const F& fn) {
  at::parallel_for(0, n, grain, fn);
}

// ---------------------------------------------------------------------------
// Out-of-place forward / backward
// ---------------------------------------------------------------------------

// Weight as the kernels see it: float32 unless computing in float64.
template <typename acc_t>
acc_t weight(double lam) {
  return std::is_same<acc_t, double>::value ? static_cast<acc_t>(lam) : static_cast<acc_t>(static_cast<float>(lam));
}

template <typename acc_t>
struct RowPlan {
  int64_t src = 0;
  acc_t ws = 1, wp = 0;
  Box self_box, part_box;
};

// out[i] = mix of x[i] and x[plan[i].src]; mixup weights or CutMix boxes.
// ``backward`` selects the two-box sum form (boxes may differ per term).
template <typename in_t, typename out_t, typename acc_t>
void mix_rows(const in_t* x, out_t* out, const Geometry& g, const std::vector<RowPlan<acc_t>>& plan, bool cutmix,
              bool backward, const NormT<acc_t>& nm) {
  const bool by_lines = cutmix || nm.on;
  if (!by_lines) {
    const int64_t chunks = (g.row + kChunk - 1) / kChunk;
    parallel_units(g.B * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const int64_t i = u / chunks, s = (u % chunks) * kChunk;
        const int64_t n = std::min(kChunk, g.row - s);
        const auto& pl = plan[i];
        mix_span<in_t, out_t, acc_t>(out + i * g.out_stride + s, x + i * g.x_stride + s,
                                     x + pl.src * g.x_stride + s, n, pl.ws, pl.wp, nm, 0, false);
      }
    });
    return;
  }
  const int64_t L = g.line_len(), nlines = g.lines(), k = g.col_scale();
  const bool cycle = g.layout == Layout::NHWC;
  const int64_t lines_per_unit = std::max<int64_t>(1, kChunk / std::max<int64_t>(L, 1));
  const int64_t units_per_row = (nlines + lines_per_unit - 1) / lines_per_unit;
  parallel_units(g.B * units_per_row, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t i = u / units_per_row;
      const int64_t l0 = (u % units_per_row) * lines_per_unit;
      const int64_t l1 = std::min(nlines, l0 + lines_per_unit);
      const auto& pl = plan[i];
      const in_t* xa = x + i * g.x_stride;
      const in_t* xb = x + pl.src * g.x_stride;
      out_t* o = out + i * g.out_stride;
      for (int64_t l = l0; l < l1; ++l) {
        const int64_t h = cycle ? l : l % g.H;
        const int64_t c = cycle ? 0 : l / g.H;
        const int64_t off = l * L;
        if (!cutmix) {
          mix_span<in_t, out_t, acc_t>(o + off, xa + off, xb + off, L, pl.ws, pl.wp, nm, c, cycle);
          continue;
        }
        const Box& bs = pl.self_box;
        const Box& bp = pl.part_box;
        if (!backward) {
          // Self outside the box, partner inside: three spans.
          if (h < bs.y0 || h >= bs.y1 || bs.x0 == bs.x1) {
            copy_span<in_t, out_t, acc_t>(o + off, xa + off, L, nm, c, cycle);
          } else {
            const int64_t c0 = bs.x0 * k, c1 = bs.x1 * k;
            copy_span<in_t, out_t, acc_t>(o + off, xa + off, c0, nm, c, cycle);
            copy_span<in_t, out_t, acc_t>(o + off + c0, xb + off + c0, c1 - c0, nm, c, cycle);
            copy_span<in_t, out_t, acc_t>(o + off + c1, xa + off + c1, L - c1, nm, c, cycle);
          }
          continue;
        }
        // Backward: g[k] outside its own box plus g[q] inside q's box.
        const bool hs = h >= bs.y0 && h < bs.y1, hp = h >= bp.y0 && h < bp.y1;
        const int64_t s0 = hs ? bs.x0 * k : 0, s1 = hs ? bs.x1 * k : 0;
        const int64_t p0 = hp ? bp.x0 * k : 0, p1 = hp ? bp.x1 * k : 0;
        for (int64_t j = 0; j < L; ++j) {
          const acc_t va = (j >= s0 && j < s1) ? acc_t(0) : static_cast<acc_t>(xa[off + j]);
          const acc_t vb = (j >= p0 && j < p1) ? static_cast<acc_t>(xb[off + j]) : acc_t(0);
          o[off + j] = static_cast<out_t>(va + vb);
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// In-place forward on an involution: each pair is read once and written once.
// ---------------------------------------------------------------------------

template <typename scalar_t, typename acc_t>
void mix_pairs_inplace(scalar_t* x, const Geometry& g, const std::vector<int64_t>& perm,
                       const std::vector<double>& lam, const std::vector<Box>& boxes, bool cutmix) {
  std::vector<int64_t> firsts;  // i <= perm[i]
  for (int64_t i = 0; i < g.B; ++i)
    if (i <= perm[i]) firsts.push_back(i);
  const int64_t npairs = static_cast<int64_t>(firsts.size());
  if (!cutmix) {
    const int64_t chunks = (g.row + kChunk - 1) / kChunk;
    parallel_units(npairs * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const int64_t i = firsts[u / chunks], p = perm[i];
        const int64_t s = (u % chunks) * kChunk, n = std::min(kChunk, g.row - s);
        scalar_t* __restrict xi = x + i * g.x_stride + s;
        const acc_t wi = weight<acc_t>(lam[i]), wp = weight<acc_t>(lam[p]);
        if (i == p) {
          for (int64_t j = 0; j < n; ++j) {
            const acc_t a = static_cast<acc_t>(xi[j]);
            xi[j] = static_cast<scalar_t>(wi * a + (acc_t(1) - wi) * a);
          }
          continue;
        }
        scalar_t* __restrict xp = x + p * g.x_stride + s;
        for (int64_t j = 0; j < n; ++j) {
          const acc_t a = static_cast<acc_t>(xi[j]);
          const acc_t b = static_cast<acc_t>(xp[j]);
          xi[j] = static_cast<scalar_t>(wi * a + (acc_t(1) - wi) * b);
          xp[j] = static_cast<scalar_t>(wp * b + (acc_t(1) - wp) * a);
        }
      }
    });
    return;
  }
  const int64_t L = g.line_len(), nlines = g.lines(), k = g.col_scale();
  const bool nhwc = g.layout == Layout::NHWC;
  const int64_t lines_per_unit = std::max<int64_t>(1, kChunk / std::max<int64_t>(L, 1));
  const int64_t units_per_pair = (nlines + lines_per_unit - 1) / lines_per_unit;
  parallel_units(npairs * units_per_pair, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const int64_t i = firsts[u / units_per_pair], p = perm[i];
      if (i == p) continue;  // a sample paired with itself keeps its pixels
      const int64_t l0 = (u % units_per_pair) * lines_per_unit;
      const int64_t l1 = std::min(nlines, l0 + lines_per_unit);
      const Box& bi = boxes[i];
      const Box& bp = boxes[p];
      scalar_t* xi = x + i * g.x_stride;
      scalar_t* xp = x + p * g.x_stride;
      for (int64_t l = l0; l < l1; ++l) {
        const int64_t h = nhwc ? l : l % g.H;
        const int64_t off = l * L;
        const bool hi = h >= bi.y0 && h < bi.y1, hp = h >= bp.y0 && h < bp.y1;
        if (!hi && !hp) continue;
        const int64_t i0 = hi ? bi.x0 * k : 0, i1 = hi ? bi.x1 * k : 0;
        const int64_t p0 = hp ? bp.x0 * k : 0, p1 = hp ? bp.x1 * k : 0;
        const int64_t lo = std::min(hi ? i0 : p0, hp ? p0 : i0);
        const int64_t hi_end = std::max(i1, p1);
        for (int64_t j = lo; j < hi_end; ++j) {
          const scalar_t a = xi[off + j];
          const scalar_t b = xp[off + j];
          if (j >= i0 && j < i1) xi[off + j] = b;
          if (j >= p0 && j < p1) xp[off + j] = a;
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Targets: y[i] = lam[i] * s(t[i]) + (1 - lam[i]) * s(t[perm[i]])
// ---------------------------------------------------------------------------

void mix_targets(const at::Tensor& target, const std::vector<int64_t>& ids, const std::vector<int64_t>& perm,
                 const std::vector<double>& lam, int64_t K, double eps, at::Tensor& y) {
  const int64_t B = static_cast<int64_t>(perm.size());
  float* yd = y.data_ptr<float>();
  const float off_value = static_cast<float>(eps / K);
  const float on_value = static_cast<float>(1.0 - eps + eps / K);
  if (!ids.empty() || B == 0) {
    parallel_units(B, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float l = static_cast<float>(lam[i]), r = 1.0f - l;
        float* row = yd + i * K;
        const float base = off_value * l + off_value * r;
        for (int64_t k = 0; k < K; ++k) row[k] = base;
        const int64_t ti = ids[i], tp = ids[perm[i]];
        row[ti] = on_value * l + (ti == tp ? on_value : off_value) * r;
        if (tp != ti) row[tp] = off_value * l + on_value * r;
      }
    });
    return;
  }
  const float keep = static_cast<float>(1.0 - eps);
  auto t = target.to(at::kFloat);
  const int64_t s0 = t.stride(0), s1 = t.stride(1);
  const float* td = t.data_ptr<float>();
  parallel_units(B, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float l = static_cast<float>(lam[i]), r = 1.0f - l;
      const float* ta = td + i * s0;
      const float* tb = td + perm[i] * s0;
      float* row = yd + i * K;
      for (int64_t k = 0; k < K; ++k) {
        const float ya = ta[k * s1] * keep + off_value;
        const float yb = tb[k * s1] * keep + off_value;
        row[k] = ya * l + yb * r;
      }
    }
  });
}

template <typename acc_t>
NormT<acc_t> norm_t(const Norm& n, int64_t C) {
  NormT<acc_t> out;
  out.on = n.on;
  out.C = C;
  out.mean.assign(n.mean.begin(), n.mean.end());
  out.std.assign(n.std.begin(), n.std.end());
  return out;
}

// ---------------------------------------------------------------------------
// Op implementations (CPU)
// ---------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor> mix_cpu(const at::Tensor& x_in, const at::Tensor& target, const at::Tensor& perm_t,
                                           const at::Tensor& lam_t, const c10::optional<at::Tensor>& boxes_t,
                                           int64_t num_classes, double label_smoothing,
                                           const c10::optional<at::Tensor>& mean_t,
                                           const c10::optional<at::Tensor>& std_t,
                                           c10::optional<at::ScalarType> out_dtype, bool check) {
  (void)check;  // CPU checks are cheap and always on
  const bool normalize = mean_t.has_value() || std_t.has_value();
  check_x(x_in, normalize);
  const auto odt = out_dtype.value_or(x_in.scalar_type() == at::kByte ? at::kFloat : x_in.scalar_type());
  TORCH_CHECK_TYPE(is_float(odt), "mixup_fused: out_dtype must be a floating dtype, got ", odt);
  const auto perm = checked_perm(x_in, perm_t, false);
  const auto lam = checked_lam(x_in, lam_t);
  const auto boxes = checked_boxes(x_in, boxes_t);
  const auto ids = checked_target(x_in, target, num_classes, label_smoothing);
  const Norm norm = checked_norm(x_in, mean_t, std_t);

  const at::Tensor x = dense_rows(x_in);
  at::Tensor out = empty_out_like(x, odt);
  at::Tensor y = at::empty({x.size(0), num_classes}, x.options().dtype(at::kFloat));
  const bool cutmix = boxes_t.has_value();
  const Geometry g = geometry(x, &out, cutmix || normalize);

  AT_DISPATCH_FLOATING_TYPES_AND3(at::kHalf, at::kBFloat16, at::kByte, x.scalar_type(), "mixup_fused::mix", [&] {
    using in_t = scalar_t;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, odt, "mixup_fused::mix_out", [&] {
      using out_t = scalar_t;
      using acc_t = std::conditional_t<std::is_same<in_t, double>::value || std::is_same<out_t, double>::value,
                                       double, float>;
      std::vector<RowPlan<acc_t>> plan(g.B);
      for (int64_t i = 0; i < g.B; ++i) {
        plan[i].src = perm[i];
        plan[i].ws = weight<acc_t>(lam[i]);
        plan[i].wp = acc_t(1) - plan[i].ws;
        if (cutmix) plan[i].self_box = plan[i].part_box = boxes[i];
      }
      mix_rows<in_t, out_t, acc_t>(x.const_data_ptr<in_t>(), out.mutable_data_ptr<out_t>(), g, plan, cutmix, false,
                                   norm_t<acc_t>(norm, g.C));
    });
  });
  mix_targets(target, ids, perm, lam, num_classes, label_smoothing, y);
  return {out, y};
}

at::Tensor mix_inplace_cpu(at::Tensor& x, const at::Tensor& target, const at::Tensor& perm_t, const at::Tensor& lam_t,
                           const c10::optional<at::Tensor>& boxes_t, int64_t num_classes, double label_smoothing,
                           bool check) {
  (void)check;
  check_x(x, false);
  const auto perm = checked_perm(x, perm_t, true);
  const auto lam = checked_lam(x, lam_t);
  const auto boxes = checked_boxes(x, boxes_t);
  const auto ids = checked_target(x, target, num_classes, label_smoothing);
  at::Tensor y = at::empty({x.size(0), num_classes}, x.options().dtype(at::kFloat));
  const bool cutmix = boxes_t.has_value();

  // Rows that are not dense are mixed in a dense copy and written back.
  at::Tensor xd = dense_rows(x);
  const Geometry g = geometry(xd, nullptr, cutmix);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xd.scalar_type(), "mixup_fused::mix_", [&] {
    using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
    mix_pairs_inplace<scalar_t, acc_t>(xd.mutable_data_ptr<scalar_t>(), g, perm, lam, boxes, cutmix);
  });
  if (!xd.is_same(x)) x.copy_(xd);
  mix_targets(target, ids, perm, lam, num_classes, label_smoothing, y);
  return y;
}

at::Tensor mix_backward_cpu(const at::Tensor& grad_in, const at::Tensor& perm_t, const at::Tensor& lam_t,
                            const c10::optional<at::Tensor>& boxes_t) {
  check_x(grad_in, false);
  const auto perm = checked_perm(grad_in, perm_t, false);
  const auto lam = checked_lam(grad_in, lam_t);
  const auto boxes = checked_boxes(grad_in, boxes_t);
  const at::Tensor grad = dense_rows(grad_in);
  at::Tensor out = empty_out_like(grad, grad.scalar_type());
  const bool cutmix = boxes_t.has_value();
  const Geometry g = geometry(grad, &out, cutmix);
  std::vector<int64_t> inv(g.B);
  for (int64_t i = 0; i < g.B; ++i) inv[perm[i]] = i;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "mixup_fused::mix_backward", [&] {
    using acc_t = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;
    std::vector<RowPlan<acc_t>> plan(g.B);
    for (int64_t k = 0; k < g.B; ++k) {
      const int64_t q = inv[k];
      plan[k].src = q;
      plan[k].ws = weight<acc_t>(lam[k]);
      plan[k].wp = acc_t(1) - weight<acc_t>(lam[q]);
      if (cutmix) {
        plan[k].self_box = boxes[k];
        plan[k].part_box = boxes[q];
      }
    }
    mix_rows<scalar_t, scalar_t, acc_t>(grad.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), g, plan,
                                        cutmix, true, NormT<acc_t>{});
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(mixup_fused, m) {
  m.def(
      "mix(Tensor x, Tensor target, Tensor perm, Tensor lam, Tensor? boxes, int num_classes, "
      "float label_smoothing, Tensor? mean, Tensor? std, ScalarType? out_dtype, bool check) -> (Tensor, Tensor)");
  m.def(
      "mix_(Tensor(a!) x, Tensor target, Tensor perm, Tensor lam, Tensor? boxes, int num_classes, "
      "float label_smoothing, bool check) -> Tensor");
  m.def("mix_backward(Tensor grad, Tensor perm, Tensor lam, Tensor? boxes) -> Tensor");
}

TORCH_LIBRARY_IMPL(mixup_fused, CPU, m) {
  m.impl("mix", &mix_cpu);
  m.impl("mix_", &mix_inplace_cpu);
  m.impl("mix_backward", &mix_backward_cpu);
}

}  // namespace mixup_fused
