"""The Triton kernel of the fused mix and the configurations it is compiled in.

One kernel, ``mix_images_targets_kernel``, serves every mode. Its 1-D grid has
``B * (image_blocks + target_blocks)`` programs: program ``(i, blk)`` writes
block ``blk`` of output row ``i`` -- an image block while ``blk <
image_blocks``, otherwise a block of the ``[B, K]`` target row -- so a single
launch writes both outputs.

Rows are addressed as flat, dense runs of ``row_len`` elements (contiguous or
channels_last); the row start is computed in int64, so ``B * row_len`` may pass
2**31 (a single row must stay below 2**31 elements). Triton's own
specialisation sees 16-byte aligned pointers and lengths divisible by 16,
which lets it emit 128-bit loads and stores on such rows.

The kernel holds no Python logic: :func:`kernel_config` picks its flags for
one call (the launcher and the ahead-of-time tests both go through it), and
:func:`kernel_configs` lists every configuration the launcher can pick.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._checks import FLOAT_DTYPES

BLOCK = 2048
NUM_WARPS = 4
TARGET_BLOCK = 1024


@triton.jit
def _normalize(v, c, mask, mean_ptr, std_ptr, NORMALIZE: tl.constexpr, F64: tl.constexpr):
    if NORMALIZE:
        mean = tl.load(mean_ptr + c, mask=mask, other=0.0)
        std = tl.load(std_ptr + c, mask=mask, other=1.0)
        if F64:
            v = (v - mean) / std  # float64 division is IEEE-rounded
        else:
            v = tl.math.div_rn(v - mean, std)  # not the approximate float32 '/'
    return v


@triton.jit
def _box(box_ptr, r, h, w):
    """(inside row r's box, row r is mixed with lam): a box of all -1 (NO_BOX)
    marks a row that is mixed rather than cut; nothing is inside it."""
    y0 = tl.load(box_ptr + 4 * r)
    y1 = tl.load(box_ptr + 4 * r + 1)
    x0 = tl.load(box_ptr + 4 * r + 2)
    x1 = tl.load(box_ptr + 4 * r + 3)
    inside = (h >= y0) & (h < y1) & (w >= x0) & (w < x1)
    # As a block-shaped mask (all four coordinates equal -1).
    is_mix = (h * 0 + ((y0 + 1) | (y1 + 1) | (x0 + 1) | (x1 + 1))) == 0
    return inside, is_mix


@triton.jit
def mix_images_targets_kernel(
    x_ptr,
    out_ptr,
    src_ptr,
    lam_ptr,
    box_ptr,
    mean_ptr,
    std_ptr,
    ids_ptr,
    soft_ptr,
    y_ptr,
    row_len,
    x_stride,
    out_stride,
    C,
    H,
    W,
    num_classes,
    soft_targets,
    off_value,
    on_value,
    keep,
    spread,
    blocks_per_row,
    image_blocks,
    BLOCK: tl.constexpr,
    TBLOCK: tl.constexpr,
    CUTMIX: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    NORMALIZE: tl.constexpr,
    INPLACE: tl.constexpr,
    BACKWARD: tl.constexpr,
    F64: tl.constexpr,
):
    """Mix rows of ``x`` and (optionally) build mixed targets in one launch.

    Forward:  out[i] = lam[i] * x[i] + (1 - lam[i]) * x[src[i]]   (mixup)
              out[i] = x[src[i]] inside box[i], x[i] outside     (CutMix)
    Backward (src = inverse permutation q):
              out[k] = lam[k] * g[k] + (1 - lam[q]) * g[q]        (mixup)
              out[k] = g[k] outside box[k] + g[q] inside box[q]  (CutMix)
    INPLACE (src an involution): program i <= src[i] reads rows i and src[i]
    once and writes both; programs with i > src[i] only write targets.
    Targets (programs past the image blocks): class ids from ``ids_ptr``, or
    float32 soft rows from ``soft_ptr`` when ``soft_targets`` (smoothed as
    ``t * keep + spread``); the backward has no target blocks.
    """
    if F64:
        acc_ty = tl.float64
    else:
        acc_ty = tl.float32
    pid = tl.program_id(0)
    i = pid // blocks_per_row
    blk = pid % blocks_per_row
    p = tl.load(src_ptr + i)
    if blk < image_blocks:
        offs = blk * BLOCK + tl.arange(0, BLOCK)
        mask = offs < row_len
        # Position inside the image, needed for CutMix boxes and per-channel
        # normalisation.
        c = offs
        h = offs
        w = offs
        if CUTMIX or NORMALIZE:
            if CHANNELS_LAST:
                c = offs % C
                pix = offs // C
                w = pix % W
                h = pix // W
            else:
                w = offs % W
                hw = offs // W
                h = hw % H
                c = hw // H
        xi_ptr = x_ptr + i.to(tl.int64) * x_stride
        xp_ptr = x_ptr + p.to(tl.int64) * x_stride
        # lam is float64: its weight and the partner's (1 - lam) are each rounded once from it.
        lam64_i = tl.load(lam_ptr + i)
        lam_i = lam64_i.to(acc_ty)
        if INPLACE:
            # Pair (i, p) is handled by the program with the smaller index.
            # (Row comparisons are made block-shaped: the interpreter cannot
            # mask with a scalar comparison.)
            i_blk = offs * 0 + i
            mask = mask & (i_blk <= p)
            other_row = i_blk != p
            lam64_p = tl.load(lam_ptr + p)
            lam_p = lam64_p.to(acc_ty)
            rest_i = (1.0 - lam64_i).to(acc_ty)
            rest_p = (1.0 - lam64_p).to(acc_ty)
            # A row blended with its partner's weight exactly 0 keeps its
            # values bit for bit, as timm skips lam == 1 (1 * a + 0 * b is not
            # a when b is inf or NaN, or a is -0.0): it is not written.
            one_i = (offs * 0 + rest_i) == 0.0
            one_p = (offs * 0 + rest_p) == 0.0
            if CUTMIX:
                in_i, mix_i = _box(box_ptr, i, h, w)
                in_p, mix_p = _box(box_ptr, p, h, w)
                keep_i = mix_i & one_i
                keep_p = mix_p & one_p
                mask = mask & ~(keep_i & keep_p)
                # Only what moves is read: box pixels, or whole rows mixed with lam.
                a = tl.load(xi_ptr + offs, mask=mask & (in_p | mix_i | mix_p), other=0).to(acc_ty)
                b = tl.load(xp_ptr + offs, mask=mask & (in_i | mix_i | mix_p), other=0).to(acc_ty)
                vi = tl.where(mix_i, lam_i * a + rest_i * b, b)
                vp = tl.where(mix_p, lam_p * b + rest_p * a, a)
                tl.store(xi_ptr + offs, vi.to(x_ptr.dtype.element_ty), mask=mask & (in_i | mix_i) & ~keep_i)
                tl.store(xp_ptr + offs, vp.to(x_ptr.dtype.element_ty), mask=mask & (in_p | mix_p) & other_row & ~keep_p)
            else:
                mask = mask & ~(one_i & one_p)
                a = tl.load(xi_ptr + offs, mask=mask).to(acc_ty)
                b = tl.load(xp_ptr + offs, mask=mask).to(acc_ty)
                vi = lam_i * a + rest_i * b
                vp = lam_p * b + rest_p * a
                tl.store(xi_ptr + offs, vi.to(x_ptr.dtype.element_ty), mask=mask & ~one_i)
                tl.store(xp_ptr + offs, vp.to(x_ptr.dtype.element_ty), mask=mask & other_row & ~one_p)
        else:
            out_row = out_ptr + i.to(tl.int64) * out_stride
            if BACKWARD:
                wi = p
            else:
                wi = i
            rest_w = (1.0 - tl.load(lam_ptr + wi)).to(acc_ty)
            if CUTMIX:
                in_self, mix_self = _box(box_ptr, i, h, w)
                if BACKWARD:
                    in_part, mix_part = _box(box_ptr, wi, h, w)
                else:
                    in_part = in_self
                    mix_part = mix_self
                a = tl.load(xi_ptr + offs, mask=mask & (mix_self | ~in_self), other=0).to(acc_ty)
                b = tl.load(xp_ptr + offs, mask=mask & (mix_part | in_part), other=0).to(acc_ty)
                a = _normalize(a, c, mask, mean_ptr, std_ptr, NORMALIZE, F64)
                b = _normalize(b, c, mask, mean_ptr, std_ptr, NORMALIZE, F64)
                if BACKWARD:
                    # Own term plus partner term; both may contribute where boxes overlap.
                    own = tl.where(mix_self, lam_i * a, tl.where(in_self, 0.0, a))
                    other = tl.where(mix_part, rest_w * b, tl.where(in_part, b, 0.0))
                    v = own + other
                else:
                    v = tl.where(mix_self, lam_i * a + rest_w * b, tl.where(in_self, b, a))
            else:
                a = tl.load(xi_ptr + offs, mask=mask, other=0).to(acc_ty)
                b = tl.load(xp_ptr + offs, mask=mask, other=0).to(acc_ty)
                a = _normalize(a, c, mask, mean_ptr, std_ptr, NORMALIZE, F64)
                b = _normalize(b, c, mask, mean_ptr, std_ptr, NORMALIZE, F64)
                v = lam_i * a + rest_w * b
            tl.store(out_row + offs, v.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        k = (blk - image_blocks) * TBLOCK + tl.arange(0, TBLOCK)
        kmask = k < num_classes
        lam64_t = tl.load(lam_ptr + i)
        lam_t = lam64_t.to(tl.float32)
        rest_t = (1.0 - lam64_t).to(tl.float32)
        if soft_targets != 0:
            ya = tl.load(soft_ptr + i.to(tl.int64) * num_classes + k, mask=kmask, other=0)
            yb = tl.load(soft_ptr + p.to(tl.int64) * num_classes + k, mask=kmask, other=0)
            ya = ya * keep + spread
            yb = yb * keep + spread
        else:
            ti = tl.load(ids_ptr + i)
            tp = tl.load(ids_ptr + p)
            ya = tl.where(k == ti, on_value, off_value)
            yb = tl.where(k == tp, on_value, off_value)
        y = ya * lam_t + yb * rest_t
        tl.store(y_ptr + i.to(tl.int64) * num_classes + k, y, mask=kmask)


def kernel_config(x_dtype, out_dtype, *, cutmix, channels_last, normalize, inplace, backward) -> dict:
    """The kernel's dtypes and constexpr flags for one call. The launcher and
    :func:`kernel_configs` both go through here, so the ahead-of-time tests
    compile exactly what the launcher can pick."""
    return dict(
        x=x_dtype,
        out=out_dtype,
        BLOCK=BLOCK,
        TBLOCK=TARGET_BLOCK,
        CUTMIX=bool(cutmix),
        # The layout only matters where positions are computed.
        CHANNELS_LAST=bool(channels_last and (cutmix or normalize)),
        NORMALIZE=bool(normalize),
        INPLACE=bool(inplace),
        BACKWARD=bool(backward),
        F64=torch.float64 in (x_dtype, out_dtype),
    )


def kernel_configs():
    """Every configuration the launchers can pick, via :func:`kernel_config`.

    Out of place: any float ``x`` to any float output, with or without
    normalisation, and uint8 ``x`` (normalised) to any float output; CutMix
    or not; contiguous or channels_last. In place and backward: one dtype.
    Class-id vs soft targets is a run-time argument, not a configuration."""
    seen = []
    layouts = [(False, False), (True, False), (True, True)]  # (cutmix, channels_last)
    for x_dtype in FLOAT_DTYPES + (torch.uint8,):
        for out_dtype in FLOAT_DTYPES:
            for normalize in (False, True):
                if x_dtype == torch.uint8 and not normalize:
                    continue
                for cutmix, cl in layouts + ([(False, True)] if normalize else []):
                    seen.append(kernel_config(x_dtype, out_dtype, cutmix=cutmix, channels_last=cl,
                                              normalize=normalize, inplace=False, backward=False))  # fmt: skip
    for dt in FLOAT_DTYPES:
        for cutmix, cl in layouts:
            for inplace, backward in ((True, False), (False, True)):
                seen.append(kernel_config(dt, dt, cutmix=cutmix, channels_last=cl, normalize=False,
                                          inplace=inplace, backward=backward))  # fmt: skip
    unique = []
    for cfg in seen:
        if cfg not in unique:
            unique.append(cfg)
    return unique
