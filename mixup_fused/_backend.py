"""Which backend runs a mix, and the backends that are not registered kernels.

Backends: ``triton`` (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``),
``cpp`` (CPU tensors), ``reference`` (pure PyTorch). ``auto`` picks by device;
the ``MIXUP_FUSED_BACKEND`` environment variable overrides ``auto``. The C++
and CUDA kernels are reached through the registered op; the reference and
the Triton launchers on CPU tensors are called directly, with the same
argument rules and the same autograd formula.
"""

from __future__ import annotations

import os
import warnings

import torch

from . import _checks
from ._layout import as_layout_of, default_out_dtype
from ._registration import CPP_IMPORT_ERROR, HAS_CPP, forward_mix_of, grad_x
from .reference import mix_images_reference, mix_inplace_reference, mix_maps_reference, mix_targets_reference

BACKENDS = ("auto", "triton", "cpp", "reference")
_warned_fallback = False


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """The concrete backend for ``x``: raises if the asked one cannot run it."""
    global _warned_fallback
    if backend not in BACKENDS:
        raise ValueError(f"mixup_fused: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get("MIXUP_FUSED_BACKEND") or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"mixup_fused: MIXUP_FUSED_BACKEND must be one of {BACKENDS}, got {backend!r}")
    # (is_cuda / is_cpu: cheaper than building x.device on every call.)
    if backend in ("auto", "reference") and not (x.is_cpu or x.is_cuda):
        raise ValueError(f"mixup_fused: x is on {x.device}; supported devices are cpu and cuda")
    if backend == "auto":
        if x.is_cuda:
            return "triton"
        if HAS_CPP:
            return "cpp"
        if not _warned_fallback:
            _warned_fallback = True
            warnings.warn(
                f"mixup_fused: the C++ extension is not built ({CPP_IMPORT_ERROR}); "
                "falling back to the slow pure-PyTorch reference on CPU",
                RuntimeWarning,
                stacklevel=3,
            )
        return "reference"
    if backend == "cpp":
        if not HAS_CPP:
            raise RuntimeError(f"mixup_fused: backend='cpp' needs the C++ extension: {CPP_IMPORT_ERROR}")
        if not x.is_cpu:
            raise ValueError(f"mixup_fused: backend='cpp' runs on CPU tensors, but x is on {x.device}")
    if backend == "triton" and not x.is_cuda:
        from .triton import interpreter_active

        if not (x.is_cpu and interpreter_active()):
            raise ValueError(
                f"mixup_fused: backend='triton' needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1 "
                f"set before import), but x is on {x.device}"
            )
    return backend


def run_mix(backend, x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, mean, std,
            out_dtype, check):  # fmt: skip
    """``mixup_fused::mix`` on ``backend`` (a resolved one): ``(x_out, y, masks_out)``."""
    args = (x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, mean, std, out_dtype, check)
    if backend == "reference":
        return _mix_reference(*args)
    if backend == "triton" and not x.is_cuda:
        return _TritonOnCPU.apply(*args)
    return torch.ops.mixup_fused.mix(*args)


def run_mix_(backend, x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, check):
    """``mixup_fused::mix_`` on ``backend`` (a resolved one): mixes ``x`` (and
    the label maps ``masks``) in place, returns the targets."""
    args = (x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, check)
    if backend == "reference":
        _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, inplace=True,
                           cut_mask=cut_mask, masks=masks)  # fmt: skip
        if check:
            _checks.check_values(x, target, perm, lam, boxes, num_classes, inplace=True)
        mix_inplace_reference(x, perm, lam, boxes, cut_mask, masks)
        return mix_targets_reference(target, perm, lam, num_classes, label_smoothing)
    if backend == "triton" and not x.is_cuda:
        from .triton import mix_inplace_triton

        return mix_inplace_triton(*args)
    return torch.ops.mixup_fused.mix_(*args)


def _mix_reference(x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, mean, std, out_dtype,
                   check):  # fmt: skip
    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype,
                       cut_mask=cut_mask, masks=masks)  # fmt: skip
    if check:
        _checks.check_values(x, target, perm, lam, boxes, num_classes, mean, std)
    out = mix_images_reference(x, perm, lam, boxes, mean, std, default_out_dtype(x, out_dtype), cut_mask)
    out = as_layout_of(out, x)
    if masks is None:
        maps = x.new_empty((0,), dtype=torch.int64)
    else:
        maps = mix_maps_reference(masks, perm, x.shape, boxes, cut_mask).contiguous()
    return out, mix_targets_reference(target, perm, lam, num_classes, label_smoothing), maps


class _TritonOnCPU(torch.autograd.Function):
    """The Triton launchers on CPU tensors (interpreter), with the registered op's autograd formula."""

    @staticmethod
    def forward(ctx, x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, mean, std,
                out_dtype, check):  # fmt: skip
        from .triton import mix_triton

        out, y, maps = mix_triton(x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, mean,
                                  std, out_dtype, check)  # fmt: skip
        ctx.x_dtype = x.dtype
        ctx.save_for_backward(perm, lam, boxes, cut_mask, std)
        ctx.mark_non_differentiable(y, maps)
        return out, y, maps

    @staticmethod
    def backward(ctx, grad_out, grad_y, grad_maps):
        perm, lam, boxes, cut_mask, std = ctx.saved_tensors
        grad = grad_x(_TritonBackwardOnCPU.apply, grad_out, perm, lam, boxes, cut_mask, std, ctx.x_dtype)
        return (grad,) + (None,) * 12


class _TritonBackwardOnCPU(torch.autograd.Function):
    """``mix_backward`` on CPU tensors under the interpreter; differentiable
    (its derivative is the forward mix), like the registered op."""

    @staticmethod
    def forward(ctx, grad, perm, lam, boxes, cut_mask):
        from .triton import mix_backward_triton

        ctx.save_for_backward(perm, lam, boxes, cut_mask)
        return mix_backward_triton(grad, perm, lam, boxes, cut_mask)

    @staticmethod
    def backward(ctx, gg):
        perm, lam, boxes, cut_mask = ctx.saved_tensors
        return forward_mix_of(_TritonOnCPU.apply, gg, perm, lam, boxes, cut_mask), None, None, None, None
