// mixup_fused: the op schemas and the Python module ``mixup_fused._C``.
//
// The schemas are declared once here (TORCH_LIBRARY); the CPU kernels are
// registered in mix_ops.cpp and the CUDA kernels from Python onto the Triton
// launchers (mixup_fused/_registration.py). ``import mixup_fused._C`` loads
// this library, which runs the registrations (as in pytorch/extension-cpp),
// and exposes which CPU kernel table runs.

#include <Python.h>

#include <torch/library.h>

#include "isa.h"

namespace mixup_fused {

// host_rows.cpp: the host sampler's rows.
PyObject* py_timm_boxes(PyObject*, PyObject* args);
PyObject* py_scatter_rows(PyObject*, PyObject* args);
// collate_op.cpp: FastCollateMixup's call.
PyObject* py_collate_batch(PyObject*, PyObject* args);

namespace {

// Python-visible helpers of the _C module: which kernel table runs.
PyObject* py_cpu_isa(PyObject*, PyObject*) { return PyUnicode_FromString(active_table()->name); }

PyObject* py_supported_cpu_isas(PyObject*, PyObject*) {
  const auto tables = supported_tables();
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(tables.size()));
  for (size_t i = 0; i < tables.size(); ++i)
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), PyUnicode_FromString(tables[i]->name));
  return list;
}

PyObject* py_set_cpu_isa(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (name == nullptr) return nullptr;
  const KernelTable* t = find_table(name);
  if (t == nullptr) {
    PyErr_Format(PyExc_ValueError, "mixup_fused: cpu isa '%s' is not supported on this CPU", name);
    return nullptr;
  }
  const char* previous = set_active_table(t)->name;
  return PyUnicode_FromString(previous);
}

PyMethodDef kMethods[] = {
    {"cpu_isa", py_cpu_isa, METH_NOARGS, "Name of the CPU kernel table in use."},
    {"supported_cpu_isas", py_supported_cpu_isas, METH_NOARGS, "CPU kernel tables this CPU can run."},
    {"set_cpu_isa", py_set_cpu_isa, METH_O, "Select a CPU kernel table by name; returns the previous one."},
    {"timm_boxes", py_timm_boxes, METH_VARARGS, "timm's CutMix boxes of the cut rows, centres from numpy's RNG."},
    {"scatter_rows", py_scatter_rows, METH_VARARGS, "Per-draw rows to per-sample rows (host draws)."},
    {"collate_batch", py_collate_batch, METH_VARARGS, "collate_mix on a list of (uint8 image, class id) samples."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

TORCH_LIBRARY(mixup_fused, m) {
  m.def(
      "mix(Tensor x, Tensor target, Tensor perm, Tensor lam, Tensor? boxes, Tensor? cut_mask, Tensor? masks, "
      "int num_classes, float label_smoothing, Tensor? mean, Tensor? std, ScalarType? out_dtype, bool check) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "mix_(Tensor(a!) x, Tensor target, Tensor perm, Tensor lam, Tensor? boxes, Tensor? cut_mask, "
      "Tensor(b!)? masks, int num_classes, float label_smoothing, bool check) -> Tensor");
  m.def("mix_backward(Tensor grad, Tensor perm, Tensor lam, Tensor? boxes, Tensor? cut_mask) -> Tensor");
  m.def(
      "collate_mix(Tensor[] samples, Tensor perm, Tensor lam, Tensor? boxes, int rows, "
      "Tensor target, int num_classes, float label_smoothing) -> (Tensor, Tensor)");
}

}  // namespace mixup_fused

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, mixup_fused::kMethods};
  return PyModule_Create(&module_def);
}
}
