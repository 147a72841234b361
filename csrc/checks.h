// The argument rules of the CPU kernels: the same rules, and the same
// messages, as mixup_fused/_checks.py. Every op validates all of its
// arguments with these before it writes anything, so a call that raises
// leaves its inputs untouched.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "kernel_types.h"

namespace mixup_fused {

// Class ids, K and one sample's length are int32 in the kernels' indexing.
constexpr int64_t kInt32Max = 2147483647;

bool is_float(at::ScalarType t);

// A box row of all -1 (NO_BOX) marks a sample that is mixed with lam rather
// than cut, so one call can serve timm's per-sample mixup/CutMix switch.
inline bool is_no_box(const Box& b) { return b.none; }

void check_x(const at::Tensor& x, bool normalize);
void check_same_device(const at::Tensor& x, const at::Tensor& t, const char* name);
// The values, checked and read once on the host.
std::vector<int64_t> checked_perm(const at::Tensor& x, const at::Tensor& perm, bool involution);
// Each value, as given, must lie in [0, 1] (the kernels weight the partner by 1 - lam).
std::vector<double> checked_lam(const at::Tensor& x, const at::Tensor& lam, const char* name = "lam");
// x's spatial sizes (1 to 3 dims) for ``name``, an argument that needs them.
std::vector<int64_t> spatial_of(const at::Tensor& x, const char* name);
// One Box per row: (lo, hi) per spatial dim, [B, 2n] for n spatial dims.
std::vector<Box> checked_boxes(const at::Tensor& x, const c10::optional<at::Tensor>& boxes);
// A cut mask replaces the boxes: never both.
void check_exclusive(const c10::optional<at::Tensor>& boxes, const c10::optional<at::Tensor>& cut_mask);
// The cut mask, contiguous (bool or uint8, one byte per pixel: nonzero takes
// the partner's pixel), or an undefined tensor when none is given.
at::Tensor checked_cut_mask(const at::Tensor& x, const c10::optional<at::Tensor>& cut_mask);
// perm, lam and the cut (boxes or a cut mask) of a call, checked against x.
struct MixInputs {
  std::vector<int64_t> perm;
  std::vector<double> lam;
  std::vector<Box> boxes;  // empty without boxes
  at::Tensor cut;          // undefined without a cut mask
};
MixInputs checked_inputs(const at::Tensor& x, const at::Tensor& perm, const at::Tensor& lam,
                         const c10::optional<at::Tensor>& boxes, const c10::optional<at::Tensor>& cut_mask,
                         bool involution);
// Label maps: int64, int32 or uint8 [B, *spatial] or [B, 1, *spatial].
void check_masks(const at::Tensor& x, const c10::optional<at::Tensor>& masks);
// The class ids (empty for soft targets).
std::vector<int64_t> checked_target(const at::Tensor& x, const at::Tensor& target, int64_t num_classes,
                                    double label_smoothing);

struct ChannelStats {
  bool on = false;
  std::vector<double> mean, std;
};
ChannelStats checked_norm(const at::Tensor& x, const c10::optional<at::Tensor>& mean,
                          const c10::optional<at::Tensor>& std);

}  // namespace mixup_fused
