"""Triton kernels for the fused mix, and their host launchers.

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

The kernel holds no Python logic: the launchers below pick its flags (one
function, :func:`kernel_config`, that the ahead-of-time tests enumerate) and
prepare the tiny per-row tensors.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

BLOCK = 2048
NUM_WARPS = 4
TARGET_BLOCK = 1024
MAX_ROW = 2**31 - 1 - BLOCK


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
        lam_i = tl.load(lam_ptr + i).to(acc_ty)
        if INPLACE:
            # Pair (i, p) is handled by the program with the smaller index.
            # (Row comparisons are made block-shaped: the interpreter cannot
            # mask with a scalar comparison.)
            i_blk = offs * 0 + i
            mask = mask & (i_blk <= p)
            other_row = i_blk != p
            lam_p = tl.load(lam_ptr + p).to(acc_ty)
            # A row blended with weight exactly 1 keeps its values bit for
            # bit, as timm skips lam == 1 (1 * a + 0 * b is not a when b is
            # inf or NaN, or a is -0.0): it is not written.
            one_i = (offs * 0 + lam_i) == 1.0
            one_p = (offs * 0 + lam_p) == 1.0
            if CUTMIX:
                in_i, mix_i = _box(box_ptr, i, h, w)
                in_p, mix_p = _box(box_ptr, p, h, w)
                keep_i = mix_i & one_i
                keep_p = mix_p & one_p
                mask = mask & ~(keep_i & keep_p)
                # Only what moves is read: box pixels, or whole rows mixed with lam.
                a = tl.load(xi_ptr + offs, mask=mask & (in_p | mix_i | mix_p), other=0).to(acc_ty)
                b = tl.load(xp_ptr + offs, mask=mask & (in_i | mix_i | mix_p), other=0).to(acc_ty)
                vi = tl.where(mix_i, lam_i * a + (1.0 - lam_i) * b, b)
                vp = tl.where(mix_p, lam_p * b + (1.0 - lam_p) * a, a)
                tl.store(xi_ptr + offs, vi.to(x_ptr.dtype.element_ty), mask=mask & (in_i | mix_i) & ~keep_i)
                tl.store(xp_ptr + offs, vp.to(x_ptr.dtype.element_ty), mask=mask & (in_p | mix_p) & other_row & ~keep_p)
            else:
                mask = mask & ~(one_i & one_p)
                a = tl.load(xi_ptr + offs, mask=mask).to(acc_ty)
                b = tl.load(xp_ptr + offs, mask=mask).to(acc_ty)
                vi = lam_i * a + (1.0 - lam_i) * b
                vp = lam_p * b + (1.0 - lam_p) * a
                tl.store(xi_ptr + offs, vi.to(x_ptr.dtype.element_ty), mask=mask & ~one_i)
                tl.store(xp_ptr + offs, vp.to(x_ptr.dtype.element_ty), mask=mask & other_row & ~one_p)
        else:
            out_row = out_ptr + i.to(tl.int64) * out_stride
            if BACKWARD:
                wi = p
            else:
                wi = i
            lam_w = tl.load(lam_ptr + wi).to(acc_ty)
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
                    other = tl.where(mix_part, (1.0 - lam_w) * b, tl.where(in_part, b, 0.0))
                    v = own + other
                else:
                    v = tl.where(mix_self, lam_i * a + (1.0 - lam_w) * b, tl.where(in_self, b, a))
            else:
                a = tl.load(xi_ptr + offs, mask=mask, other=0).to(acc_ty)
                b = tl.load(xp_ptr + offs, mask=mask, other=0).to(acc_ty)
                a = _normalize(a, c, mask, mean_ptr, std_ptr, NORMALIZE, F64)
                b = _normalize(b, c, mask, mean_ptr, std_ptr, NORMALIZE, F64)
                v = lam_i * a + (1.0 - lam_w) * b
            tl.store(out_row + offs, v.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        k = (blk - image_blocks) * TBLOCK + tl.arange(0, TBLOCK)
        kmask = k < num_classes
        lam_t = tl.load(lam_ptr + i).to(tl.float32)
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
        y = ya * lam_t + yb * (1.0 - lam_t)
        tl.store(y_ptr + i.to(tl.int64) * num_classes + k, y, mask=kmask)


# ----------------------------------------------------------------------------
# Host side
# ----------------------------------------------------------------------------


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


def _launch(
    x,
    out,
    src,
    lam,
    boxes,
    mean,
    std,
    target,
    y,
    *,
    num_classes,
    label_smoothing,
    channels_last,
    inplace,
    backward,
):
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
    if cutmix or normalize:
        C, H, W = x.shape[1], x.shape[2], x.shape[3]
    else:
        C = H = W = 1
    soft = target is not None and target.dim() == 2
    x_stride = x.stride(0) if B > 1 else row_len
    out_stride = (out.stride(0) if B > 1 else row_len) if out is not None else x_stride
    cfg = kernel_config(
        x.dtype,
        out.dtype if out is not None else x.dtype,
        cutmix=cutmix,
        channels_last=channels_last,
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
    soft_rows = target if soft else y if y is not None else _empty_f32(x.device)
    grid = (B * blocks_per_row,)
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


def _empty_f32(device):
    return torch.empty(1, dtype=torch.float32, device=device)


def interpreter_active() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _device_guard(t):
    if t.is_cuda:
        return torch.cuda.device(t.device)
    import contextlib

    return contextlib.nullcontext()


def triton_mix(x, target, perm, lam, boxes, num_classes, label_smoothing, mean, std, out):
    """Out-of-place mix into ``out`` and a new ``[B, K]`` float32 target tensor.

    Inputs are already validated and laid out (dense rows; ``out`` shares
    ``x``'s layout); ``lam`` is float32 (float64 for float64 data)."""
    y = torch.empty((x.shape[0], num_classes), dtype=torch.float32, device=x.device)
    channels_last = _is_channels_last(x)
    with _device_guard(x):
        _launch(
            x,
            out,
            perm,
            lam,
            boxes,
            mean,
            std,
            target,
            y,
            num_classes=num_classes,
            label_smoothing=label_smoothing,
            channels_last=channels_last,
            inplace=False,
            backward=False,
        )
    return out, y


def triton_mix_(x, target, perm, lam, boxes, num_classes, label_smoothing):
    """In-place mix of ``x`` (perm must be an involution); returns the targets."""
    y = torch.empty((x.shape[0], num_classes), dtype=torch.float32, device=x.device)
    with _device_guard(x):
        _launch(
            x,
            None,
            perm,
            lam,
            boxes,
            None,
            None,
            target,
            y,
            num_classes=num_classes,
            label_smoothing=label_smoothing,
            channels_last=_is_channels_last(x),
            inplace=True,
            backward=False,
        )
    return y


def triton_mix_backward(grad, inv_perm, lam, boxes, out):
    """Gradient of the image mix: ``out[k] = lam[k] g[k] + (1 - lam[q]) g[q]``."""
    with _device_guard(grad):
        _launch(
            grad,
            out,
            inv_perm,
            lam,
            boxes,
            None,
            None,
            None,
            None,
            num_classes=0,
            label_smoothing=0.0,
            channels_last=_is_channels_last(grad),
            inplace=False,
            backward=True,
        )
    return out


def _is_channels_last(x) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------
# Ahead-of-time compilation (no GPU needed), used by the tests
# ----------------------------------------------------------------------------

_TL_TYPES = {
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float64: "fp64",
    torch.uint8: "u8",
}


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


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


def _compilable_kernel():
    """The kernel as a compilable JITFunction. Under ``TRITON_INTERPRET=1``
    ``triton.jit`` yields interpreter objects, so a second copy of this module
    is loaded with the interpreter switched off."""
    from triton.runtime.jit import JITFunction

    if isinstance(mix_images_targets_kernel, JITFunction):
        return mix_images_targets_kernel
    global _AOT_MODULE
    if _AOT_MODULE is None:
        import importlib.util

        old = os.environ.get("TRITON_INTERPRET")
        os.environ["TRITON_INTERPRET"] = "0"
        try:
            spec = importlib.util.spec_from_file_location("mixup_fused._triton_mix_aot", __file__)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        finally:
            if old is None:
                del os.environ["TRITON_INTERPRET"]
            else:
                os.environ["TRITON_INTERPRET"] = old
        _AOT_MODULE = mod
    return _AOT_MODULE.mix_images_targets_kernel


_AOT_MODULE = None


def compile_config(cfg, arch: int = 90, aligned: bool = True):
    """Compile one configuration for ``sm_<arch>`` with no GPU; returns the
    compiled kernel (``.asm["ptx"]`` holds the PTX). ``aligned`` gives the
    pointers 16-byte alignment and the lengths divisibility by 16, as Triton's
    specialisation sees typical image rows."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = _compilable_kernel()
    names = fn.arg_names
    signature = {
        "x_ptr": "*" + _TL_TYPES[cfg["x"]],
        "out_ptr": "*" + _TL_TYPES[cfg["out"]],
        "src_ptr": "*i64",
        "lam_ptr": "*fp64" if cfg["F64"] else "*fp32",
        "box_ptr": "*i64",
        "mean_ptr": "*fp32",
        "std_ptr": "*fp32",
        "ids_ptr": "*i64",
        "soft_ptr": "*fp32",
        "y_ptr": "*fp32",
        "off_value": "fp32",
        "on_value": "fp32",
        "keep": "fp32",
        "spread": "fp32",
    }
    constexprs = {k: v for k, v in cfg.items() if k not in ("x", "out")}
    for name in names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name not in signature:
            signature[name] = "i32"
    attrs = {}
    if aligned:
        divisible = [n for n in names if signature[n].startswith("*")] + ["row_len", "x_stride", "out_stride"]
        attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in divisible}
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": NUM_WARPS, "enable_fp_fusion": False}
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
