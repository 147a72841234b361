"""Host side of the Triton kernel: the op implementations for CUDA tensors
(also run on CPU tensors under ``TRITON_INTERPRET=1``).

Each implementation validates its arguments with the package's rules
(``_checks``), lays the tensors out as the kernel reads them and launches
:func:`~mixup_fused.triton.kernel.mix_images_targets_kernel` once, on the
tensor's device and current stream.
"""

from __future__ import annotations

import contextlib
import os

import torch
import triton

from .. import _checks
from .._layout import default_out_dtype, dense_rows, empty_out_like, is_channels_last
from .kernel import BLOCK, NUM_WARPS, TARGET_BLOCK, kernel_config, mix_images_targets_kernel

MAX_ROW = _checks.INT32_MAX - BLOCK  # offsets inside a row are int32


def interpreter_active() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _launch(x, out, src, lam, boxes, mean, std, target, y, *, num_classes, label_smoothing, inplace, backward):
    B = x.shape[0]
    if B == 0:
        return
    row_len = x[0].numel()
    if row_len > MAX_ROW:
        raise ValueError(
            f"mixup_fused: each sample of x must have fewer than {MAX_ROW} elements for the Triton kernel, "
            f"got {row_len} (the batch as a whole may be larger)"
        )
    cutmix = boxes is not None
    normalize = mean is not None
    C, H, W = (x.shape[1], x.shape[2], x.shape[3]) if cutmix or normalize else (1, 1, 1)
    soft = target is not None and target.dim() == 2
    x_stride = x.stride(0) if B > 1 else row_len
    out_stride = (out.stride(0) if B > 1 else row_len) if out is not None else x_stride
    cfg = kernel_config(
        x.dtype,
        out.dtype if out is not None else x.dtype,
        cutmix=cutmix,
        channels_last=is_channels_last(x),
        normalize=normalize,
        inplace=inplace,
        backward=backward,
    )
    image_blocks = triton.cdiv(row_len, BLOCK)
    target_blocks = triton.cdiv(num_classes, TARGET_BLOCK) if target is not None else 0
    blocks_per_row = image_blocks + target_blocks
    eps = float(label_smoothing)
    off_value = eps / num_classes if num_classes else 0.0
    on_value = 1.0 - eps + off_value
    # Unused pointer arguments get a tensor of the declared dtype, never read.
    ids = target if target is not None and not soft else src
    soft_rows = target if soft else y if y is not None else torch.empty(1, dtype=torch.float32, device=x.device)
    grid = (B * blocks_per_row,)
    guard = torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()
    with guard:
        mix_images_targets_kernel[grid](
            x,
            out if out is not None else x,
            src,
            lam,
            boxes if cutmix else src,
            mean if normalize else soft_rows,
            std if normalize else soft_rows,
            ids,
            soft_rows,
            y if y is not None else soft_rows,
            row_len,
            x_stride,
            out_stride,
            C,
            H,
            W,
            num_classes,
            int(soft),
            off_value,
            on_value,
            1.0 - eps,
            off_value,
            blocks_per_row,
            image_blocks,
            **{k: v for k, v in cfg.items() if k not in ("x", "out")},
            num_warps=NUM_WARPS,
            # No FMA contraction: the same roundings as the reference and the C++
            # kernel, so every backend gives the same bits for float32.
            enable_fp_fusion=False,
        )


def triton_mix(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out):
    """Out-of-place mix into ``out`` and a new ``[B, K]`` float32 target tensor.

    Inputs are already validated and laid out as the kernel reads them (rows
    ``x.stride(0)`` apart, dense inside; ``out`` shares ``x``'s layout;
    int64 perm, class ids and boxes; float64 lam)."""
    y = torch.empty((x.shape[0], num_classes), dtype=torch.float32, device=x.device)
    _launch(x, out, perm, lam, boxes, mean, std, target, y,
            num_classes=num_classes, label_smoothing=label_smoothing, inplace=False, backward=False)  # fmt: skip
    return out, y


def triton_mix_(x, target, perm, lam, boxes, num_classes, label_smoothing):
    """In-place mix of ``x`` (perm an involution, inputs laid out as for :func:`triton_mix`); returns the targets."""
    y = torch.empty((x.shape[0], num_classes), dtype=torch.float32, device=x.device)
    _launch(x, None, perm, lam, boxes, None, None, target, y,
            num_classes=num_classes, label_smoothing=label_smoothing, inplace=True, backward=False)  # fmt: skip
    return y


def triton_mix_backward(grad, inv_perm, lam, boxes, out):
    """Gradient of the image mix into ``out``: ``out[k] = lam[k] g[k] + (1 - lam[q]) g[q]``, ``q = inv_perm[k]``."""
    _launch(grad, out, inv_perm, lam, boxes, None, None, None, None,
            num_classes=0, label_smoothing=0.0, inplace=False, backward=True)  # fmt: skip
    return out


# ----------------------------------------------------------------------------
# The op implementations: validate, lay out, launch
# ----------------------------------------------------------------------------


def _rows(perm, lam, boxes):
    """perm, lam and boxes as the kernel reads them: int64, float64 (each
    weight is rounded once from it, in the kernel), contiguous."""
    perm = perm.to(torch.int64).contiguous()
    lam = lam.to(torch.float64).contiguous()
    boxes = boxes.to(torch.int64).contiguous() if boxes is not None else None
    return perm, lam, boxes


def _targets(target):
    # Soft rows reach the kernel as contiguous float32 (a tiny [B, K] copy at most).
    if target.is_floating_point():
        return target.to(torch.float32).contiguous()
    return target.to(torch.int64).contiguous()


def mix_triton(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype, check):
    """``mixup_fused::mix``: mixed images (new tensor) and mixed targets."""
    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype)
    if check:
        _checks.check_values(x, target, perm, lam, boxes, num_classes, mean, std)
    odt = default_out_dtype(x, out_dtype)
    perm, lam, boxes = _rows(perm, lam, boxes)
    if mean is not None:
        mean = mean.to(torch.float32).contiguous()
        std = std.to(torch.float32).contiguous()
    x = dense_rows(x)
    return triton_mix(x, _targets(target), perm, lam, boxes, num_classes, label_smoothing, mean, std,
                      empty_out_like(x, odt))  # fmt: skip


def mix_inplace_triton(x, target, perm, lam, boxes, num_classes, label_smoothing, check):
    """``mixup_fused::mix_``: images mixed into ``x`` (perm an involution); returns the targets."""
    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, inplace=True)
    if check:
        _checks.check_values(x, target, perm, lam, boxes, num_classes, inplace=True)
    perm, lam, boxes = _rows(perm, lam, boxes)
    xd = dense_rows(x)
    y = triton_mix_(xd, _targets(target), perm, lam, boxes, num_classes, label_smoothing)
    if xd is not x:
        x.copy_(xd)
    return y


def mix_backward_triton(grad, perm, lam, boxes):
    """``mixup_fused::mix_backward``: the gradient of the image mix with respect to ``x``."""
    perm, lam, boxes = _rows(perm, lam, boxes)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    grad = dense_rows(grad)
    return triton_mix_backward(grad, inv, lam, boxes, empty_out_like(grad, grad.dtype))
