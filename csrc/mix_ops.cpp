// The CPU implementations of mixup_fused::mix, mix_ and mix_backward, and
// the autograd key of the in-place op.
//
// Each validates all of its arguments (checks.h) before it writes anything,
// then builds the targets (targets.h) and runs the loops of the active
// instruction set (isa.h) over (row, chunk) units with at::parallel_for.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <memory>
#include <tuple>
#include <vector>

#include "checks.h"
#include "isa.h"
#include "kernel_types.h"
#include "targets.h"

namespace mixup_fused {
namespace {

bool is_channels_last(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// Rows must be dense runs in contiguous or channels_last order; anything else
// is copied to contiguous first (as mixup_fused/_layout.py).
at::Tensor dense_rows(const at::Tensor& x) {
  if (x.is_contiguous() || is_channels_last(x)) return x;
  return x.contiguous();
}

at::Tensor empty_out_like(const at::Tensor& x, at::ScalarType dtype) {
  auto opts = x.options().dtype(dtype);
  if (is_channels_last(x)) return at::empty(x.sizes(), opts, at::MemoryFormat::ChannelsLast);
  return at::empty(x.sizes(), opts);
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
// The weights of a row and of its partner, lam and 1 - lam, each rounded once
// from the lam given to the dtype the kernels compute in (float32 unless in
// float64): timm's and torchvision's arithmetic.
double weight(double lam, bool f64) { return f64 ? lam : static_cast<double>(static_cast<float>(lam)); }
double one_minus(double lam, bool f64) { return weight(1.0 - lam, f64); }

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
  const auto lam = checked_lam(x_in, lam_t);
  const auto boxes = checked_boxes(x_in, boxes_t);
  const auto ids = checked_target(x_in, target, num_classes, label_smoothing);
  const ChannelStats norm = checked_norm(x_in, mean_t, std_t);

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
    pl.self_mix = pl.part_mix = !cutmix || is_no_box(boxes[i]);
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
  const MixRowsFn fn = active_table()->mix_rows[dtype_index(x.scalar_type())][dtype_index(odt)];
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
  const auto lam = checked_lam(x, lam_t);
  const auto boxes = checked_boxes(x, boxes_t);
  const auto ids = checked_target(x, target, num_classes, label_smoothing);
  at::Tensor y = at::empty({x.size(0), num_classes}, x.options().dtype(at::kFloat));
  const bool cutmix = boxes_t.has_value();

  // Rows that are not dense are mixed in a dense copy and written back.
  at::Tensor xd = dense_rows(x);
  const Geometry g = geometry(xd, nullptr, cutmix);
  std::vector<double> ws(g.B), wp(g.B);
  std::unique_ptr<bool[]> mix_rows(new bool[g.B > 0 ? g.B : 1]);
  for (int64_t i = 0; i < g.B; ++i) {
    ws[i] = weight(lam[i], f64);
    wp[i] = one_minus(lam[i], f64);
    mix_rows[i] = !cutmix || is_no_box(boxes[i]);
  }
  // (A row blended with its partner's weight exactly 0 is left as it is by the kernels.)
  const std::vector<int64_t> firsts = pair_firsts(perm);
  PairArgs args{xd.mutable_data_ptr(), g,         firsts.data(),  perm.data(), ws.data(),
                wp.data(),             boxes.data(), mix_rows.get(), cutmix};
  const PairsFn fn = active_table()->pairs[dtype_index(xd.scalar_type())];
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
  const auto lam = checked_lam(grad_in, lam_t);
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
    pl.self_mix = !cutmix || is_no_box(boxes[k]);
    pl.part_mix = !cutmix || is_no_box(boxes[q]);
    if (cutmix) {
      pl.self_box = boxes[k];
      pl.part_box = boxes[q];
    }
  }
  MixArgs args{grad.const_data_ptr(), out.mutable_data_ptr(), g, plan.data(), cutmix, true, false, nullptr, nullptr, nullptr};
  const int d = dtype_index(grad.scalar_type());
  const MixRowsFn fn = active_table()->mix_rows[d][d];
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

}  // namespace

TORCH_LIBRARY_IMPL(mixup_fused, Autograd, m) { m.impl("mix_", &mix_inplace_autograd); }

TORCH_LIBRARY_IMPL(mixup_fused, CPU, m) {
  m.impl("mix", &mix_cpu);
  m.impl("mix_", &mix_inplace_cpu);
  m.impl("mix_backward", &mix_backward_cpu);
}

}  // namespace mixup_fused
