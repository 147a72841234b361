"""Triton kernels for the fused mix, and their host launchers.

One kernel, ``mix_images_targets_kernel``, serves every mode. Its 1-D grid has
``B * (image_blocks + target_blocks)`` programs: program ``(i, blk)`` writes
block ``blk`` of output row ``i`` -- an image block while ``blk <
image_blocks``, otherwise a block of the ``[B, K]`` target row -- so a single
launch writes both outputs.

Rows are addressed as flat, dense runs of ``row_len`` elements (contiguous or
channels_last); the row start is computed in int64, so ``B * row_len`` may pass
2**31. Strides and lengths arrive divided by ``VEC`` and are multiplied back by
the constexpr, which lets the compiler prove 16-byte alignment and emit 128-bit
loads and stores.

The kernel holds no Python logic: the launchers below pick BLOCK, VEC and
num_warps and prepare the tiny per-row tensors.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

TARGET_BLOCK = 1024
_INT32_MAX = 2**31 - 1


@triton.jit
def _normalize(v, c, mask, mean_ptr, std_ptr, NORMALIZE: tl.constexpr):
    if NORMALIZE:
        mean = tl.load(mean_ptr + c, mask=mask, other=0.0)
        std = tl.load(std_ptr + c, mask=mask, other=1.0)
        v = tl.math.div_rn(v - mean, std)
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
    tgt_ptr,
    y_ptr,
    row_len_v,
    x_stride_v,
    out_stride_v,
    C,
    H,
    W,
    num_classes,
    tgt_stride,
    off_value,
    on_value,
    keep,
    spread,
    blocks_per_row,
    image_blocks,
    VEC: tl.constexpr,
    BLOCK: tl.constexpr,
    TBLOCK: tl.constexpr,
    CUTMIX: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    NORMALIZE: tl.constexpr,
    TARGETS: tl.constexpr,
    INPLACE: tl.constexpr,
    BACKWARD: tl.constexpr,
    F64: tl.constexpr,
    LONG_ROW: tl.constexpr,
):
    """Mix rows of ``x`` and (optionally) build mixed targets in one launch.

    Forward:  out[i] = lam[i] * x[i] + (1 - lam[i]) * x[src[i]]   (mixup)
              out[i] = x[src[i]] inside box[i], x[i] outside     (CutMix)
    Backward (src = inverse permutation q):
              out[k] = lam[k] * g[k] + (1 - lam[q]) * g[q]        (mixup)
              out[k] = g[k] outside box[k] + g[q] inside box[q]  (CutMix)
    INPLACE (src an involution): program i <= src[i] reads rows i and src[i]
    once and writes both; programs with i > src[i] only write targets.
    TARGETS: 0 none, 1 class ids, 2 soft rows (smoothed as t * keep + spread).
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
        row_len = row_len_v * VEC
        if LONG_ROW:
            offs = blk.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        else:
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
        xi_ptr = x_ptr + i.to(tl.int64) * (x_stride_v * VEC)
        xp_ptr = x_ptr + p.to(tl.int64) * (x_stride_v * VEC)
        lam_i = tl.load(lam_ptr + i).to(acc_ty)
        if INPLACE:
            # Pair (i, p) is handled by the program with the smaller index.
            # (Row comparisons are made block-shaped: the interpreter cannot
            # mask with a scalar comparison.)
            i_blk = offs * 0 + i
            mask = mask & (i_blk <= p)
            other_row = i_blk != p
            lam_p = tl.load(lam_ptr + p).to(acc_ty)
            if CUTMIX:
                in_i, mix_i = _box(box_ptr, i, h, w)
                in_p, mix_p = _box(box_ptr, p, h, w)
                # Only what moves is read: box pixels, or whole rows mixed with lam.
                a = tl.load(xi_ptr + offs, mask=mask & (in_p | mix_i | mix_p), other=0).to(acc_ty)
                b = tl.load(xp_ptr + offs, mask=mask & (in_i | mix_i | mix_p), other=0).to(acc_ty)
                vi = tl.where(mix_i, lam_i * a + (1.0 - lam_i) * b, b)
                vp = tl.where(mix_p, lam_p * b + (1.0 - lam_p) * a, a)
                tl.store(xi_ptr + offs, vi.to(x_ptr.dtype.element_ty), mask=mask & (in_i | mix_i))
                tl.store(xp_ptr + offs, vp.to(x_ptr.dtype.element_ty), mask=mask & (in_p | mix_p) & other_row)
            else:
                a = tl.load(xi_ptr + offs, mask=mask).to(acc_ty)
                b = tl.load(xp_ptr + offs, mask=mask).to(acc_ty)
                vi = lam_i * a + (1.0 - lam_i) * b
                vp = lam_p * b + (1.0 - lam_p) * a
                tl.store(xi_ptr + offs, vi.to(x_ptr.dtype.element_ty), mask=mask)
                tl.store(xp_ptr + offs, vp.to(x_ptr.dtype.element_ty), mask=mask & other_row)
        else:
            out_row = out_ptr + i.to(tl.int64) * (out_stride_v * VEC)
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
                a = _normalize(a, c, mask, mean_ptr, std_ptr, NORMALIZE)
                b = _normalize(b, c, mask, mean_ptr, std_ptr, NORMALIZE)
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
                a = _normalize(a, c, mask, mean_ptr, std_ptr, NORMALIZE)
                b = _normalize(b, c, mask, mean_ptr, std_ptr, NORMALIZE)
                v = lam_i * a + (1.0 - lam_w) * b
            tl.store(out_row + offs, v.to(out_ptr.dtype.element_ty), mask=mask)
    elif TARGETS != 0:
        k = (blk - image_blocks) * TBLOCK + tl.arange(0, TBLOCK)
        kmask = k < num_classes
        lam_t = tl.load(lam_ptr + i).to(tl.float32)
        if TARGETS == 1:
            ti = tl.load(tgt_ptr + i)
            tp = tl.load(tgt_ptr + p)
            ya = tl.where(k == ti, on_value, off_value)
            yb = tl.where(k == tp, on_value, off_value)
        else:
            ya = tl.load(tgt_ptr + i.to(tl.int64) * tgt_stride + k, mask=kmask, other=0).to(tl.float32)
            yb = tl.load(tgt_ptr + p.to(tl.int64) * tgt_stride + k, mask=kmask, other=0).to(tl.float32)
            ya = ya * keep + spread
            yb = yb * keep + spread
        y = ya * lam_t + yb * (1.0 - lam_t)
        tl.store(y_ptr + i.to(tl.int64) * num_classes + k, y, mask=kmask)


# ----------------------------------------------------------------------------
# Host side
# ----------------------------------------------------------------------------


def _vec_for(elem_sizes, lengths, ptrs):
    """Largest power of two (elements per 16 bytes of the smallest dtype) that
    divides every length and keeps every pointer 16-byte aligned."""
    vec = 16 // min(elem_sizes)
    while vec > 1:
        ok = all(n % vec == 0 for n in lengths)
        ok = ok and all(ptr % (vec * es) == 0 for ptr, es in zip(ptrs, elem_sizes, strict=True))
        if ok:
            return vec
        vec //= 2
    return 1


def pick_block(row_len: int) -> tuple[int, int]:
    """BLOCK and num_warps for a row of ``row_len`` elements."""
    if row_len <= 2048:
        return 1024, 4
    return 4096, 8


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
    row_len = x[0].numel() if B > 0 else 0
    if B == 0:
        return
    cutmix = boxes is not None
    normalize = mean is not None
    if cutmix or normalize:
        C, H, W = x.shape[1], x.shape[2], x.shape[3]
    else:
        C = H = W = 1
    targets_mode = 0 if target is None else (1 if target.dim() == 1 else 2)
    x_stride = x.stride(0) if B > 1 else row_len
    out_stride = (out.stride(0) if B > 1 else row_len) if out is not None else x_stride
    sizes = [x.element_size()] + ([out.element_size()] if out is not None else [])
    ptrs = [x.data_ptr()] + ([out.data_ptr()] if out is not None else [])
    vec = _vec_for(sizes, [row_len, x_stride, out_stride], ptrs)
    block, num_warps = pick_block(row_len)
    image_blocks = triton.cdiv(row_len, block)
    target_blocks = triton.cdiv(num_classes, TARGET_BLOCK) if targets_mode else 0
    blocks_per_row = image_blocks + target_blocks
    eps = float(label_smoothing)
    off_value = eps / num_classes if num_classes else 0.0
    on_value = 1.0 - eps + off_value
    dummy = src  # any tensor on the right device, never read
    grid = (B * blocks_per_row,)
    mix_images_targets_kernel[grid](
        x,
        out if out is not None else x,
        src,
        lam,
        boxes if cutmix else dummy,
        mean if normalize else lam,
        std if normalize else lam,
        target if target is not None else dummy,
        y if y is not None else lam,
        row_len // vec,
        x_stride // vec,
        out_stride // vec,
        C,
        H,
        W,
        num_classes,
        target.stride(0) if targets_mode == 2 else 0,
        off_value,
        on_value,
        1.0 - eps,
        off_value,
        blocks_per_row,
        image_blocks,
        VEC=vec,
        BLOCK=block,
        TBLOCK=TARGET_BLOCK,
        CUTMIX=cutmix,
        CHANNELS_LAST=channels_last,
        NORMALIZE=normalize,
        TARGETS=targets_mode,
        INPLACE=inplace,
        BACKWARD=backward,
        F64=x.dtype == torch.float64 or (out is not None and out.dtype == torch.float64),
        LONG_ROW=row_len > _INT32_MAX - block,
        num_warps=num_warps,
        # No FMA contraction: the same roundings as the reference and the C++
        # kernel, so every backend gives the same bits for float32.
        enable_fp_fusion=False,
    )


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


def kernel_configs():
    """Every (dtypes, constexpr) combination the launchers can pick.

    Yields dicts with keys ``x``, ``out`` (torch dtypes), ``target`` ("i64",
    a float type string, or None) and the kernel's constexpr flags."""
    floats = [torch.float32, torch.float16, torch.bfloat16]
    for block, _ in {pick_block(1), pick_block(1 << 20)}:
        base = dict(BLOCK=block, TBLOCK=TARGET_BLOCK, F64=False, LONG_ROW=False)
        for dt in floats:
            vec = 16 // torch.empty((), dtype=dt).element_size()
            for cutmix in (False, True):
                for cl in (False, True) if cutmix else (False,):
                    for targets in (1, 2):
                        yield dict(
                            base, x=dt, out=dt, VEC=vec, CUTMIX=cutmix, CHANNELS_LAST=cl,
                            NORMALIZE=False, TARGETS=targets, INPLACE=False, BACKWARD=False,
                        )  # fmt: skip
                    yield dict(
                        base, x=dt, out=dt, VEC=vec, CUTMIX=cutmix, CHANNELS_LAST=cl,
                        NORMALIZE=False, TARGETS=1, INPLACE=True, BACKWARD=False,
                    )  # fmt: skip
                    yield dict(
                        base, x=dt, out=dt, VEC=vec, CUTMIX=cutmix, CHANNELS_LAST=cl,
                        NORMALIZE=False, TARGETS=0, INPLACE=False, BACKWARD=True,
                    )  # fmt: skip
        # uint8 images normalised into every float output type.
        for dt in floats:
            for cutmix in (False, True):
                for cl in (False, True):
                    yield dict(
                        base, x=torch.uint8, out=dt, VEC=16, CUTMIX=cutmix, CHANNELS_LAST=cl,
                        NORMALIZE=True, TARGETS=1, INPLACE=False, BACKWARD=False,
                    )  # fmt: skip


def compile_config(cfg, arch: int = 90):
    """Compile one configuration for ``sm_<arch>`` with no GPU; returns the
    compiled kernel (``.asm["ptx"]`` holds the PTX)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = mix_images_targets_kernel
    names = fn.arg_names
    x_t = _TL_TYPES[cfg["x"]]
    out_t = _TL_TYPES[cfg["out"]]
    lam_t = "fp64" if cfg["F64"] else "fp32"
    tgt_t = "*i64" if cfg["TARGETS"] != 2 else "*fp32"
    signature = {
        "x_ptr": "*" + x_t,
        "out_ptr": "*" + out_t,
        "src_ptr": "*i64",
        "lam_ptr": "*" + lam_t,
        "box_ptr": "*i64",
        "mean_ptr": "*fp32",
        "std_ptr": "*fp32",
        "tgt_ptr": tgt_t,
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
    # Pointers are 16-byte aligned and lengths divisible by 16, as the
    # launcher's specialisation sees them for typical image rows.
    aligned = ["x_ptr", "out_ptr", "src_ptr", "lam_ptr", "box_ptr", "tgt_ptr", "y_ptr"]
    aligned += ["row_len_v", "x_stride_v", "out_stride_v"]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    num_warps = dict([pick_block(1), pick_block(1 << 20)])[cfg["BLOCK"]]
    options = {"num_warps": num_warps, "enable_fp_fusion": False}
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
