// The mixed, smoothed targets of the CPU ops:
// y[i] = lam[i] * s(t[i]) + (1 - lam[i]) * s(t[perm[i]]), s(t) = onehot(t) * (1 - eps) + eps / K.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace mixup_fused {

// ``ids``: the checked class ids, or empty for soft [B, K] rows in ``target``.
// ``y``: float32 [B, K], written whole.
void mix_targets(const at::Tensor& target, const std::vector<int64_t>& ids, const std::vector<int64_t>& perm,
                 const std::vector<double>& lam, int64_t K, double eps, at::Tensor& y);

}  // namespace mixup_fused
