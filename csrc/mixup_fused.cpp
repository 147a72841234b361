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

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <memory>
#include <string>
#include <vector>

#include "mix_types.h"

namespace mixup_fused {
namespace {

// A box row of all -1 (NO_BOX) marks a sample that is mixed with lam rather
// than cut, so one call can serve timm's per-sample mixup/CutMix switch.
bool is_mixup(const Box& b) { return b.y0 == -1 && b.y1 == -1 && b.x0 == -1 && b.x1 == -1; }

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

// The values of a small 1-d (or [B, 4]) CPU tensor as Out, read in place for
// the dtypes the Python API passes (no conversion or contiguous copy through
// the dispatcher: those are a visible part of a call when the caches are cold).
template <typename Out>
std::vector<Out> host_values(const at::Tensor& t, at::ScalarType as) {
  const int64_t n = t.numel();
  std::vector<Out> out(static_cast<size_t>(n));
  const bool dense = t.is_contiguous();
  auto copy = [&](auto tag) {
    using In = decltype(tag);
    const In* d = t.const_data_ptr<In>();
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(d[i]);
  };
  if (dense && t.scalar_type() == at::kLong) {
    copy(int64_t{});
  } else if (dense && t.scalar_type() == at::kInt) {
    copy(int32_t{});
  } else if (dense && t.scalar_type() == at::kFloat) {
    copy(float{});
  } else if (dense && t.scalar_type() == at::kDouble) {
    copy(double{});
  } else {
    const at::Tensor c = t.to(as).contiguous();
    const Out* d = c.const_data_ptr<Out>();
    std::copy(d, d + n, out.begin());
  }
  return out;
}

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
  std::vector<int64_t> out = host_values<int64_t>(perm, at::kLong);
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

// lam as double. ``f64``: the kernel computes in float64; otherwise it uses
// lam rounded to float32, and that is the value checked against [0, 1] (a
// float64 lam of 1 + 1e-12 is 1 for a float32 batch, as on every backend).
std::vector<double> checked_lam(const at::Tensor& x, const at::Tensor& lam, bool f64) {
  const int64_t B = x.size(0);
  check_same_device(x, lam, "lam");
  TORCH_CHECK_TYPE(is_float(lam.scalar_type()), "mixup_fused: lam must be a floating tensor, got ",
                   lam.scalar_type());
  TORCH_CHECK_VALUE(lam.dim() == 1 && lam.size(0) == B, "mixup_fused: lam must have shape [B] = [", B,
                    "], got ", lam.sizes());
  std::vector<double> out = host_values<double>(lam, at::kDouble);
  for (int64_t i = 0; i < B; ++i) {
    const double v = f64 ? out[i] : static_cast<double>(static_cast<float>(out[i]));
    TORCH_CHECK_VALUE(v >= 0.0 && v <= 1.0, "mixup_fused: lam[", i, "] = ", std::setprecision(f64 ? 17 : 9), out[i],
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
  const std::vector<int64_t> bl = host_values<int64_t>(b, at::kLong);
  const int64_t* d = bl.data();
  out.resize(B);
  for (int64_t i = 0; i < B; ++i) {
    Box bx{d[4 * i], d[4 * i + 1], d[4 * i + 2], d[4 * i + 3]};
    TORCH_CHECK_VALUE(is_mixup(bx) || (0 <= bx.y0 && bx.y0 <= bx.y1 && bx.y1 <= H && 0 <= bx.x0 &&
                                        bx.x0 <= bx.x1 && bx.x1 <= W),
                      "mixup_fused: boxes[", i, "] = (", bx.y0, ", ", bx.y1, ", ", bx.x0, ", ", bx.x1,
                      ") must satisfy 0 <= y0 <= y1 <= H = ", H, " and 0 <= x0 <= x1 <= W = ", W,
                      ", or be (-1, -1, -1, -1) to mix that sample with lam");
    out[i] = bx;
  }
  return out;
}

// Returns the class ids (empty for soft targets).
std::vector<int64_t> checked_target(const at::Tensor& x, const at::Tensor& target, int64_t num_classes,
                                    double label_smoothing) {
  const int64_t B = x.size(0);
  TORCH_CHECK_VALUE(num_classes >= 1 && num_classes <= 2147483647LL,
                    "mixup_fused: num_classes must be an int in [1, 2**31 - 1], got ", num_classes);
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
  ids = host_values<int64_t>(target, at::kLong);
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
// Kernel tables, one per instruction set (csrc/kernels_*.cpp), picked at run
// time; MIXUP_FUSED_CPU_ISA=base|avx2|avx512 forces one.
// ---------------------------------------------------------------------------

}  // namespace
namespace isa_base {
extern const KernelTable kTable;
}
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
namespace isa_avx2 {
extern const KernelTable kTable;
}
namespace isa_avx512 {
extern const KernelTable kTable;
}
#endif
namespace {

std::vector<const KernelTable*> supported_tables() {
  std::vector<const KernelTable*> out{&isa_base::kTable};
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
  if (avx2) out.push_back(&isa_avx2::kTable);
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    out.push_back(&isa_avx512::kTable);
#endif
  return out;
}

const KernelTable* find_table(const std::string& name) {
  for (const KernelTable* t : supported_tables())
    if (name == t->name) return t;
  return nullptr;
}

std::atomic<const KernelTable*>& active_table() {
  static std::atomic<const KernelTable*> table{[] {
    const char* env = std::getenv("MIXUP_FUSED_CPU_ISA");
    if (env != nullptr && *env != '\0') {
      const KernelTable* t = find_table(env);
      TORCH_CHECK(t != nullptr, "mixup_fused: MIXUP_FUSED_CPU_ISA=", env, " is not supported on this CPU");
      return t;
    }
    return supported_tables().back();
  }()};
  return table;
}

int dtype_index(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return kF32;
    case at::kDouble:
      return kF64;
    case at::kHalf:
      return kF16;
    case at::kBFloat16:
      return kBF16;
    case at::kByte:
      return kU8;
    default:
      TORCH_CHECK_TYPE(false, "mixup_fused: unsupported dtype ", t);
  }
}

Geometry geometry(const at::Tensor& x, const at::Tensor* out, bool image) {
  Geometry g{};
  g.layout = kFlat;
  g.B = x.size(0);
  g.row = g.B > 0 ? x.numel() / g.B : 0;
  g.C = g.H = g.W = 1;
  g.x_stride = g.B > 1 ? x.stride(0) : g.row;
  g.out_stride = out ? (g.B > 1 ? out->stride(0) : g.row) : g.x_stride;
  if (image) {
    g.layout = is_channels_last(x) ? kNHWC : kNCHW;
    g.C = x.size(1);
    g.H = x.size(2);
    g.W = x.size(3);
  }
  return g;
}

// The rows i <= perm[i] of an involution: one per pair (a row paired with
// itself included), each unit of the pair kernels starts from one.
std::vector<int64_t> pair_firsts(const std::vector<int64_t>& perm) {
  std::vector<int64_t> firsts;
  for (int64_t i = 0; i < static_cast<int64_t>(perm.size()); ++i)
    if (i <= perm[i]) firsts.push_back(i);
  return firsts;
}

// The weight as the kernels compute with it: float32 unless in float64.
double weight(double lam, bool f64) { return f64 ? lam : static_cast<double>(static_cast<float>(lam)); }
double one_minus(double lam, bool f64) {
  return f64 ? 1.0 - lam : static_cast<double>(1.0f - static_cast<float>(lam));
}

// ---------------------------------------------------------------------------
// Targets: y[i] = lam[i] * s(t[i]) + (1 - lam[i]) * s(t[perm[i]])
// ---------------------------------------------------------------------------

// The mixed, smoothed targets. The ops build them before the images: then the
// caches hold nothing dirty yet, and y's lines displace clean ones; after the
// image pass they would displace the batch's written lines (in place on a
// 64x3x224x224 fp32 batch, caches flushed before the call, 1000 classes
// instead of 1 cost 65 us more after the images, 26 us before).
void mix_targets(const at::Tensor& target, const std::vector<int64_t>& ids, const std::vector<int64_t>& perm,
                 const std::vector<double>& lam, int64_t K, double eps, at::Tensor& y) {
  const int64_t B = static_cast<int64_t>(perm.size());
  float* yd = y.data_ptr<float>();
  const float off_value = static_cast<float>(eps / K);
  const float on_value = static_cast<float>(1.0 - eps + eps / K);
  if (!ids.empty() || B == 0) {
    at::parallel_for(0, B, 16, [&](int64_t begin, int64_t end) {
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
  at::parallel_for(0, B, 16, [&](int64_t begin, int64_t end) {
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
  const bool f64 = x_in.scalar_type() == at::kDouble || odt == at::kDouble;
  const auto perm = checked_perm(x_in, perm_t, false);
  const auto lam = checked_lam(x_in, lam_t, f64);
  const auto boxes = checked_boxes(x_in, boxes_t);
  const auto ids = checked_target(x_in, target, num_classes, label_smoothing);
  const Norm norm = checked_norm(x_in, mean_t, std_t);

  const at::Tensor x = dense_rows(x_in);
  at::Tensor out = empty_out_like(x, odt);
  at::Tensor y = at::empty({x.size(0), num_classes}, x.options().dtype(at::kFloat));
  const bool cutmix = boxes_t.has_value();
  const Geometry g = geometry(x, &out, cutmix || normalize);
  std::vector<RowPlan> plan(g.B);
  for (int64_t i = 0; i < g.B; ++i) {
    RowPlan& pl = plan[i];
    pl.src = perm[i];
    pl.ws = weight(lam[i], f64);
    pl.wp = one_minus(lam[i], f64);
    pl.self_mix = pl.part_mix = !cutmix || is_mixup(boxes[i]);
    if (cutmix) pl.self_box = pl.part_box = boxes[i];
  }
  // On an involution (every pairing Mixup draws), each pair's two output rows
  // are written from one read of its two input rows.
  bool involution = !cutmix;
  for (int64_t i = 0; involution && i < g.B; ++i) involution = perm[perm[i]] == i;
  const std::vector<int64_t> firsts = involution ? pair_firsts(perm) : std::vector<int64_t>{};
  MixArgs args{x.const_data_ptr(), out.mutable_data_ptr(), g,
               plan.data(),        cutmix,                false,
               normalize,          norm.mean.data(),      norm.std.data(),
               involution ? firsts.data() : nullptr};
  const MixRowsFn fn = active_table().load()->mix_rows[dtype_index(x.scalar_type())][dtype_index(odt)];
  const int64_t rows = involution ? static_cast<int64_t>(firsts.size()) : g.B;
  const int64_t units = rows * units_per_row(g, by_lines(g, cutmix, normalize));
  mix_targets(target, ids, perm, lam, num_classes, label_smoothing, y);
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) { fn(args, begin, end); });
  return {out, y};
}

at::Tensor mix_inplace_cpu(at::Tensor& x, const at::Tensor& target, const at::Tensor& perm_t, const at::Tensor& lam_t,
                           const c10::optional<at::Tensor>& boxes_t, int64_t num_classes, double label_smoothing,
                           bool check) {
  (void)check;
  check_x(x, false);
  // The kernels see weights as float32 unless computing in float64.
  const bool f64 = x.scalar_type() == at::kDouble;
  const auto perm = checked_perm(x, perm_t, true);
  const auto lam = checked_lam(x, lam_t, f64);
  const auto boxes = checked_boxes(x, boxes_t);
  const auto ids = checked_target(x, target, num_classes, label_smoothing);
  at::Tensor y = at::empty({x.size(0), num_classes}, x.options().dtype(at::kFloat));
  const bool cutmix = boxes_t.has_value();

  // Rows that are not dense are mixed in a dense copy and written back.
  at::Tensor xd = dense_rows(x);
  const Geometry g = geometry(xd, nullptr, cutmix);
  std::vector<double> w(g.B);
  std::unique_ptr<bool[]> mix_rows(new bool[g.B > 0 ? g.B : 1]);
  for (int64_t i = 0; i < g.B; ++i) {
    w[i] = weight(lam[i], f64);
    mix_rows[i] = !cutmix || is_mixup(boxes[i]);
  }
  // (A row blended with weight exactly 1 is left as it is by the kernels.)
  const std::vector<int64_t> firsts = pair_firsts(perm);
  PairArgs args{xd.mutable_data_ptr(), g, firsts.data(), perm.data(), w.data(), boxes.data(), mix_rows.get(), cutmix};
  const PairsFn fn = active_table().load()->pairs[dtype_index(xd.scalar_type())];
  const int64_t units = static_cast<int64_t>(firsts.size()) * units_per_row(g, by_lines(g, cutmix, false));
  mix_targets(target, ids, perm, lam, num_classes, label_smoothing, y);
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) { fn(args, begin, end); });
  if (!xd.is_same(x)) x.copy_(xd);
  return y;
}

at::Tensor mix_backward_cpu(const at::Tensor& grad_in, const at::Tensor& perm_t, const at::Tensor& lam_t,
                            const c10::optional<at::Tensor>& boxes_t) {
  check_x(grad_in, false);
  const bool f64 = grad_in.scalar_type() == at::kDouble;
  const auto perm = checked_perm(grad_in, perm_t, false);
  const auto lam = checked_lam(grad_in, lam_t, f64);
  const auto boxes = checked_boxes(grad_in, boxes_t);
  const at::Tensor grad = dense_rows(grad_in);
  at::Tensor out = empty_out_like(grad, grad.scalar_type());
  const bool cutmix = boxes_t.has_value();
  const Geometry g = geometry(grad, &out, cutmix);
  std::vector<int64_t> inv(g.B);
  for (int64_t i = 0; i < g.B; ++i) inv[perm[i]] = i;
  std::vector<RowPlan> plan(g.B);
  for (int64_t k = 0; k < g.B; ++k) {
    const int64_t q = inv[k];
    RowPlan& pl = plan[k];
    pl.src = q;
    pl.ws = weight(lam[k], f64);
    pl.wp = one_minus(lam[q], f64);
    pl.self_mix = !cutmix || is_mixup(boxes[k]);
    pl.part_mix = !cutmix || is_mixup(boxes[q]);
    if (cutmix) {
      pl.self_box = boxes[k];
      pl.part_box = boxes[q];
    }
  }
  MixArgs args{grad.const_data_ptr(), out.mutable_data_ptr(), g, plan.data(), cutmix, true, false, nullptr, nullptr, nullptr};
  const int d = dtype_index(grad.scalar_type());
  const MixRowsFn fn = active_table().load()->mix_rows[d][d];
  const int64_t units = g.B * units_per_row(g, by_lines(g, cutmix, false));
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) { fn(args, begin, end); });
  return out;
}

// Autograd key for the in-place op: refuse x that requires grad (writing into
// it would silently break its gradient), run the kernel below autograd, and
// bump x's version so that any tensor saved for another backward notices.
at::Tensor mix_inplace_autograd(at::Tensor& x, const at::Tensor& target, const at::Tensor& perm,
                                const at::Tensor& lam, const c10::optional<at::Tensor>& boxes, int64_t num_classes,
                                double label_smoothing, bool check) {
  TORCH_CHECK_VALUE(!x.requires_grad(), "mixup_fused: mix_ (inplace=True) cannot write into x that requires grad; ",
                    "use inplace=False to get gradients");
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mixup_fused::mix_", "")
                       .typed<at::Tensor(at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const c10::optional<at::Tensor>&, int64_t, double, bool)>();
  at::Tensor y;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    y = op.call(x, target, perm, lam, boxes, num_classes, label_smoothing, check);
  }
  x.unsafeGetTensorImpl()->bump_version();
  return y;
}

// Python-visible helpers of the _C module: which kernel table runs.
PyObject* py_cpu_isa(PyObject*, PyObject*) { return PyUnicode_FromString(active_table().load()->name); }

PyObject* py_supported_cpu_isas(PyObject*, PyObject*) {
  const auto tables = supported_tables();
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(tables.size()));
  for (size_t i = 0; i < tables.size(); ++i)
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), PyUnicode_FromString(tables[i]->name));
  return list;
}

PyObject* py_set_cpu_isa(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  const KernelTable* t = find_table(name);
  if (t == nullptr) {
    PyErr_Format(PyExc_ValueError, "mixup_fused: cpu isa '%s' is not supported on this CPU", name);
    return nullptr;
  }
  const char* previous = active_table().exchange(t)->name;
  return PyUnicode_FromString(previous);
}

// MIXUP_FUSED_BACKEND, read at every call of the Python API with backend='auto'
// (see ops._backend_override). os.environ writes through to this environment.
PyObject* py_backend_override(PyObject*, PyObject*) {
  const char* env = std::getenv("MIXUP_FUSED_BACKEND");
  if (env == nullptr) Py_RETURN_NONE;
  return PyUnicode_DecodeFSDefault(env);
}

PyMethodDef kMethods[] = {
    {"backend_override", py_backend_override, METH_NOARGS, "The MIXUP_FUSED_BACKEND environment variable, or None."},
    {"cpu_isa", py_cpu_isa, METH_NOARGS, "Name of the CPU kernel table in use."},
    {"supported_cpu_isas", py_supported_cpu_isas, METH_NOARGS, "CPU kernel tables this CPU can run."},
    {"set_cpu_isa", py_set_cpu_isa, METH_O, "Select a CPU kernel table by name; returns the previous one."},
    {nullptr, nullptr, 0, nullptr}};

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

TORCH_LIBRARY_IMPL(mixup_fused, Autograd, m) { m.impl("mix_", &mix_inplace_autograd); }

TORCH_LIBRARY_IMPL(mixup_fused, CPU, m) {
  m.impl("mix", &mix_cpu);
  m.impl("mix_", &mix_inplace_cpu);
  m.impl("mix_backward", &mix_backward_cpu);
}

}  // namespace mixup_fused

// ``import mixup_fused._C`` loads this library, which runs the registrations
// above (as in pytorch/extension-cpp), and exposes the CPU-ISA helpers.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, mixup_fused::kMethods};
  return PyModule_Create(&module_def);
}
}
