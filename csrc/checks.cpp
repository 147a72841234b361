#include "checks.h"

#include <cmath>
#include <iomanip>
#include <sstream>
#include <string>

namespace mixup_fused {
namespace {

// The values of a small 1-d (or [B, 4]) CPU tensor as Out.
template <typename Out>
std::vector<Out> host_values(const at::Tensor& t, at::ScalarType as) {
  const at::Tensor c = t.to(as).contiguous();
  const Out* d = c.const_data_ptr<Out>();
  return std::vector<Out>(d, d + c.numel());
}

}  // namespace

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
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
std::vector<double> checked_lam(const at::Tensor& x, const at::Tensor& lam, const char* name) {
  const int64_t B = x.size(0);
  check_same_device(x, lam, name);
  TORCH_CHECK_TYPE(is_float(lam.scalar_type()), "mixup_fused: ", name, " must be a floating tensor, got ",
                   lam.scalar_type());
  TORCH_CHECK_VALUE(lam.dim() == 1 && lam.size(0) == B, "mixup_fused: ", name, " must have shape [B] = [", B,
                    "], got ", lam.sizes());
  std::vector<double> out = host_values<double>(lam, at::kDouble);
  for (int64_t i = 0; i < B; ++i) {
    TORCH_CHECK_VALUE(out[i] >= 0.0 && out[i] <= 1.0, "mixup_fused: ", name, "[", i, "] = ", std::setprecision(17),
                      out[i], " must be in [0, 1]");
  }
  return out;
}

std::vector<int64_t> spatial_of(const at::Tensor& x, const char* name) {
  TORCH_CHECK_VALUE(x.dim() >= 3 && x.dim() <= 5, "mixup_fused: ", name,
                    " need x of shape [B, C, T], [B, C, H, W] or [B, C, D, H, W], got x of shape ", x.sizes());
  return std::vector<int64_t>(x.sizes().begin() + 2, x.sizes().end());
}

namespace {

// A sequence as Python prints a tuple: (3,) or (1, 2).
template <typename T>
std::string py_tuple(const std::vector<T>& v) {
  std::ostringstream s;
  s << "(";
  for (size_t k = 0; k < v.size(); ++k) s << (k ? ", " : "") << v[k];
  s << (v.size() == 1 ? ",)" : ")");
  return s.str();
}

// As _checks.box_error: row i is out of bounds in spatial dim d.
std::string box_error(int64_t i, const std::vector<int64_t>& row, const std::vector<int64_t>& spatial, size_t d) {
  std::ostringstream s;
  const std::vector<int64_t> no_box(row.size(), -1);
  if (spatial.size() == 2) {
    s << "boxes[" << i << "] = " << py_tuple(row) << " must satisfy 0 <= y0 <= y1 <= H = " << spatial[0]
      << " and 0 <= x0 <= x1 <= W = " << spatial[1] << ", or be " << py_tuple(no_box)
      << " (NO_BOX) to mix that sample with lam";
  } else {
    s << "boxes[" << i << "] = " << py_tuple(row) << ": spatial dim " << d << " needs 0 <= lo <= hi <= "
      << spatial[d] << " (spatial size " << py_tuple(spatial)
      << ", (lo, hi) per dim), or the row all -1 (NO_BOX) to mix that sample with lam";
  }
  return s.str();
}

// A per-pixel tensor [B, *spatial] or [B, 1, *spatial] of x's batch and spatial size.
void check_map_like(const at::Tensor& x, const at::Tensor& t, const char* name, bool dtype_ok, const char* what) {
  const std::vector<int64_t> spatial = spatial_of(x, name);
  check_same_device(x, t, name);
  TORCH_CHECK_TYPE(dtype_ok, "mixup_fused: ", name, " must be ", what, ", got ", t.scalar_type());
  std::vector<int64_t> plain{x.size(0)}, with_one{x.size(0), 1};
  plain.insert(plain.end(), spatial.begin(), spatial.end());
  with_one.insert(with_one.end(), spatial.begin(), spatial.end());
  TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(plain) || t.sizes() == at::IntArrayRef(with_one), "mixup_fused: ",
                    name, " must have shape [B, *spatial] = ", at::IntArrayRef(plain),
                    " or [B, 1, *spatial] (x is ", x.sizes(), "), got ", t.sizes());
}

}  // namespace

std::vector<Box> checked_boxes(const at::Tensor& x, const c10::optional<at::Tensor>& boxes) {
  std::vector<Box> out;
  if (!boxes.has_value()) return out;
  const auto& b = *boxes;
  const int64_t B = x.size(0);
  check_same_device(x, b, "boxes");
  const std::vector<int64_t> spatial = spatial_of(x, "boxes (CutMix)");
  const int64_t n = static_cast<int64_t>(spatial.size()), width = 2 * n;
  TORCH_CHECK_TYPE(!is_float(b.scalar_type()) && b.scalar_type() != at::kBool && !at::isComplexType(b.scalar_type()),
                   "mixup_fused: boxes must be an integer tensor, got ", b.scalar_type());
  TORCH_CHECK_VALUE(b.dim() == 2 && b.size(0) == B && b.size(1) == width,
                    "mixup_fused: boxes must have shape [B, 2 * spatial dims] = [", B, ", ", width,
                    "] for x of shape ", x.sizes(), " ((lo, hi) per spatial dim), got ", b.sizes());
  const std::vector<int64_t> bl = host_values<int64_t>(b, at::kLong);
  out.resize(B);
  for (int64_t i = 0; i < B; ++i) {
    const std::vector<int64_t> row(bl.begin() + i * width, bl.begin() + (i + 1) * width);
    bool none = true;
    for (int64_t v : row) none = none && v == -1;
    // Fewer than three spatial dims: the leading ones are (0, 1).
    int64_t lohi[6] = {0, 1, 0, 1, 0, 1};
    for (int64_t k = 0; k < width; ++k) lohi[6 - width + k] = row[k];
    for (int64_t d = 0; d < n && !none; ++d) {
      const int64_t lo = row[2 * d], hi = row[2 * d + 1];
      TORCH_CHECK_VALUE(0 <= lo && lo <= hi && hi <= spatial[d], "mixup_fused: ",
                        box_error(i, row, spatial, static_cast<size_t>(d)));
    }
    out[i] = Box{lohi[0], lohi[1], lohi[2], lohi[3], lohi[4], lohi[5], none};
  }
  return out;
}

void check_exclusive(const c10::optional<at::Tensor>& boxes, const c10::optional<at::Tensor>& cut_mask) {
  TORCH_CHECK_VALUE(!(boxes.has_value() && cut_mask.has_value()),
                    "mixup_fused: cut_mask and boxes are exclusive: pass one of them");
}

at::Tensor checked_cut_mask(const at::Tensor& x, const c10::optional<at::Tensor>& cut_mask) {
  if (!cut_mask.has_value()) return at::Tensor();
  const auto& m = *cut_mask;
  check_map_like(x, m, "cut_mask", m.scalar_type() == at::kBool || m.scalar_type() == at::kByte,
                 "a bool (or uint8) tensor");
  return m.contiguous();
}

MixInputs checked_inputs(const at::Tensor& x, const at::Tensor& perm, const at::Tensor& lam,
                         const c10::optional<at::Tensor>& boxes, const c10::optional<at::Tensor>& cut_mask,
                         bool involution) {
  MixInputs in{checked_perm(x, perm, involution), checked_lam(x, lam), {}, {}};
  check_exclusive(boxes, cut_mask);
  in.boxes = checked_boxes(x, boxes);
  in.cut = checked_cut_mask(x, cut_mask);
  return in;
}

void check_masks(const at::Tensor& x, const c10::optional<at::Tensor>& masks) {
  if (!masks.has_value()) return;
  const auto t = masks->scalar_type();
  check_map_like(x, *masks, "masks", t == at::kLong || t == at::kInt || t == at::kByte,
                 "an integer label map (int64, int32 or uint8)");
}

// Returns the class ids (empty for soft targets).
std::vector<int64_t> checked_target(const at::Tensor& x, const at::Tensor& target, int64_t num_classes,
                                    double label_smoothing) {
  const int64_t B = x.size(0);
  TORCH_CHECK_VALUE(num_classes >= 1 && num_classes <= kInt32Max,
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

ChannelStats checked_norm(const at::Tensor& x, const c10::optional<at::Tensor>& mean, const c10::optional<at::Tensor>& std) {
  ChannelStats n;
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

}  // namespace mixup_fused
