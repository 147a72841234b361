#include "targets.h"

#include <ATen/Parallel.h>

namespace mixup_fused {

void mix_targets(const at::Tensor& target, const std::vector<int64_t>& ids, const std::vector<int64_t>& perm,
                 const float* w_self, const float* w_part, int64_t K, double eps, at::Tensor& y) {
  const int64_t rows = y.size(0);
  float* yd = y.data_ptr<float>();
  const float off_value = static_cast<float>(eps / K);
  const float on_value = static_cast<float>(1.0 - eps + eps / K);
  if (!ids.empty() || rows == 0) {
    at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float l = w_self[i], r = w_part[i];
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
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float l = w_self[i], r = w_part[i];
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

FloatWeights float_weights(const std::vector<double>& lam) {
  FloatWeights w{std::vector<float>(lam.size()), std::vector<float>(lam.size())};
  for (size_t i = 0; i < lam.size(); ++i) {
    w.self[i] = static_cast<float>(lam[i]);
    w.part[i] = static_cast<float>(1.0 - lam[i]);
  }
  return w;
}

void mix_targets(const at::Tensor& target, const std::vector<int64_t>& ids, const std::vector<int64_t>& perm,
                 const std::vector<double>& lam, int64_t K, double eps, at::Tensor& y) {
  const FloatWeights w = float_weights(lam);
  mix_targets(target, ids, perm, w.self.data(), w.part.data(), K, eps, y);
}

}  // namespace mixup_fused
