"""The registered ops ``mixup_fused::mix``, ``mix_`` and ``mix_backward``.

One call mixes the images, builds the mixed targets and, with ``masks``,
moves the label maps with the cut: ``mix`` returns ``(x_out, y, masks_out)``
(``masks_out`` an empty int64 tensor when no maps are given).

The schemas and the CPU kernels live in C++ (``csrc/``, loaded as
``mixup_fused._C``). This module registers the CUDA kernels onto the Triton
launchers, the fake kernels used by torch.compile, and the autograd formula.
Without the C++ build the schemas are defined here, so that the CUDA (Triton)
kernels still work.
"""

from __future__ import annotations

import torch

from . import _checks
from ._layout import default_out_dtype, dense_rows, empty_out_like

try:
    from . import _C  # noqa: F401  (registers the schemas and the CPU kernels)

    HAS_CPP = True
    CPP_IMPORT_ERROR: Exception | None = None
except ImportError as err:  # pragma: no cover - exercised only without a build
    HAS_CPP = False
    CPP_IMPORT_ERROR = err

# The schemas as csrc/library.cpp declares them, for a machine without the C++ build.
SCHEMAS = {
    "mix": (
        "mix(Tensor x, Tensor target, Tensor perm, Tensor lam, Tensor? boxes, Tensor? cut_mask, Tensor? masks, "
        "int num_classes, float label_smoothing, Tensor? mean, Tensor? std, ScalarType? out_dtype, bool check) "
        "-> (Tensor, Tensor, Tensor)"
    ),
    "mix_": (
        "mix_(Tensor(a!) x, Tensor target, Tensor perm, Tensor lam, Tensor? boxes, Tensor? cut_mask, "
        "Tensor(b!)? masks, int num_classes, float label_smoothing, bool check) -> Tensor"
    ),
    "mix_backward": "mix_backward(Tensor grad, Tensor perm, Tensor lam, Tensor? boxes, Tensor? cut_mask) -> Tensor",
    "collate_mix": (
        "collate_mix(Tensor[] samples, Tensor perm, Tensor lam, Tensor? boxes, int rows, "
        "Tensor target, int num_classes, float label_smoothing) -> (Tensor, Tensor)"
    ),
}

if not HAS_CPP:  # pragma: no cover
    _lib = torch.library.Library("mixup_fused", "DEF")
    for _schema in SCHEMAS.values():
        _lib.define(_schema)


# ----------------------------------------------------------------------------
# CUDA: the Triton launchers (imported on first use: triton is optional on CPU machines)
# ----------------------------------------------------------------------------


def _mix_cuda(*args):
    from .triton import mix_triton

    return mix_triton(*args)


def _mix_inplace_cuda(*args):
    from .triton import mix_inplace_triton

    return mix_inplace_triton(*args)


def _mix_backward_cuda(*args):
    from .triton import mix_backward_triton

    return mix_backward_triton(*args)


torch.library.register_kernel("mixup_fused::mix", "cuda", _mix_cuda)
torch.library.register_kernel("mixup_fused::mix_", "cuda", _mix_inplace_cuda)
torch.library.register_kernel("mixup_fused::mix_backward", "cuda", _mix_backward_cuda)


# ----------------------------------------------------------------------------
# Fake kernels (torch.compile, meta tensors): the same argument rules, no data
# ----------------------------------------------------------------------------


def empty_maps_out(masks, x):
    """The third output of ``mix``: the mixed maps' buffer, or an empty int64 tensor without maps."""
    if masks is None:
        return x.new_empty((0,), dtype=torch.int64)
    return torch.empty(masks.shape, dtype=masks.dtype, device=masks.device)


@torch.library.register_fake("mixup_fused::mix")
def _mix_fake(x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, mean, std, out_dtype, check):
    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype,
                       cut_mask=cut_mask, masks=masks)  # fmt: skip
    out = empty_out_like(dense_rows(x), default_out_dtype(x, out_dtype))
    return out, x.new_empty((x.shape[0], num_classes), dtype=torch.float32), empty_maps_out(masks, x)


@torch.library.register_fake("mixup_fused::mix_")
def _mix_inplace_fake(x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, check):
    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, inplace=True,
                       cut_mask=cut_mask, masks=masks)  # fmt: skip
    return x.new_empty((x.shape[0], num_classes), dtype=torch.float32)


@torch.library.register_fake("mixup_fused::mix_backward")
def _mix_backward_fake(grad, perm, lam, boxes, cut_mask):
    return empty_out_like(dense_rows(grad), grad.dtype)


@torch.library.register_fake("mixup_fused::collate_mix")
def _collate_mix_fake(samples, perm, lam, boxes, rows, target, num_classes, label_smoothing):
    torch._check(len(samples) > 0, lambda: "mixup_fused: samples must hold at least one sample")
    torch._check(0 <= rows <= len(samples), lambda: f"mixup_fused: rows must be in [0, B = {len(samples)}], got {rows}")
    y = samples[0].new_empty((rows, num_classes), dtype=torch.float32)
    return samples[0].new_empty((rows, *samples[0].shape)), y


# ----------------------------------------------------------------------------
# Autograd: the gradient of a mix is a mix of the incoming gradient through
# the inverse permutation. Targets carry no gradient.
# ----------------------------------------------------------------------------


def grad_x(mix_backward_fn, grad_out, perm, lam, boxes, cut_mask, std, x_dtype):
    """``dL/dx`` from ``dL/dout``: the mix backward, then (when normalising)
    the division by std, in float32 so that half-precision grads round once."""
    if std is None:
        return mix_backward_fn(grad_out, perm, lam, boxes, cut_mask).to(x_dtype)
    wide = torch.float64 if torch.float64 in (grad_out.dtype, x_dtype) else torch.float32
    grad = mix_backward_fn(grad_out.to(wide), perm, lam, boxes, cut_mask)
    return (grad / std.to(wide).view((1, -1) + (1,) * (grad.dim() - 2))).to(x_dtype)


# Gradients of mix: x only (the op's 13 inputs).
_MIX_NONE_GRADS = (None,) * 12


def _mix_setup_context(ctx, inputs, output):
    x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, mean, std, out_dtype, check = inputs
    ctx.x_dtype = x.dtype
    ctx.save_for_backward(perm, lam, boxes, cut_mask, std)
    ctx.mark_non_differentiable(output[1], output[2])


def _mix_backward(ctx, grad_out, grad_y, grad_maps):
    perm, lam, boxes, cut_mask, std = ctx.saved_tensors
    grad = None
    if ctx.needs_input_grad[0] and grad_out is not None:
        grad = grad_x(torch.ops.mixup_fused.mix_backward, grad_out, perm, lam, boxes, cut_mask, std, ctx.x_dtype)
    return (grad, *_MIX_NONE_GRADS)


def _mix_backward_setup_context(ctx, inputs, output):
    grad, perm, lam, boxes, cut_mask = inputs
    ctx.save_for_backward(perm, lam, boxes, cut_mask)


def forward_mix_of(mix_fn, gg, perm, lam, boxes, cut_mask):
    """The forward image mix of ``gg`` (the derivative of ``mix_backward``), targets negligible."""
    ids = torch.zeros(gg.shape[0], dtype=torch.int64, device=gg.device)  # one class
    return mix_fn(gg, ids, perm, lam, boxes, cut_mask, None, 1, 0.0, None, None, None, False)[0]


def _mix_backward_backward(ctx, gg):
    # mix_backward is linear in its input: g -> A^T g, so its derivative is A,
    # the forward mix. This makes double (and higher) backward exact.
    perm, lam, boxes, cut_mask = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None, None, None
    return forward_mix_of(torch.ops.mixup_fused.mix, gg, perm, lam, boxes, cut_mask), None, None, None, None


torch.library.register_autograd(
    "mixup_fused::mix_backward", _mix_backward_backward, setup_context=_mix_backward_setup_context
)
torch.library.register_autograd("mixup_fused::mix", _mix_backward, setup_context=_mix_setup_context)
