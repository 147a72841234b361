"""The registered ops ``mixup_fused::mix``, ``mix_`` and ``mix_backward``.

The schemas and the CPU kernels live in C++ (``csrc/``, loaded as
``mixup_fused._C``). This module registers the CUDA kernels onto the Triton
launchers, the fake kernels used by torch.compile, and the autograd formula,
and it chooses a backend for the public API.

Backends: ``triton`` (CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``),
``cpp`` (CPU tensors), ``reference`` (pure PyTorch). ``auto`` picks by device;
the ``MIXUP_FUSED_BACKEND`` environment variable overrides ``auto``.
"""

from __future__ import annotations

import os
import warnings

import torch

from . import _checks
from .reference import kept_in_place, mix_images_reference, mix_targets_reference

try:
    from . import _C  # (registers the schemas and the CPU kernels)

    HAS_CPP = True
    CPP_IMPORT_ERROR: Exception | None = None
except ImportError as err:  # pragma: no cover - exercised only without a build
    HAS_CPP = False
    CPP_IMPORT_ERROR = err

# The C helper, or None: without the extension, or with a stale build of it that predates the helper.
_c_backend_override = getattr(_C, "backend_override", None) if HAS_CPP else None


def _backend_override() -> str | None:
    """``MIXUP_FUSED_BACKEND``: from the C environment when the extension is
    built (os.environ writes through to it; ``os.environ.get`` of an unset
    variable raises and catches two KeyErrors, a visible part of a cold call),
    from ``os.environ`` while torch.compile traces (it cannot trace the C call)."""
    if _c_backend_override is None or torch.compiler.is_compiling():
        return os.environ.get("MIXUP_FUSED_BACKEND")
    return _c_backend_override()


# The schemas, as csrc/mixup_fused.cpp declares them. Without the C++ build
# they are defined here so that the CUDA (Triton) kernels still work.
SCHEMAS = {
    "mix": (
        "mix(Tensor x, Tensor target, Tensor perm, Tensor lam, Tensor? boxes, int num_classes, "
        "float label_smoothing, Tensor? mean, Tensor? std, ScalarType? out_dtype, bool check) -> (Tensor, Tensor)"
    ),
    "mix_": (
        "mix_(Tensor(a!) x, Tensor target, Tensor perm, Tensor lam, Tensor? boxes, int num_classes, "
        "float label_smoothing, bool check) -> Tensor"
    ),
    "mix_backward": "mix_backward(Tensor grad, Tensor perm, Tensor lam, Tensor? boxes) -> Tensor",
}

if not HAS_CPP:  # pragma: no cover
    _lib = torch.library.Library("mixup_fused", "DEF")
    for _schema in SCHEMAS.values():
        _lib.define(_schema)

BACKENDS = ("auto", "triton", "cpp", "reference")
_warned_fallback = False


# ----------------------------------------------------------------------------
# Layout helpers shared by the Triton path and the fake kernels
# ----------------------------------------------------------------------------


def is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def dense_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows as dense runs in contiguous or channels_last order (else a contiguous copy)."""
    if x.is_contiguous() or is_channels_last(x):
        return x
    return x.contiguous()


def empty_out_like(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The output of a mix: ``x``'s shape, channels_last if ``x`` is, else contiguous."""
    fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format
    return torch.empty(x.shape, dtype=dtype, device=x.device, memory_format=fmt)


def default_out_dtype(x: torch.Tensor, out_dtype):
    if out_dtype is not None:
        return out_dtype
    return torch.float32 if x.dtype == torch.uint8 else x.dtype


def _weights_dtype(*dtypes) -> torch.dtype:
    return torch.float64 if torch.float64 in dtypes else torch.float32


# ----------------------------------------------------------------------------
# Triton implementations (registered for CUDA; also called on CPU tensors
# under the interpreter)
# ----------------------------------------------------------------------------


def _prepare(x, perm, lam, boxes, mean, std, out_dtype):
    wdt = _weights_dtype(x.dtype, out_dtype)
    perm = perm.to(torch.int64).contiguous()
    lam = lam.to(wdt).contiguous()
    boxes = boxes.to(torch.int64).contiguous() if boxes is not None else None
    mean = mean.to(torch.float32).contiguous() if mean is not None else None
    std = std.to(torch.float32).contiguous() if std is not None else None
    return perm, lam, boxes, mean, std


def _prepare_target(target):
    # Soft rows reach the kernel as contiguous float32 (a tiny [B, K] copy at most).
    if target.is_floating_point():
        return target.to(torch.float32).contiguous()
    return target.to(torch.int64).contiguous()


def mix_triton(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype, check):
    from ._triton_mix import triton_mix

    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype)
    if check:
        _checks.check_values(x, target, perm, lam, boxes, num_classes, mean, std)
    odt = default_out_dtype(x, out_dtype)
    perm, lam, boxes, mean, std = _prepare(x, perm, lam, boxes, mean, std, odt)
    x = dense_rows(x)
    out = empty_out_like(x, odt)
    return triton_mix(x, _prepare_target(target), perm, lam, boxes, num_classes, label_smoothing, mean, std, out)


def mix_inplace_triton(x, target, perm, lam, boxes, num_classes, label_smoothing, check):
    from ._triton_mix import triton_mix_

    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, inplace=True)
    if check:
        _checks.check_values(x, target, perm, lam, boxes, num_classes, inplace=True)
    perm, lam, boxes, _, _ = _prepare(x, perm, lam, boxes, None, None, x.dtype)
    xd = dense_rows(x)
    y = triton_mix_(xd, _prepare_target(target), perm, lam, boxes, num_classes, label_smoothing)
    if xd is not x:
        x.copy_(xd)
    return y


def mix_backward_triton(grad, perm, lam, boxes):
    from ._triton_mix import triton_mix_backward

    perm, lam, boxes, _, _ = _prepare(grad, perm, lam, boxes, None, None, grad.dtype)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    grad = dense_rows(grad)
    return triton_mix_backward(grad, inv, lam, boxes, empty_out_like(grad, grad.dtype))


torch.library.register_kernel("mixup_fused::mix", "cuda", mix_triton)
torch.library.register_kernel("mixup_fused::mix_", "cuda", mix_inplace_triton)
torch.library.register_kernel("mixup_fused::mix_backward", "cuda", mix_backward_triton)


# ----------------------------------------------------------------------------
# Fake kernels (torch.compile, meta tensors)
# ----------------------------------------------------------------------------


@torch.library.register_fake("mixup_fused::mix")
def _mix_fake(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype, check):
    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype)
    out = empty_out_like(dense_rows(x), default_out_dtype(x, out_dtype))
    return out, x.new_empty((x.shape[0], num_classes), dtype=torch.float32)


@torch.library.register_fake("mixup_fused::mix_")
def _mix_inplace_fake(x, target, perm, lam, boxes, num_classes, label_smoothing, check):
    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, inplace=True)
    return x.new_empty((x.shape[0], num_classes), dtype=torch.float32)


@torch.library.register_fake("mixup_fused::mix_backward")
def _mix_backward_fake(grad, perm, lam, boxes):
    return empty_out_like(dense_rows(grad), grad.dtype)


# ----------------------------------------------------------------------------
# Autograd: the gradient of a mix is a mix of the incoming gradient through
# the inverse permutation. Targets carry no gradient.
# ----------------------------------------------------------------------------


def _mix_setup_context(ctx, inputs, output):
    x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype, check = inputs
    ctx.x_dtype = x.dtype
    ctx.save_for_backward(perm, lam, boxes, std)
    ctx.mark_non_differentiable(output[1])


def _grad_x(mix_backward_fn, grad_x, perm, lam, boxes, std, x_dtype):
    """``dL/dx`` from ``dL/dout``: the mix backward, then (when normalising)
    the division by std, in float32 so that half-precision grads round once."""
    if std is None:
        return mix_backward_fn(grad_x, perm, lam, boxes).to(x_dtype)
    wide = torch.float64 if torch.float64 in (grad_x.dtype, x_dtype) else torch.float32
    grad = mix_backward_fn(grad_x.to(wide), perm, lam, boxes)
    return (grad / std.to(wide).view(1, -1, 1, 1)).to(x_dtype)


def _mix_backward(ctx, grad_x, grad_y):
    perm, lam, boxes, std = ctx.saved_tensors
    grad = None
    if ctx.needs_input_grad[0] and grad_x is not None:
        grad = _grad_x(torch.ops.mixup_fused.mix_backward, grad_x, perm, lam, boxes, std, ctx.x_dtype)
    return grad, None, None, None, None, None, None, None, None, None, None


def _mix_images(x, perm, lam, boxes):
    """The forward image mix alone (the derivative of ``mix_backward``)."""
    dummy = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
    return torch.ops.mixup_fused.mix(x, dummy, perm, lam, boxes, 1, 0.0, None, None, None, False)[0]


def _mix_backward_setup_context(ctx, inputs, output):
    grad, perm, lam, boxes = inputs
    ctx.save_for_backward(perm, lam, boxes)


def _mix_backward_backward(ctx, gg):
    # mix_backward is linear in its input: g -> A^T g, so its derivative is A,
    # the forward mix. This makes double (and higher) backward exact.
    perm, lam, boxes = ctx.saved_tensors
    grad = _mix_images(gg, perm, lam, boxes) if ctx.needs_input_grad[0] else None
    return grad, None, None, None


torch.library.register_autograd(
    "mixup_fused::mix_backward", _mix_backward_backward, setup_context=_mix_backward_setup_context
)
torch.library.register_autograd("mixup_fused::mix", _mix_backward, setup_context=_mix_setup_context)


# ----------------------------------------------------------------------------
# Backend choice and the non-registered paths (reference, Triton on CPU)
# ----------------------------------------------------------------------------


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    # Called on every mix: it reads x.is_cpu / x.is_cuda rather than build x.device.
    global _warned_fallback
    if backend not in BACKENDS:
        raise ValueError(f"mixup_fused: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = _backend_override() or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"mixup_fused: MIXUP_FUSED_BACKEND must be one of {BACKENDS}, got {backend!r}")
    is_cpu = x.is_cpu
    if backend in ("auto", "reference") and not (is_cpu or x.is_cuda):
        raise ValueError(f"mixup_fused: x is on {x.device}; supported devices are cpu and cuda")
    if backend == "auto":
        if not is_cpu:
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
        if not is_cpu:
            raise ValueError(f"mixup_fused: backend='cpp' runs on CPU tensors, but x is on {x.device}")
    if backend == "triton" and not x.is_cuda:
        from ._triton_mix import interpreter_active

        if not (is_cpu and interpreter_active()):
            raise ValueError(
                f"mixup_fused: backend='triton' needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1 "
                f"set before import), but x is on {x.device}"
            )
    return backend


class _TritonOnCPU(torch.autograd.Function):
    """The Triton launchers on CPU tensors (interpreter), with the same autograd."""

    @staticmethod
    def forward(ctx, x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype, check):
        out, y = mix_triton(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype, check)
        ctx.x_dtype = x.dtype
        ctx.save_for_backward(perm, lam, boxes, std)
        ctx.mark_non_differentiable(y)
        return out, y

    @staticmethod
    def backward(ctx, grad_x, grad_y):
        perm, lam, boxes, std = ctx.saved_tensors
        grad = _grad_x(_TritonBackwardOnCPU.apply, grad_x, perm, lam, boxes, std, ctx.x_dtype)
        return grad, None, None, None, None, None, None, None, None, None, None


class _TritonBackwardOnCPU(torch.autograd.Function):
    """``mix_backward`` on CPU tensors under the interpreter; differentiable
    (its derivative is the forward mix), like the registered op."""

    @staticmethod
    def forward(ctx, grad, perm, lam, boxes):
        ctx.save_for_backward(perm, lam, boxes)
        return mix_backward_triton(grad, perm, lam, boxes)

    @staticmethod
    def backward(ctx, gg):
        perm, lam, boxes = ctx.saved_tensors
        dummy = torch.zeros(gg.shape[0], dtype=torch.int64, device=gg.device)
        out, _ = _TritonOnCPU.apply(gg, dummy, perm, lam, boxes, 1, 0.0, None, None, None, False)
        return out, None, None, None


def mix_reference_checked(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype, check):
    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype)
    if check:
        _checks.check_values(x, target, perm, lam, boxes, num_classes, mean, std)
    odt = default_out_dtype(x, out_dtype)
    out = mix_images_reference(x, perm, lam, boxes, mean, std, odt)
    out = out.contiguous(memory_format=torch.channels_last if is_channels_last(x) else torch.contiguous_format)
    return out, mix_targets_reference(target, perm, lam, num_classes, label_smoothing)


# The overloads themselves: calling them skips the packet's overload lookup
# (about 30 us per call when the caches are cold).
_MIX = torch.ops.mixup_fused.mix.default
_MIX_ = torch.ops.mixup_fused.mix_.default


def run_mix(backend, x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype, check):
    args = (x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype, check)
    if backend == "reference":
        return mix_reference_checked(*args)
    if backend == "triton" and not x.is_cuda:
        return _TritonOnCPU.apply(*args)
    return _MIX(*args)


def run_mix_(backend, x, target, perm, lam, boxes, num_classes, label_smoothing, check):
    if backend == "reference":
        _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, inplace=True)
        if check:
            _checks.check_values(x, target, perm, lam, boxes, num_classes, inplace=True)
        out = mix_images_reference(x, perm, lam, boxes)
        keep = kept_in_place(perm, lam, boxes, f64=x.dtype == torch.float64)
        x.copy_(torch.where(keep.view((-1,) + (1,) * (x.dim() - 1)), x, out))
        return mix_targets_reference(target, perm, lam, num_classes, label_smoothing)
    if backend == "triton" and not x.is_cuda:
        return mix_inplace_triton(x, target, perm, lam, boxes, num_classes, label_smoothing, check)
    return _MIX_(x, target, perm, lam, boxes, num_classes, label_smoothing, check)
