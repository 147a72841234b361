"""Host side of the Triton kernel: the op implementations for CUDA tensors
(also run on CPU tensors under ``TRITON_INTERPRET=1``).

Each implementation validates its arguments with the package's rules
(``_checks``), lays the tensors out as the kernel reads them and launches
:func:`~mixup_fused.triton.kernel.mix_images_targets_kernel` once, on the
tensor's device and current stream.
"""

from __future__ import annotations

import contextlib
import math
import os

import torch
import triton

from .. import _checks
from .._layout import default_out_dtype, dense_rows, empty_out_like, is_channels_last
from .kernel import (
    BLOCK,
    CUT_BOX,
    CUT_MASK,
    CUT_NONE,
    MAP_BLOCK,
    NUM_WARPS,
    TARGET_BLOCK,
    kernel_config,
    mix_images_targets_kernel,
)

MAX_ROW = _checks.INT32_MAX - max(BLOCK, MAP_BLOCK)  # offsets inside a row are int32


def interpreter_active() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _spatial(x, positions: bool):
    """``(C, S, H, W)`` of ``x [B, C, *spatial]`` as the kernel reads positions
    (``S`` positions per channel; 1-D: H = 1; 3-D: D = S / (H * W)), or a
    neutral ``(1, row_len, 1, 1)`` where no position is needed."""
    if not positions:
        return 1, (x[0].numel() if x.shape[0] else 0), 1, 1
    spatial = tuple(x.shape[2:])
    H = spatial[-2] if len(spatial) >= 2 else 1
    return x.shape[1], math.prod(spatial), H, spatial[-1]


_PLACEHOLDERS: dict = {}


def _placeholder(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A one-element tensor for a pointer argument the kernel never reads,
    made once per device and dtype (an allocation a call costs host time).
    Inside a CUDA graph capture a new one is made and not kept: kept, it
    would live in the graph's private memory pool."""
    key = (device, dtype)
    t = _PLACEHOLDERS.get(key)
    if t is None:
        t = torch.empty(1, dtype=dtype, device=device)
        if not (device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
            _PLACEHOLDERS[key] = t
    return t


def _launch(x, out, src, lam, boxes, cut_mask, maps, maps_out, mean, std, target, y, *, num_classes,
            label_smoothing, inplace, backward):  # fmt: skip
    """One launch. ``boxes`` int64 ``[B, 2n]``; ``cut_mask`` uint8 ``[B, S]``
    and ``maps`` / ``maps_out`` ``[B, S]`` label maps (any integer dtype),
    all contiguous."""
    B = x.shape[0]
    if B == 0:
        return
    row_len = x[0].numel()
    if row_len > MAX_ROW:
        raise ValueError(
            f"mixup_fused: each sample of x must have fewer than {MAX_ROW} elements for the Triton kernel, "
            f"got {row_len} (the batch as a whole may be larger)"
        )
    cut = CUT_BOX if boxes is not None else CUT_MASK if cut_mask is not None else CUT_NONE
    normalize = mean is not None
    C, S, H, W = _spatial(x, cut != CUT_NONE or normalize or maps is not None)
    map_blocks = 0
    if maps is not None:
        # Labels move as bytes: one configuration for every label dtype.
        map_shift = maps.element_size().bit_length() - 1
        if S << map_shift > MAX_ROW:
            raise ValueError(
                f"mixup_fused: each sample of masks must have fewer than {MAX_ROW} bytes for the Triton kernel, "
                f"got {S << map_shift}"
            )
        # In place, plain mixup moves no label.
        if not (inplace and cut == CUT_NONE):
            map_blocks = triton.cdiv(S, MAP_BLOCK)
        maps = maps.view(torch.uint8)
        maps_out = maps_out.view(torch.uint8) if maps_out is not None else maps
    else:
        map_shift = 0
    soft = target is not None and target.dim() == 2
    x_stride = x.stride(0) if B > 1 else row_len
    out_stride = (out.stride(0) if B > 1 else row_len) if out is not None else x_stride
    cfg = kernel_config(
        x.dtype,
        out.dtype if out is not None else x.dtype,
        cut=cut,
        channels_last=is_channels_last(x),
        normalize=normalize,
        inplace=inplace,
        backward=backward,
    )
    image_blocks = triton.cdiv(row_len, BLOCK)
    target_blocks = triton.cdiv(num_classes, TARGET_BLOCK) if target is not None else 0
    blocks_per_row = image_blocks + map_blocks + target_blocks
    if blocks_per_row == 0:
        return
    eps = float(label_smoothing)
    off_value = eps / num_classes if num_classes else 0.0
    on_value = 1.0 - eps + off_value
    # Unused pointer arguments get a tensor of the declared dtype, never read.
    ids = target if target is not None and not soft else src
    soft_rows = target if soft else y if y is not None else _placeholder(x.device, torch.float32)
    no_bytes = _placeholder(x.device, torch.uint8) if cut_mask is None or maps is None else None
    grid = (B * blocks_per_row,)
    # (A device guard costs a few microseconds a call: only where x is not on the current device.)
    other_device = x.is_cuda and x.get_device() != torch.cuda.current_device()
    guard = torch.cuda.device(x.device) if other_device else contextlib.nullcontext()
    with guard:
        mix_images_targets_kernel[grid](
            x,
            out if out is not None else x,
            src,
            lam,
            boxes if boxes is not None else src,
            cut_mask if cut_mask is not None else no_bytes,
            maps if maps is not None else no_bytes,
            maps_out if maps is not None else no_bytes,
            mean if normalize else soft_rows,
            std if normalize else soft_rows,
            ids,
            soft_rows,
            y if y is not None else soft_rows,
            row_len,
            x_stride,
            out_stride,
            C,
            S,
            H,
            W,
            boxes.shape[1] // 2 if boxes is not None else 1,
            map_shift,
            num_classes,
            int(soft),
            off_value,
            on_value,
            1.0 - eps,
            off_value,
            blocks_per_row,
            image_blocks,
            map_blocks,
            **{k: v for k, v in cfg.items() if k not in ("x", "out")},
            num_warps=NUM_WARPS,
            # No FMA contraction: the same roundings as the reference and the C++
            # kernel, so every backend gives the same bits for float32.
            enable_fp_fusion=False,
        )


def triton_mix(x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, mean, std, out,
               masks_out=None):  # fmt: skip
    """Out-of-place mix into ``out`` (and label maps ``masks`` into
    ``masks_out``) and a new ``[B, K]`` float32 target tensor.

    Inputs are already validated and laid out as the kernel reads them (rows
    ``x.stride(0)`` apart, dense inside; ``out`` shares ``x``'s layout;
    int64 perm, class ids and boxes; float64 lam; uint8 ``cut_mask`` and
    label maps contiguous, ``masks_out`` like ``masks``). Returns ``(out, y,
    masks_out)``."""
    y = torch.empty((x.shape[0], num_classes), dtype=torch.float32, device=x.device)
    _launch(x, out, perm, lam, boxes, cut_mask, masks, masks_out, mean, std, target, y,
            num_classes=num_classes, label_smoothing=label_smoothing, inplace=False, backward=False)  # fmt: skip
    return out, y, masks_out


def triton_mix_(x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing):
    """In-place mix of ``x`` and the label maps ``masks`` (perm an involution,
    inputs laid out as for :func:`triton_mix`); returns the targets."""
    y = torch.empty((x.shape[0], num_classes), dtype=torch.float32, device=x.device)
    _launch(x, None, perm, lam, boxes, cut_mask, masks, None, None, None, target, y,
            num_classes=num_classes, label_smoothing=label_smoothing, inplace=True, backward=False)  # fmt: skip
    return y


def triton_mix_backward(grad, inv_perm, lam, boxes, cut_mask, out):
    """Gradient of the image mix into ``out``: ``out[k] = lam[k] g[k] + (1 - lam[q]) g[q]``, ``q = inv_perm[k]``."""
    _launch(grad, out, inv_perm, lam, boxes, cut_mask, None, None, None, None, None, None,
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


def _cut_bytes(cut_mask):
    """A cut mask as the kernel reads it: contiguous uint8 (bool viewed as such)."""
    if cut_mask is None:
        return None
    cut_mask = cut_mask.contiguous()
    return cut_mask.view(torch.uint8) if cut_mask.dtype == torch.bool else cut_mask


def _targets(target):
    # Soft rows reach the kernel as contiguous float32 (a tiny [B, K] copy at most).
    if target.is_floating_point():
        return target.to(torch.float32).contiguous()
    return target.to(torch.int64).contiguous()


def mix_triton(x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, mean, std, out_dtype,
               check):  # fmt: skip
    """``mixup_fused::mix``: mixed images (new tensor), mixed targets and mixed
    label maps (a new contiguous tensor like ``masks``; an empty int64 one
    without ``masks``)."""
    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out_dtype,
                       cut_mask=cut_mask, masks=masks)  # fmt: skip
    if check:
        _checks.check_values(x, target, perm, lam, boxes, num_classes, mean, std)
    odt = default_out_dtype(x, out_dtype)
    perm, lam, boxes = _rows(perm, lam, boxes)
    if mean is not None:
        mean = mean.to(torch.float32).contiguous()
        std = std.to(torch.float32).contiguous()
    x = dense_rows(x)
    if masks is not None:
        masks = masks.contiguous()
        masks_out = torch.empty(masks.shape, dtype=masks.dtype, device=masks.device)
    else:
        masks_out = torch.empty(0, dtype=torch.int64, device=x.device)
    return triton_mix(x, _targets(target), perm, lam, boxes, _cut_bytes(cut_mask), masks, num_classes,
                      label_smoothing, mean, std, empty_out_like(x, odt), masks_out)  # fmt: skip


def mix_inplace_triton(x, target, perm, lam, boxes, cut_mask, masks, num_classes, label_smoothing, check):
    """``mixup_fused::mix_``: images mixed into ``x`` and label maps into
    ``masks`` (perm an involution); returns the targets."""
    _checks.check_args(x, target, perm, lam, boxes, num_classes, label_smoothing, inplace=True,
                       cut_mask=cut_mask, masks=masks)  # fmt: skip
    if check:
        _checks.check_values(x, target, perm, lam, boxes, num_classes, inplace=True)
    perm, lam, boxes = _rows(perm, lam, boxes)
    xd = dense_rows(x)
    md = masks.contiguous() if masks is not None else None
    y = triton_mix_(xd, _targets(target), perm, lam, boxes, _cut_bytes(cut_mask), md, num_classes, label_smoothing)
    if xd is not x:
        x.copy_(xd)
    if md is not masks:
        masks.copy_(md)
    return y


def mix_backward_triton(grad, perm, lam, boxes, cut_mask):
    """``mixup_fused::mix_backward``: the gradient of the image mix with respect to ``x``."""
    perm, lam, boxes = _rows(perm, lam, boxes)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    grad = dense_rows(grad)
    return triton_mix_backward(grad, inv, lam, boxes, _cut_bytes(cut_mask), empty_out_like(grad, grad.dtype))
