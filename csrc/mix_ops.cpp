// The CPU implementations of mixup_fused::mix, mix_ and mix_backward, and
// the autograd key of the in-place op.
//
// Each validates all of its arguments (checks.h) before it writes anything,
// then builds the targets (targets.h) and runs the loops of the active
// instruction set (isa.h) over (row, chunk or line range) units with
// at::parallel_for: the images' units, then the label maps' (when given), in
// one loop. Boxes of any rank and cut masks are cut regions of the same line
// loops (kernel_types.h: Geometry).

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

// Channels last: dense with the channel fastest, then the spatial dims in
// order (ChannelsLast for 4-d, ChannelsLast3d for 5-d, strides (C * T, 1, C)
// for 3-d), and not contiguous (a tensor that is both is contiguous).
bool is_channels_last(const at::Tensor& x) {
  if (x.dim() < 3 || x.dim() > 5 || x.is_contiguous()) return false;
  std::vector<int64_t> order{0};
  for (int64_t d = 2; d < x.dim(); ++d) order.push_back(d);
  order.push_back(1);
  return x.permute(order).is_contiguous();
}

// Rows must be dense runs in contiguous or channels-last order; anything else
// is copied to contiguous first (as mixup_fused/_layout.py).
at::Tensor dense_rows(const at::Tensor& x) {
  if (x.is_contiguous() || is_channels_last(x)) return x;
  return x.contiguous();
}

at::Tensor empty_out_like(const at::Tensor& x, at::ScalarType dtype) {
  auto opts = x.options().dtype(dtype);
  if (!is_channels_last(x)) return at::empty(x.sizes(), opts);
  if (x.dim() == 4) return at::empty(x.sizes(), opts, at::MemoryFormat::ChannelsLast);
  if (x.dim() == 5) return at::empty(x.sizes(), opts, at::MemoryFormat::ChannelsLast3d);
  return at::empty({x.size(0), x.size(2), x.size(1)}, opts).permute({0, 2, 1});
}

// ``image``: x is [B, C, *spatial] with 1 to 3 spatial dims (checked), worked
// on by lines; otherwise its rows are flat runs.
Geometry geometry(const at::Tensor& x, const at::Tensor* out, bool image) {
  Geometry g{};
  g.layout = kFlat;
  g.B = x.size(0);
  g.row = g.B > 0 ? x.numel() / g.B : 0;
  g.C = g.D = g.H = g.W = 1;
  g.x_stride = g.B > 1 ? x.stride(0) : g.row;
  g.out_stride = out ? (g.B > 1 ? out->stride(0) : g.row) : g.x_stride;
  if (image) {
    const int64_t n = x.dim() - 2;
    g.layout = is_channels_last(x) ? kNHWC : kNCHW;
    g.C = x.size(1);
    g.D = n == 3 ? x.size(2) : 1;
    g.H = n >= 2 ? x.size(x.dim() - 2) : 1;
    g.W = x.size(x.dim() - 1);
  }
  return g;
}

// The label-map work of a call: ``maps`` contiguous [B, *spatial] (or with a
// 1 before the spatial dims), moved out of place into ``out`` (defined) or in
// place (``firsts``: the pairs of an involution).
struct MapWork {
  MapArgs args{};
  MapsFn fn = nullptr;
  int64_t units = 0;
  std::unique_ptr<bool[]> cut_rows;
};

int label_index(at::ScalarType t) {
  switch (t) {
    case at::kLong:
      return kL64;
    case at::kInt:
      return kL32;
    default:
      return kL8;
  }
}

// ``x``: the images, [B, C, *spatial] with 1 to 3 spatial dims (checked).
void plan_maps(MapWork& w, const at::Tensor& maps, const at::Tensor& out, const at::Tensor& x,
               const std::vector<int64_t>& perm, const std::vector<int64_t>* firsts, const std::vector<Box>& boxes,
               const at::Tensor& cut) {
  const int64_t B = x.size(0), n = x.dim() - 2;
  MapArgs& a = w.args;
  a.in = maps.data_ptr();
  a.out = out.defined() ? out.mutable_data_ptr() : nullptr;
  a.B = B;
  a.D = n == 3 ? x.size(2) : 1;
  a.H = n >= 2 ? x.size(x.dim() - 2) : 1;
  a.W = x.size(x.dim() - 1);
  a.perm = perm.data();
  a.firsts = firsts ? firsts->data() : nullptr;
  a.boxes = boxes.empty() ? nullptr : boxes.data();
  a.cut_mask = cut.defined() ? static_cast<const uint8_t*>(cut.const_data_ptr()) : nullptr;
  if (cut.defined() || !boxes.empty()) {
    w.cut_rows.reset(new bool[B > 0 ? B : 1]);
    for (int64_t i = 0; i < B; ++i) w.cut_rows[i] = cut.defined() || !is_no_box(boxes[i]);
    a.cut_rows = w.cut_rows.get();
  }
  w.fn = active_table()->maps[label_index(maps.scalar_type())];
  const int64_t rows = firsts ? static_cast<int64_t>(firsts->size()) : B;
  w.units = rows * map_units_per_row(a.D, a.H, a.W);
}

// One parallel loop over the image units, then the map units.
template <typename ImageFn>
void run_units(int64_t image_units, const ImageFn& image, const MapWork& maps) {
  const int64_t total = image_units + maps.units;
  at::parallel_for(0, total, 1, [&](int64_t begin, int64_t end) {
    if (begin < image_units) image(begin, end < image_units ? end : image_units);
    if (end > image_units) maps.fn(maps.args, begin > image_units ? begin - image_units : 0, end - image_units);
  });
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

std::tuple<at::Tensor, at::Tensor, at::Tensor> mix_cpu(
    const at::Tensor& x_in, const at::Tensor& target, const at::Tensor& perm_t, const at::Tensor& lam_t,
    const c10::optional<at::Tensor>& boxes_t, const c10::optional<at::Tensor>& cut_mask_t,
    const c10::optional<at::Tensor>& masks_t, int64_t num_classes, double label_smoothing,
    const c10::optional<at::Tensor>& mean_t, const c10::optional<at::Tensor>& std_t,
    c10::optional<at::ScalarType> out_dtype, bool check) {
  (void)check;  // CPU checks are cheap and always on
  const bool normalize = mean_t.has_value() || std_t.has_value();
  check_x(x_in, normalize);
  const auto odt = out_dtype.value_or(x_in.scalar_type() == at::kByte ? at::kFloat : x_in.scalar_type());
  TORCH_CHECK_TYPE(is_float(odt), "mixup_fused: out_dtype must be a floating dtype, got ", odt);
  const bool f64 = x_in.scalar_type() == at::kDouble || odt == at::kDouble;
  const auto [perm, lam, boxes, cut] = checked_inputs(x_in, perm_t, lam_t, boxes_t, cut_mask_t, false);
  check_masks(x_in, masks_t);
  const auto ids = checked_target(x_in, target, num_classes, label_smoothing);
  const ChannelStats norm = checked_norm(x_in, mean_t, std_t);

  const at::Tensor x = dense_rows(x_in);
  at::Tensor out = empty_out_like(x, odt);
  at::Tensor y = at::empty({x.size(0), num_classes}, x.options().dtype(at::kFloat));
  const bool cutmix = boxes_t.has_value() || cut.defined();
  const Geometry g = geometry(x, &out, cutmix || normalize);
  std::vector<RowPlan> plan(g.B);
  for (int64_t i = 0; i < g.B; ++i) {
    RowPlan& pl = plan[i];
    pl.src = perm[i];
    pl.ws = weight(lam[i], f64);
    pl.wp = one_minus(lam[i], f64);
    // (a cut mask blends no row)
    pl.self_mix = pl.part_mix = !cutmix || (!boxes.empty() && is_no_box(boxes[i]));
    if (!boxes.empty()) pl.self_box = pl.part_box = boxes[i];
  }
  // On an involution (every pairing Mixup draws), each pair's two output rows
  // are written from one read of its two input rows.
  bool involution = !cutmix;
  for (int64_t i = 0; involution && i < g.B; ++i) involution = perm[perm[i]] == i;
  const std::vector<int64_t> firsts = involution ? pair_firsts(perm) : std::vector<int64_t>{};
  MixArgs args{x.const_data_ptr(), out.mutable_data_ptr(), g,
               plan.data(),        cutmix,                false,
               normalize,          norm.mean.data(),      norm.std.data(),
               involution ? firsts.data() : nullptr,
               cut.defined() ? static_cast<const uint8_t*>(cut.const_data_ptr()) : nullptr};
  const MixRowsFn fn = active_table()->mix_rows[dtype_index(x.scalar_type())][dtype_index(odt)];
  const int64_t rows = involution ? static_cast<int64_t>(firsts.size()) : g.B;
  const int64_t units = rows * units_per_row(g, by_lines(g, cutmix, normalize));

  MapWork maps;
  at::Tensor maps_in, maps_out;
  if (masks_t.has_value()) {
    maps_in = masks_t->contiguous();
    maps_out = at::empty(masks_t->sizes(), masks_t->options());
    plan_maps(maps, maps_in, maps_out, x, perm, nullptr, boxes, cut);
  } else {
    maps_out = at::empty({0}, x.options().dtype(at::kLong));
  }
  mix_targets(target, ids, perm, lam, num_classes, label_smoothing, y);
  run_units(units, [&](int64_t begin, int64_t end) { fn(args, begin, end); }, maps);
  return {out, y, maps_out};
}

at::Tensor mix_inplace_cpu(at::Tensor& x, const at::Tensor& target, const at::Tensor& perm_t, const at::Tensor& lam_t,
                           const c10::optional<at::Tensor>& boxes_t, const c10::optional<at::Tensor>& cut_mask_t,
                           const c10::optional<at::Tensor>& masks_t, int64_t num_classes, double label_smoothing,
                           bool check) {
  (void)check;
  // Every check before anything is written: a call that raises leaves x and masks as they were.
  check_x(x, false);
  // The kernels see weights as float32 unless computing in float64.
  const bool f64 = x.scalar_type() == at::kDouble;
  const auto [perm, lam, boxes, cut] = checked_inputs(x, perm_t, lam_t, boxes_t, cut_mask_t, true);
  check_masks(x, masks_t);
  const auto ids = checked_target(x, target, num_classes, label_smoothing);
  at::Tensor y = at::empty({x.size(0), num_classes}, x.options().dtype(at::kFloat));
  const bool cutmix = boxes_t.has_value() || cut.defined();

  // Rows that are not dense are mixed in a dense copy and written back.
  at::Tensor xd = dense_rows(x);
  const Geometry g = geometry(xd, nullptr, cutmix);
  std::vector<double> ws(g.B), wp(g.B);
  std::unique_ptr<bool[]> mix_rows(new bool[g.B > 0 ? g.B : 1]);
  for (int64_t i = 0; i < g.B; ++i) {
    ws[i] = weight(lam[i], f64);
    wp[i] = one_minus(lam[i], f64);
    mix_rows[i] = !cutmix || (!boxes.empty() && is_no_box(boxes[i]));
  }
  // (A row blended with its partner's weight exactly 0 is left as it is by the kernels.)
  const std::vector<int64_t> firsts = pair_firsts(perm);
  PairArgs args{xd.mutable_data_ptr(),
                g,
                firsts.data(),
                perm.data(),
                ws.data(),
                wp.data(),
                boxes.data(),
                mix_rows.get(),
                cutmix,
                cut.defined() ? static_cast<const uint8_t*>(cut.const_data_ptr()) : nullptr};
  const PairsFn fn = active_table()->pairs[dtype_index(xd.scalar_type())];
  const int64_t units = static_cast<int64_t>(firsts.size()) * units_per_row(g, by_lines(g, cutmix, false));

  MapWork maps;
  at::Tensor maps_d;
  if (masks_t.has_value()) {
    maps_d = masks_t->contiguous();  // (a copy when not contiguous, written back below)
    plan_maps(maps, maps_d, at::Tensor(), x, perm, &firsts, boxes, cut);
  }
  mix_targets(target, ids, perm, lam, num_classes, label_smoothing, y);
  run_units(units, [&](int64_t begin, int64_t end) { fn(args, begin, end); }, maps);
  if (!xd.is_same(x)) x.copy_(xd);
  if (masks_t.has_value() && !maps_d.is_same(*masks_t)) {
    at::Tensor m = *masks_t;
    m.copy_(maps_d);
  }
  return y;
}

at::Tensor mix_backward_cpu(const at::Tensor& grad_in, const at::Tensor& perm_t, const at::Tensor& lam_t,
                            const c10::optional<at::Tensor>& boxes_t, const c10::optional<at::Tensor>& cut_mask_t) {
  check_x(grad_in, false);
  const bool f64 = grad_in.scalar_type() == at::kDouble;
  const auto [perm, lam, boxes, cut] = checked_inputs(grad_in, perm_t, lam_t, boxes_t, cut_mask_t, false);
  const at::Tensor grad = dense_rows(grad_in);
  at::Tensor out = empty_out_like(grad, grad.scalar_type());
  const bool cutmix = boxes_t.has_value();  // box rows; a cut mask blends none
  const Geometry g = geometry(grad, &out, cutmix || cut.defined());
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
  MixArgs args{grad.const_data_ptr(),
               out.mutable_data_ptr(),
               g,
               plan.data(),
               cutmix || cut.defined(),
               true,
               false,
               nullptr,
               nullptr,
               nullptr,
               cut.defined() ? static_cast<const uint8_t*>(cut.const_data_ptr()) : nullptr};
  const int d = dtype_index(grad.scalar_type());
  const MixRowsFn fn = active_table()->mix_rows[d][d];
  const int64_t units = g.B * units_per_row(g, by_lines(g, args.cutmix, false));
  at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) { fn(args, begin, end); });
  return out;
}

// Autograd key for the in-place op: refuse x that requires grad (writing into
// it would silently break its gradient), run the kernel below autograd, and
// bump the versions of x and masks so that any tensor saved for another
// backward notices.
at::Tensor mix_inplace_autograd(at::Tensor& x, const at::Tensor& target, const at::Tensor& perm,
                                const at::Tensor& lam, const c10::optional<at::Tensor>& boxes,
                                const c10::optional<at::Tensor>& cut_mask, const c10::optional<at::Tensor>& masks,
                                int64_t num_classes, double label_smoothing, bool check) {
  TORCH_CHECK_VALUE(!x.requires_grad(), "mixup_fused: mix_ (inplace=True) cannot write into x that requires grad; ",
                    "use inplace=False to get gradients");
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mixup_fused::mix_", "")
                       .typed<at::Tensor(at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&,
                                         const c10::optional<at::Tensor>&, int64_t, double, bool)>();
  at::Tensor y;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    y = op.call(x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, check);
  }
  x.unsafeGetTensorImpl()->bump_version();
  if (masks.has_value()) masks->unsafeGetTensorImpl()->bump_version();
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
