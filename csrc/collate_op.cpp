// mixup_fused::collate_mix: builds a uint8 batch from a list of [C, H, W]
// uint8 samples and mixes it in the same pass (FastCollateMixup). Output row
// i < rows is sample i blended with sample perm[i] (weights lam[i] and
// 1 - lam[i] in float32, as timm's; rounded to nearest, ties to even) or, where boxes[i] is not
// NO_BOX, sample i with the partner's pixels inside the box. The mixed,
// smoothed targets of those rows come from the same call.

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

std::tuple<at::Tensor, at::Tensor> collate_mix_cpu(at::TensorList samples, const at::Tensor& perm_t,
                                                   const at::Tensor& lam_t,
                                                   const c10::optional<at::Tensor>& boxes_t, int64_t rows,
                                                   const at::Tensor& target, int64_t num_classes,
                                                   double label_smoothing) {
  TORCH_CHECK_VALUE(!samples.empty(), "mixup_fused: samples must hold at least one sample");
  const at::Tensor& first = samples[0];
  const int64_t B = static_cast<int64_t>(samples.size());
  for (int64_t i = 0; i < B; ++i) {
    const at::Tensor& s = samples[i];
    TORCH_CHECK_TYPE(s.scalar_type() == at::kByte, "mixup_fused: samples[", i, "] must be uint8, got ",
                     s.scalar_type());
    TORCH_CHECK_VALUE(s.device().is_cpu(), "mixup_fused: samples[", i, "] is on ", s.device(),
                      "; collate-time mixing runs on CPU samples");
    TORCH_CHECK_VALUE(s.dim() == 3, "mixup_fused: samples[", i, "] must have shape [C, H, W], got ", s.sizes());
    TORCH_CHECK_VALUE(s.sizes() == first.sizes(), "mixup_fused: samples[", i, "] has shape ", s.sizes(),
                      " but samples[0] has shape ", first.sizes(), "; a batch needs samples of one shape");
  }
  TORCH_CHECK_VALUE(rows >= 0 && rows <= B, "mixup_fused: rows must be in [0, B = ", B, "], got ", rows);
  const int64_t C = first.size(0), H = first.size(1), W = first.size(2);
  // The batch the rules are stated for, as a view: nothing is allocated.
  const at::Tensor batch = first.unsqueeze(0).expand({B, C, H, W});
  const auto perm = checked_perm(batch, perm_t, false);
  const FloatWeights w = float_weights(checked_lam(batch, lam_t));
  const auto boxes = checked_boxes(batch, boxes_t);
  const auto ids = checked_target(batch, target, num_classes, label_smoothing);

  // Samples are read in place when all are dense [C, H, W] or all are dense
  // [H, W, C] buffers viewed as [C, H, W] (timm's ToNumpy gives those: the
  // kernel splits the channels as it writes); anything else is made dense first.
  bool interleaved = C > 1;
  bool all_chw = true;
  for (int64_t i = 0; i < B; ++i) {
    all_chw = all_chw && samples[i].is_contiguous();
    interleaved = interleaved && samples[i].permute({1, 2, 0}).is_contiguous();
  }
  interleaved = interleaved && !all_chw;
  std::vector<at::Tensor> dense(B);
  std::vector<const uint8_t*> ptrs(B);
  for (int64_t i = 0; i < B; ++i) {
    dense[i] = interleaved ? samples[i] : samples[i].contiguous();
    ptrs[i] = dense[i].const_data_ptr<uint8_t>();
  }
  std::unique_ptr<bool[]> blend(new bool[B > 0 ? B : 1]);
  for (int64_t i = 0; i < B; ++i) blend[i] = boxes.empty() || is_no_box(boxes[i]);
  at::Tensor y = at::empty({rows, num_classes}, first.options().dtype(at::kFloat));
  mix_targets(target, ids, perm, w.self.data(), w.part.data(), num_classes, label_smoothing, y);
  at::Tensor out = at::empty({rows, C, H, W}, first.options());
  const CollateArgs args{ptrs.data(), out.mutable_data_ptr<uint8_t>(), rows, C, H, W, perm.data(), w.self.data(), w.part.data(),
                         boxes.empty() ? nullptr : boxes.data(), blend.get(), interleaved};
  const CollateFn fn = active_table()->collate;
  at::parallel_for(0, interleaved ? rows : rows * C, 1, [&](int64_t begin, int64_t end) { fn(args, begin, end); });
  return {out, y};
}

}  // namespace

TORCH_LIBRARY_IMPL(mixup_fused, CPU, m) { m.impl("collate_mix", &collate_mix_cpu); }

}  // namespace mixup_fused
