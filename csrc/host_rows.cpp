// The host sampler's rows in one C call each (mixup_fused._C.timm_boxes and
// mixup_fused._C.scatter_rows): what mixup_fused/sampling does with numpy
// between timm's draws and the op, for the per-sample modes. On a batch of
// 64 rows numpy spends a few microseconds per call on a few dozen elements,
// and a training step with cold caches pays that a dozen times over
// (bench: the collate row, the elem CutMix cells of the matrix).
//
// timm_boxes draws the CutMix centres from numpy's global MT19937 exactly as
// np.random.randint(0, size) does (numpy's masked rejection on the bit
// generator's 32- or 64-bit outputs), row by row in index order, dim by dim,
// and does timm's box arithmetic in timm's types: the cut side in float32
// (the side ratio comes from numpy), truncated; the centre minus cut // 2 to
// the centre plus (cut + 1) // 2, clipped; lam corrected in float64 to 1 - cut
// volume / total volume and stored as float32. sampling/timm.py keeps the
// numpy version (used without the extension); a test holds the two equal.
//
// Arrays come through the buffer protocol (numpy arrays made by the sampler);
// the bit generator as numpy's "BitGenerator" capsule.

#include <Python.h>

#include <cstdint>
#include <cstring>

namespace mixup_fused {
namespace {

// numpy/random/bitgen.h's bitgen_t, stable since numpy 1.17.
struct BitGen {
  void* state;
  uint64_t (*next_uint64)(void* st);
  uint32_t (*next_uint32)(void* st);
  double (*next_double)(void* st);
  uint64_t (*next_raw)(void* st);
};

uint64_t fill_mask(uint64_t v) {
  for (int s = 1; s < 64; s *= 2) v |= v >> s;
  return v;
}

// np.random.randint(0, size) of a legacy RandomState (int64): nothing drawn
// for size 1; else the first masked output <= size - 1, from 32-bit outputs
// when the range fits in 32 bits, 64-bit ones otherwise.
int64_t legacy_randint(const BitGen* g, int64_t size) {
  const uint64_t rng = static_cast<uint64_t>(size) - 1;
  if (rng == 0) return 0;
  const uint64_t mask = fill_mask(rng);
  uint64_t v;
  if (rng <= 0xFFFFFFFFull) {
    do v = g->next_uint32(g->state) & mask;
    while (v > rng);
  } else {
    do v = g->next_uint64(g->state) & mask;
    while (v > rng);
  }
  return static_cast<int64_t>(v);
}

// A buffer of the Python object ``obj`` with the given item format and size
// (``writable`` for outputs); released when it goes out of scope.
class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (held_) PyBuffer_Release(&view_);
  }

  // False with a Python error set when obj is not such a buffer. ``formats``:
  // the accepted struct codes (int64 is 'l' or 'q' depending on the platform).
  bool get(PyObject* obj, const char* name, const char* formats, Py_ssize_t itemsize, bool writable) {
    const int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &view_, flags) != 0) return false;
    held_ = true;
    const char* f = view_.format != nullptr ? view_.format : "B";
    if (*f == '=' || *f == '<' || *f == '@') ++f;
    if (view_.itemsize != itemsize || f[0] == '\0' || f[1] != '\0' || std::strchr(formats, f[0]) == nullptr) {
      PyErr_Format(PyExc_TypeError, "mixup_fused: %s must hold items of format '%s' and size %zd, got '%s' (%zd)",
                   name, formats, itemsize, view_.format, view_.itemsize);
      return false;
    }
    return true;
  }

  Py_ssize_t count() const { return view_.len / view_.itemsize; }
  template <typename T>
  T* data() const {
    return static_cast<T*>(view_.buf);
  }

 private:
  Py_buffer view_{};
  bool held_ = false;
};

constexpr const char* kInt64 = "lq";

bool sizes_of(PyObject* seq, int64_t* sizes, int64_t* dims) {
  PyObject* fast = PySequence_Fast(seq, "mixup_fused: sizes must be a sequence of ints");
  if (fast == nullptr) return false;
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
  bool ok = n >= 1 && n <= 3;
  if (!ok) PyErr_Format(PyExc_ValueError, "mixup_fused: sizes must have 1 to 3 entries, got %zd", n);
  for (Py_ssize_t d = 0; ok && d < n; ++d) {
    sizes[d] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, d));
    if (sizes[d] == -1 && PyErr_Occurred()) ok = false;
    if (ok && sizes[d] < 1) {
      PyErr_Format(PyExc_ValueError, "mixup_fused: sizes must be positive, got %lld", static_cast<long long>(sizes[d]));
      ok = false;
    }
  }
  *dims = n;
  Py_DECREF(fast);
  return ok;
}

}  // namespace

// timm_boxes(bitgen, lam, cut, ratio, sizes, correct_lam, boxes) -> int
//   lam float32 [n] (the cut rows' lam corrected in place when correct_lam),
//   cut bool [n] (the rows that cut), ratio float32 [n] (side ratios),
//   boxes int64 [n, 2 * len(sizes)] (the cut rows written). Returns the number of cut rows.
PyObject* py_timm_boxes(PyObject*, PyObject* args) {
  PyObject *capsule, *lam_o, *cut_o, *ratio_o, *sizes_o, *boxes_o;
  int correct_lam;
  if (!PyArg_ParseTuple(args, "OOOOOpO", &capsule, &lam_o, &cut_o, &ratio_o, &sizes_o, &correct_lam, &boxes_o))
    return nullptr;
  const auto* gen = static_cast<const BitGen*>(PyCapsule_GetPointer(capsule, "BitGenerator"));
  if (gen == nullptr) return nullptr;
  int64_t sizes[3], dims;
  if (!sizes_of(sizes_o, sizes, &dims)) return nullptr;
  Buffer lam, cut, ratio, boxes;
  if (!lam.get(lam_o, "lam", "f", 4, true) || !cut.get(cut_o, "cut", "?", 1, false) ||
      !ratio.get(ratio_o, "ratio", "f", 4, false) || !boxes.get(boxes_o, "boxes", kInt64, 8, true))
    return nullptr;
  const Py_ssize_t n = lam.count();
  if (cut.count() != n || ratio.count() != n || boxes.count() != n * 2 * dims) {
    PyErr_SetString(PyExc_ValueError,
                    "mixup_fused: timm_boxes needs lam, cut, ratio of one length n and boxes [n, 2 * dims]");
    return nullptr;
  }
  double total = 1.0;
  for (int64_t d = 0; d < dims; ++d) total *= static_cast<double>(sizes[d]);
  float* lam_p = lam.data<float>();
  const bool* cut_p = cut.data<bool>();
  const float* ratio_p = ratio.data<float>();
  int64_t* box_p = boxes.data<int64_t>();
  Py_ssize_t cuts = 0;
  for (Py_ssize_t k = 0; k < n; ++k) {
    if (!cut_p[k]) continue;
    ++cuts;
    int64_t volume = 1;
    int64_t* row = box_p + k * 2 * dims;
    for (int64_t d = 0; d < dims; ++d) {
      const int64_t size = sizes[d];
      const int64_t centre = legacy_randint(gen, size);
      const int64_t side = static_cast<int64_t>(static_cast<float>(size) * ratio_p[k]);  // float32, as timm's
      int64_t lo = centre - side / 2, hi = centre + (side + 1) / 2;
      lo = lo < 0 ? 0 : (lo > size ? size : lo);
      hi = hi < 0 ? 0 : (hi > size ? size : hi);
      row[2 * d] = lo;
      row[2 * d + 1] = hi;
      volume *= hi - lo;
    }
    if (correct_lam) lam_p[k] = static_cast<float>(1.0 - static_cast<double>(volume) / total);
  }
  return PyLong_FromSsize_t(cuts);
}

// scatter_rows(mode, perm, first, second, lam, cut, boxes, lam_out, boxes_out) -> bool
//   Per-draw rows -> per-sample rows, as sampling.params.scatter_rows on host
//   draws. mode 0 'elem' (draw i is sample i), 1 'pair' (draw k goes to
//   first[k] and second[k]), 2 'half' (to first[k] only); other samples keep
//   lam = 1 and an empty box, and in 'elem' so does a sample paired with itself.
//   lam float32 [n]; cut bool [n]; boxes int64 [n, 2d] or None (no row cuts);
//   lam_out float64 [B]; boxes_out int64 [B, 2d] or None. A draw that cuts
//   gives its box, one that does not NO_BOX (all -1) or, with lam == 1, the
//   empty box. Returns whether any row changes its sample (MixParams.mixes).
PyObject* py_scatter_rows(PyObject*, PyObject* args) {
  int mode;
  PyObject *perm_o, *first_o, *second_o, *lam_o, *cut_o, *boxes_o, *lam_out_o, *boxes_out_o;
  if (!PyArg_ParseTuple(args, "iOOOOOOOO", &mode, &perm_o, &first_o, &second_o, &lam_o, &cut_o, &boxes_o,
                        &lam_out_o, &boxes_out_o))
    return nullptr;
  if (mode < 0 || mode > 2) {
    PyErr_Format(PyExc_ValueError, "mixup_fused: scatter_rows mode must be 0, 1 or 2, got %d", mode);
    return nullptr;
  }
  const bool with_boxes = boxes_o != Py_None;
  if (with_boxes != (boxes_out_o != Py_None)) {
    PyErr_SetString(PyExc_ValueError, "mixup_fused: scatter_rows needs boxes and boxes_out both or neither");
    return nullptr;
  }
  Buffer perm, first, second, lam, cut, boxes, lam_out, boxes_out;
  if (!perm.get(perm_o, "perm", kInt64, 8, false) || !first.get(first_o, "first", kInt64, 8, false) ||
      !second.get(second_o, "second", kInt64, 8, false) || !lam.get(lam_o, "lam", "f", 4, false) ||
      !cut.get(cut_o, "cut", "?", 1, false) || !lam_out.get(lam_out_o, "lam_out", "d", 8, true))
    return nullptr;
  if (with_boxes && (!boxes.get(boxes_o, "boxes", kInt64, 8, false) ||
                     !boxes_out.get(boxes_out_o, "boxes_out", kInt64, 8, true)))
    return nullptr;
  const Py_ssize_t B = perm.count(), n = lam.count(), pairs = first.count();
  const Py_ssize_t width = with_boxes && B > 0 ? boxes_out.count() / B : 0;
  bool ok = lam_out.count() == B && cut.count() == n && second.count() == pairs && (mode == 0 ? n == B : n == pairs);
  ok = ok && (!with_boxes || (boxes.count() == n * width && boxes_out.count() == B * width));
  const int64_t* perm_p = perm.data<int64_t>();
  const int64_t* first_p = first.data<int64_t>();
  const int64_t* second_p = second.data<int64_t>();
  for (Py_ssize_t k = 0; ok && k < pairs; ++k)
    ok = first_p[k] >= 0 && first_p[k] < B && second_p[k] >= 0 && second_p[k] < B;
  for (Py_ssize_t i = 0; ok && i < B; ++i) ok = perm_p[i] >= 0 && perm_p[i] < B;
  if (!ok) {
    PyErr_SetString(PyExc_ValueError, "mixup_fused: scatter_rows got arrays of inconsistent lengths or indices");
    return nullptr;
  }
  const float* lam_p = lam.data<float>();
  const bool* cut_p = cut.data<bool>();
  double* lo = lam_out.data<double>();
  int64_t* bo = with_boxes ? boxes_out.data<int64_t>() : nullptr;
  // Draw k's row into sample i.
  auto put = [&](Py_ssize_t i, Py_ssize_t k) {
    lo[i] = static_cast<double>(lam_p[k]);
    if (bo == nullptr) return;
    int64_t* row = bo + i * width;
    if (cut_p[k]) {
      std::memcpy(row, boxes.data<int64_t>() + k * width, static_cast<size_t>(width) * sizeof(int64_t));
    } else {
      for (Py_ssize_t e = 0; e < width; ++e) row[e] = lam_p[k] != 1.0f ? -1 : 0;
    }
  };
  for (Py_ssize_t i = 0; i < B; ++i) lo[i] = 1.0;
  if (bo != nullptr) std::memset(bo, 0, static_cast<size_t>(B * width) * sizeof(int64_t));
  if (mode == 0) {
    for (Py_ssize_t i = 0; i < B; ++i)
      if (perm_p[i] != i) put(i, i);
  } else {
    for (Py_ssize_t k = 0; k < pairs; ++k) {
      put(first_p[k], k);
      if (mode == 1) put(second_p[k], k);
    }
  }
  bool mixes = false;
  for (Py_ssize_t i = 0; i < B && !mixes; ++i) {
    mixes = lo[i] != 1.0;
    if (!mixes && bo != nullptr && bo[i * width] != -1) {
      bool cuts = true;
      for (Py_ssize_t d = 0; d + 1 < width; d += 2) cuts = cuts && bo[i * width + d + 1] > bo[i * width + d];
      mixes = cuts;
    }
  }
  return PyBool_FromLong(mixes);
}

}  // namespace mixup_fused
