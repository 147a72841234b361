// The mixed, smoothed targets of the CPU ops:
// y[i] = w_self[i] * s(t[i]) + w_part[i] * s(t[perm[i]]), s(t) = onehot(t) * (1 - eps) + eps / K,
// with the weights lam and 1 - lam each rounded once to float32 (timm's and torchvision's arithmetic).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace mixup_fused {

// ``ids``: the checked class ids, or empty for soft [B, K] rows in ``target``
// (then s(t) = t * (1 - eps) + eps / K). ``y``: float32 [rows, K], rows <= B,
// written whole; the weights have at least ``rows`` entries.
void mix_targets(const at::Tensor& target, const std::vector<int64_t>& ids, const std::vector<int64_t>& perm,
                 const float* w_self, const float* w_part, int64_t K, double eps, at::Tensor& y);

// The float32 weights of lam: lam[i] and 1 - lam[i], each rounded once from float64.
struct FloatWeights {
  std::vector<float> self, part;
};
FloatWeights float_weights(const std::vector<double>& lam);

// mix_targets with the weights of lam.
void mix_targets(const at::Tensor& target, const std::vector<int64_t>& ids, const std::vector<int64_t>& perm,
                 const std::vector<double>& lam, int64_t K, double eps, at::Tensor& y);

}  // namespace mixup_fused
