// mixup_fused::collate_mix: builds a uint8 batch from a list of [C, H, W]
// uint8 samples and mixes it in the same pass (FastCollateMixup). Output row
// i < rows is sample i blended with sample perm[i] (weights lam[i] and
// 1 - lam[i] in float32, as timm's; rounded to nearest, ties to even) or, where boxes[i] is not
// NO_BOX, sample i with the partner's pixels inside the box. The mixed,
// smoothed targets of those rows come from the same call.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/object_ptr.h>
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

// The buffers of a call's numpy samples, released when the call returns (the
// op has copied them into the batch by then).
class HeldBuffers {
 public:
  explicit HeldBuffers(size_t n) { views_.reserve(n); }
  HeldBuffers(const HeldBuffers&) = delete;
  HeldBuffers& operator=(const HeldBuffers&) = delete;
  ~HeldBuffers() {
    for (Py_buffer& v : views_) PyBuffer_Release(&v);
  }
  // A view of the uint8 array ``obj`` as a tensor (no copy); throws naming batch[i].
  at::Tensor view(PyObject* obj, int64_t i) {
    Py_buffer v;
    if (PyObject_GetBuffer(obj, &v, PyBUF_RECORDS_RO) != 0) {
      PyErr_Clear();
      TORCH_CHECK_TYPE(false, "mixup_fused: batch[", i, "] image must be a uint8 numpy array or tensor, got ",
                       Py_TYPE(obj)->tp_name);
    }
    views_.push_back(v);
    const char* f = v.format != nullptr ? v.format : "B";
    if (*f == '=' || *f == '<' || *f == '>' || *f == '@' || *f == '|') ++f;
    TORCH_CHECK_TYPE(v.itemsize == 1 && f[0] == 'B' && f[1] == '\0', "mixup_fused: batch[", i,
                     "] image must be uint8, got an array of format '", v.format, "'");
    std::vector<int64_t> sizes(v.shape, v.shape + v.ndim), strides(v.strides, v.strides + v.ndim);
    for (int64_t st : strides)
      TORCH_CHECK_VALUE(st >= 0, "mixup_fused: batch[", i, "] image has a negative stride; pass a copy of it");
    return at::from_blob(v.buf, sizes, strides, at::TensorOptions().dtype(at::kByte));
  }

 private:
  std::vector<Py_buffer> views_;
};

}  // namespace

// mixup_fused._C.collate_batch(batch, perm, lam, boxes, rows, num_classes,
// label_smoothing) -> (images, targets): FastCollateMixup's call of
// collate_mix straight on its samples, a list of (image, class id): numpy
// arrays are read through the buffer protocol and the ids as Python ints,
// without a tensor per sample first (with cold caches, torch.from_numpy costs
// a few microseconds per sample: bench, the collate row).
PyObject* py_collate_batch(PyObject*, PyObject* args) {
  HANDLE_TH_ERRORS
  PyObject *batch, *perm_o, *lam_o, *boxes_o;
  long long rows, num_classes;
  double label_smoothing;
  if (!PyArg_ParseTuple(args, "OOOOLLd", &batch, &perm_o, &lam_o, &boxes_o, &rows, &num_classes, &label_smoothing))
    return nullptr;
  TORCH_CHECK_TYPE(THPVariable_Check(perm_o) && THPVariable_Check(lam_o) &&
                       (boxes_o == Py_None || THPVariable_Check(boxes_o)),
                   "mixup_fused: collate_batch takes perm, lam and boxes as tensors");
  THPObjectPtr fast(PySequence_Fast(batch, "mixup_fused: batch must be a list of (image, label) samples"));
  if (!fast) return nullptr;
  const Py_ssize_t B = PySequence_Fast_GET_SIZE(fast.get());
  HeldBuffers held(static_cast<size_t>(B));
  std::vector<at::Tensor> samples(static_cast<size_t>(B));
  std::vector<int64_t> labels(static_cast<size_t>(B));
  for (Py_ssize_t i = 0; i < B; ++i) {
    PyObject* s = PySequence_Fast_GET_ITEM(fast.get(), i);
    TORCH_CHECK_TYPE((PyTuple_Check(s) || PyList_Check(s)) && PySequence_Size(s) >= 2, "mixup_fused: batch[", i,
                     "] must be an (image, label) pair, got ", Py_TYPE(s)->tp_name);
    PyObject* image = PyTuple_Check(s) ? PyTuple_GET_ITEM(s, 0) : PyList_GET_ITEM(s, 0);
    PyObject* label = PyTuple_Check(s) ? PyTuple_GET_ITEM(s, 1) : PyList_GET_ITEM(s, 1);
    samples[i] = THPVariable_Check(image) ? THPVariable_Unpack(image) : held.view(image, i);
    labels[i] = PyLong_AsLongLong(label);  // ints and anything with __index__ (numpy ints, 0-d tensors)
    if (labels[i] == -1 && PyErr_Occurred()) {
      PyErr_Clear();
      TORCH_CHECK_TYPE(false, "mixup_fused: the label of batch[", i, "] must be an integer class id, got ",
                       Py_TYPE(label)->tp_name);
    }
  }
  const at::Tensor target =
      at::from_blob(labels.data(), {static_cast<int64_t>(B)}, at::TensorOptions().dtype(at::kLong));
  c10::optional<at::Tensor> boxes;
  if (boxes_o != Py_None) boxes = THPVariable_Unpack(boxes_o);
  auto result = collate_mix_cpu(samples, THPVariable_Unpack(perm_o), THPVariable_Unpack(lam_o), boxes, rows, target,
                                num_classes, label_smoothing);
  return Py_BuildValue("(NN)", THPVariable_Wrap(std::get<0>(result)), THPVariable_Wrap(std::get<1>(result)));
  END_HANDLE_TH_ERRORS
}

TORCH_LIBRARY_IMPL(mixup_fused, CPU, m) { m.impl("collate_mix", &collate_mix_cpu); }

}  // namespace mixup_fused
