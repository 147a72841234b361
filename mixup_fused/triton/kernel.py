"""The Triton kernel of the fused mix and the configurations it is compiled in.

One kernel, ``mix_images_targets_kernel``, serves every mode. Its 1-D grid has
``B * (image_blocks + map_blocks + target_blocks)`` programs: program ``(i,
blk)`` writes block ``blk`` of output row ``i`` -- an image block, a block of
the label maps (when they are given), or a block of the ``[B, K]`` target
row -- so a single launch writes every output.

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
# Labels per program.
MAP_BLOCK = 512
# Where a row takes its partner (the CUT flag): nowhere (mixup), inside a box, or where a cut mask is set.
CUT_NONE, CUT_BOX, CUT_MASK = 0, 1, 2


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
def _box_bounds(box_ptr, r, box_dims):
    """Row ``r``'s box as int32 ``(d0, d1, h0, h1, w0, w1)`` and whether it is
    ``NO_BOX``. A box holds a ``(lo, hi)`` pair for each of the ``box_dims``
    spatial dims; the leading ones it lacks (``d`` for 2-D, ``d`` and ``h``
    for 1-D) span ``(0, 1)``. Scalar work, once per program."""
    row = box_ptr + r.to(tl.int64) * (2 * box_dims)
    n2 = 2 * box_dims
    w0 = tl.load(row + n2 - 2)
    w1 = tl.load(row + n2 - 1)
    # Coordinates a box lacks are read from the first pair it has, so that the
    # NO_BOX test (every coordinate -1) sees only real coordinates.
    hk = tl.maximum(n2 - 4, 0)
    h0 = tl.load(row + hk)
    h1 = tl.load(row + hk + 1)
    d0 = tl.load(row)
    d1 = tl.load(row + 1)
    no_box = ((d0 + 1) | (d1 + 1) | (h0 + 1) | (h1 + 1) | (w0 + 1) | (w1 + 1)) == 0
    h0 = tl.where(box_dims >= 2, h0, 0)
    h1 = tl.where(box_dims >= 2, h1, 1)
    d0 = tl.where(box_dims >= 3, d0, 0)
    d1 = tl.where(box_dims >= 3, d1, 1)
    return (d0.to(tl.int32), d1.to(tl.int32), h0.to(tl.int32), h1.to(tl.int32), w0.to(tl.int32),
            w1.to(tl.int32), no_box)  # fmt: skip


@triton.jit
def _region(box_ptr, cut_ptr, r, s, valid, box_dims, S, H, W, CUT: tl.constexpr):
    """(spatial index ``s`` of row ``r`` takes the partner, row ``r`` is
    blended with lam), block-shaped. CUT == 1: inside row r's box, blended
    when the box is NO_BOX; CUT == 2: the cut mask is nonzero there (read where
    ``valid``), no row blended.

    The box test needs the position (d, h, w) of ``s = (d * H + h) * W + w``.
    Only a box with a depth (3-D) pays for ``h = (s // W) % H`` and the depth
    test (the outermost dim, compared as a range of ``s``: ``d0 * H * W <= s
    < d1 * H * W``); 1-D and 2-D boxes take ``h = s // W`` (the branch is
    uniform across the launch)."""
    if CUT == 1:
        d0, d1, h0, h1, w0, w1, no_box = _box_bounds(box_ptr, r, box_dims)
        w = s % W
        r_hw = s // W
        if box_dims == 3:
            HW = H * W
            h = r_hw % H
            inside = (s >= d0 * HW) & (s < d1 * HW) & (h >= h0) & (h < h1) & (w >= w0) & (w < w1)
        else:
            inside = (r_hw >= h0) & (r_hw < h1) & (w >= w0) & (w < w1)
        blended = (s * 0 + no_box.to(tl.int32)) != 0
    else:
        inside = tl.load(cut_ptr + r.to(tl.int64) * S + s, mask=valid, other=0) != 0
        blended = inside & False
    return inside, blended


@triton.jit
def _mix_maps(map_ptr, map_out_ptr, box_ptr, cut_ptr, i, p, mblk, S, H, W, box_dims, map_shift,
              MBLOCK: tl.constexpr, CUT: tl.constexpr, INPLACE: tl.constexpr):  # fmt: skip
    """Block ``mblk`` of label map row ``i``: ``MBLOCK`` labels, each moved
    as its ``2**map_shift`` bytes (one configuration for every label dtype);
    where a label comes from is decided once per label."""
    s = mblk * MBLOCK + tl.arange(0, MBLOCK)
    valid = s < S
    row_bytes = S << map_shift
    first = s << map_shift
    mi_ptr = map_ptr + i.to(tl.int64) * row_bytes
    mp_ptr = map_ptr + p.to(tl.int64) * row_bytes
    if INPLACE:
        # As the images: the program with the smaller index swaps what moves
        # between rows i and p; a row paired with itself keeps its labels. (The
        # launcher gives plain mixup no map blocks: nothing moves.)
        if CUT != 0:
            i_blk = s * 0 + i
            valid = valid & (i_blk < p)
            in_i, mix_i = _region(box_ptr, cut_ptr, i, s, valid, box_dims, S, H, W, CUT)
            in_p, mix_p = _region(box_ptr, cut_ptr, p, s, valid, box_dims, S, H, W, CUT)
            take_i = valid & in_i & ~mix_i
            take_p = valid & in_p & ~mix_p
            for byte in range(0, 1 << map_shift):
                li = tl.load(mi_ptr + first + byte, mask=take_p)
                lp = tl.load(mp_ptr + first + byte, mask=take_i)
                tl.store(mi_ptr + first + byte, lp, mask=take_i)
                tl.store(mp_ptr + first + byte, li, mask=take_p)
    else:
        out_row = map_out_ptr + i.to(tl.int64) * row_bytes
        if CUT != 0:
            in_i, mix_i = _region(box_ptr, cut_ptr, i, s, valid, box_dims, S, H, W, CUT)
            take = in_i & ~mix_i
            for byte in range(0, 1 << map_shift):
                own = tl.load(mi_ptr + first + byte, mask=valid & ~take, other=0)
                part = tl.load(mp_ptr + first + byte, mask=valid & take, other=0)
                tl.store(out_row + first + byte, tl.where(take, part, own), mask=valid)
        else:
            for byte in range(0, 1 << map_shift):
                tl.store(out_row + first + byte, tl.load(mi_ptr + first + byte, mask=valid), mask=valid)


@triton.jit
def mix_images_targets_kernel(
    x_ptr,
    out_ptr,
    src_ptr,
    lam_ptr,
    box_ptr,
    cut_ptr,
    map_ptr,
    map_out_ptr,
    mean_ptr,
    std_ptr,
    ids_ptr,
    soft_ptr,
    y_ptr,
    row_len,
    x_stride,
    out_stride,
    C,
    S,
    H,
    W,
    box_dims,
    map_shift,
    num_classes,
    soft_targets,
    off_value,
    on_value,
    keep,
    spread,
    blocks_per_row,
    image_blocks,
    map_blocks,
    BLOCK: tl.constexpr,
    MBLOCK: tl.constexpr,
    TBLOCK: tl.constexpr,
    CUT: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    NORMALIZE: tl.constexpr,
    INPLACE: tl.constexpr,
    BACKWARD: tl.constexpr,
    F64: tl.constexpr,
):
    """Mix rows of ``x``, (optionally) label maps, and build mixed targets in one launch.

    Forward:  out[i] = lam[i] * x[i] + (1 - lam[i]) * x[src[i]]   (mixup, CUT == 0)
              out[i] = x[src[i]] inside cut[i], x[i] outside     (CutMix)
    where cut[i] is row i's box (CUT == 1; a NO_BOX row is mixed with lam)
    or its cut mask (CUT == 2). A row is ``row_len = C * S`` elements, ``S =
    D * H * W`` spatial positions (1-D: D = H = 1; 2-D: D = 1), contiguous
    (channel slowest) or channels-last (channel fastest).
    Backward (src = inverse permutation q):
              out[k] = lam[k] * g[k] + (1 - lam[q]) * g[q]        (mixup)
              out[k] = g[k] outside cut[k] + g[q] inside cut[q]  (CutMix)
    INPLACE (src an involution): program i <= src[i] reads rows i and src[i]
    once and writes both; programs with i > src[i] only write targets.

    Programs ``(i, blk)``: image blocks, then ``map_blocks`` blocks of the
    label maps (``MBLOCK`` labels each, a label moved as its ``2**map_shift``
    bytes whatever its dtype; a pixel inside cut[i] takes the partner's
    label, any other pixel, and every blended row, keeps its own), then the
    target blocks: class ids from ``ids_ptr``, or float32 soft rows from
    ``soft_ptr`` when ``soft_targets`` (smoothed as ``t * keep + spread``);
    the backward has neither maps nor targets.
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
        # Channel and spatial index, for the cut and per-channel normalisation.
        c = offs
        s = offs
        if CUT != 0 or NORMALIZE:
            if CHANNELS_LAST:
                c = offs % C
                s = offs // C
            else:
                s = offs % S
                c = offs // S
        xi_ptr = x_ptr + i.to(tl.int64) * x_stride
        xp_ptr = x_ptr + p.to(tl.int64) * x_stride
        # lam is float64: its weight and the partner's (1 - lam) are each rounded once from it.
        lam64_i = tl.load(lam_ptr + i)
        lam_i = lam64_i.to(acc_ty)
        if INPLACE:
            # Pair (i, p) is handled by the program with the smaller index;
            # the other one has no image work and ends here.
            if i <= p:
                # (Row comparisons are made block-shaped: the interpreter cannot
                # mask with a scalar comparison.)
                i_blk = offs * 0 + i
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
                if CUT != 0:
                    in_i, mix_i = _region(box_ptr, cut_ptr, i, s, mask, box_dims, S, H, W, CUT)
                    in_p, mix_p = _region(box_ptr, cut_ptr, p, s, mask, box_dims, S, H, W, CUT)
                    keep_i = mix_i & one_i
                    keep_p = mix_p & one_p
                    mask = mask & ~(keep_i & keep_p)
                    # Only what moves is read: cut pixels, or whole rows mixed with lam.
                    a = tl.load(xi_ptr + offs, mask=mask & (in_p | mix_i | mix_p), other=0).to(acc_ty)
                    b = tl.load(xp_ptr + offs, mask=mask & (in_i | mix_i | mix_p), other=0).to(acc_ty)
                    vi = tl.where(mix_i, lam_i * a + rest_i * b, b)
                    vp = tl.where(mix_p, lam_p * b + rest_p * a, a)
                    tl.store(xi_ptr + offs, vi.to(x_ptr.dtype.element_ty), mask=mask & (in_i | mix_i) & ~keep_i)
                    tl.store(
                        xp_ptr + offs, vp.to(x_ptr.dtype.element_ty), mask=mask & (in_p | mix_p) & other_row & ~keep_p
                    )
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
            if CUT != 0:
                in_self, mix_self = _region(box_ptr, cut_ptr, i, s, mask, box_dims, S, H, W, CUT)
                if BACKWARD:
                    in_part, mix_part = _region(box_ptr, cut_ptr, wi, s, mask, box_dims, S, H, W, CUT)
                else:
                    in_part = in_self
                    mix_part = mix_self
                a = tl.load(xi_ptr + offs, mask=mask & (mix_self | ~in_self), other=0).to(acc_ty)
                b = tl.load(xp_ptr + offs, mask=mask & (mix_part | in_part), other=0).to(acc_ty)
                a = _normalize(a, c, mask, mean_ptr, std_ptr, NORMALIZE, F64)
                b = _normalize(b, c, mask, mean_ptr, std_ptr, NORMALIZE, F64)
                if BACKWARD:
                    # Own term plus partner term; both may contribute where cuts overlap.
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
    elif blk < image_blocks + map_blocks:
        if not BACKWARD:
            _mix_maps(map_ptr, map_out_ptr, box_ptr, cut_ptr, i, p, blk - image_blocks, S, H, W, box_dims,
                      map_shift, MBLOCK, CUT, INPLACE)  # fmt: skip
    else:
        k = (blk - image_blocks - map_blocks) * TBLOCK + tl.arange(0, TBLOCK)
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


def kernel_config(x_dtype, out_dtype, *, cut, channels_last, normalize, inplace, backward) -> dict:
    """The kernel's dtypes and constexpr flags for one call. The launcher and
    :func:`kernel_configs` both go through here, so the ahead-of-time tests
    compile exactly what the launcher can pick. ``cut`` is ``CUT_NONE``,
    ``CUT_BOX`` or ``CUT_MASK``; the spatial rank and the label maps are
    run-time arguments, not configurations."""
    return dict(
        x=x_dtype,
        out=out_dtype,
        BLOCK=BLOCK,
        MBLOCK=MAP_BLOCK,
        TBLOCK=TARGET_BLOCK,
        CUT=int(cut),
        # The layout only matters where positions are computed.
        CHANNELS_LAST=bool(channels_last and (cut != CUT_NONE or normalize)),
        NORMALIZE=bool(normalize),
        INPLACE=bool(inplace),
        BACKWARD=bool(backward),
        F64=torch.float64 in (x_dtype, out_dtype),
    )


def kernel_configs():
    """Every configuration the launchers can pick, via :func:`kernel_config`.

    Out of place: any float ``x`` to any float output, with or without
    normalisation, and uint8 ``x`` (normalised) to any float output; no cut,
    boxes or a cut mask; contiguous or channels_last. In place and backward:
    one dtype. Class-id vs soft targets, the spatial rank (1 to 3 dims) and
    whether label maps are mixed are run-time arguments, not configurations."""
    seen = []
    cut_layouts = [(c, cl) for c in (CUT_BOX, CUT_MASK) for cl in (False, True)]
    layouts = [(CUT_NONE, False)] + cut_layouts  # (cut, channels_last)
    for x_dtype in FLOAT_DTYPES + (torch.uint8,):
        for out_dtype in FLOAT_DTYPES:
            for normalize in (False, True):
                if x_dtype == torch.uint8 and not normalize:
                    continue
                for cut, cl in layouts + ([(CUT_NONE, True)] if normalize else []):
                    seen.append(kernel_config(x_dtype, out_dtype, cut=cut, channels_last=cl,
                                              normalize=normalize, inplace=False, backward=False))  # fmt: skip
    for dt in FLOAT_DTYPES:
        for cut, cl in layouts:
            for inplace, backward in ((True, False), (False, True)):
                seen.append(kernel_config(dt, dt, cut=cut, channels_last=cl, normalize=False,
                                          inplace=inplace, backward=backward))  # fmt: skip
    unique = []
    for cfg in seen:
        if cfg not in unique:
            unique.append(cfg)
    return unique
