"""The argument rules, once for Python: the functional layer, the drop-in
classes, the Triton launcher, the reference backend and the fake (meta)
kernels all call these. The C++ kernels apply the same rules (csrc/checks.cpp).

Errors name the argument: TypeError for a wrong type or dtype, ValueError for
a wrong shape, device or value. ``check_args`` looks only at metadata, so it is
safe under torch.compile's fake tensors; ``check_values`` inspects data and
costs one host-device synchronisation on a GPU, after every check has been
queued.
"""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# Class ids, K and one sample's length are int32 in the kernels' indexing.
INT32_MAX = 2**31 - 1


def _fail(cls, msg):
    raise cls(f"mixup_fused: {msg}")


def check_num_classes(num_classes) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or not 1 <= num_classes <= INT32_MAX:
        _fail(ValueError, f"num_classes must be an int in [1, 2**31 - 1], got {num_classes!r}")


def check_label_smoothing(label_smoothing) -> None:
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)):
        _fail(TypeError, f"label_smoothing must be a float, got {type(label_smoothing).__name__}")
    if not 0.0 <= label_smoothing <= 1.0:
        _fail(ValueError, f"label_smoothing must be in [0, 1], got {label_smoothing}")


def check_mean_std_pair(mean, std) -> None:
    if (mean is None) != (std is None):
        _fail(ValueError, "mean and std must be given together")


def check_tensor(name: str, v, optional: bool = False) -> None:
    if v is None and optional:
        return
    if not isinstance(v, torch.Tensor):
        _fail(TypeError, f"{name} must be a tensor, got {type(v).__name__}")


_INPLACE_NORMALIZE = "inplace=True cannot normalise (mean/std): the output dtype differs from x"


def check_inplace(x, out_dtype, memory_format, normalize: bool) -> None:
    """What ``inplace=True`` cannot do: write into x that requires grad, or change its dtype or layout."""
    if x.requires_grad:
        _fail(ValueError, "inplace=True cannot write into x that requires grad; use inplace=False to get gradients")
    if out_dtype is not None and out_dtype != x.dtype:
        _fail(ValueError, f"inplace=True keeps x's dtype {x.dtype}, but out_dtype={out_dtype}")
    if memory_format is not None and not x.is_contiguous(memory_format=memory_format):
        _fail(ValueError, f"inplace=True keeps x's memory format; memory_format={memory_format}")
    if normalize:
        _fail(ValueError, _INPLACE_NORMALIZE)


MAP_DTYPES = (torch.int64, torch.int32, torch.uint8)
CUT_MASK_DTYPES = (torch.bool, torch.uint8)
_RANKS = "[B, C, T], [B, C, H, W] or [B, C, D, H, W]"


def _spatial_of(x, name: str) -> tuple[int, ...]:
    """x's spatial dims for an argument ``name`` that needs them (1 to 3)."""
    if not 3 <= x.dim() <= 5:
        _fail(ValueError, f"{name} need x of shape {_RANKS}, got x of shape {list(x.shape)}")
    return tuple(x.shape[2:])


def _check_map_like(name: str, t, x, dtypes, what: str) -> None:
    """A per-pixel tensor ``[B, *spatial]`` or ``[B, 1, *spatial]`` of x's batch and spatial size."""
    spatial = _spatial_of(x, name)
    if t.dtype not in dtypes:
        _fail(TypeError, f"{name} must be {what}, got {t.dtype}")
    B = x.shape[0]
    shape = tuple(t.shape)
    if shape not in ((B, *spatial), (B, 1, *spatial)):
        _fail(
            ValueError,
            f"{name} must have shape [B, *spatial] = {[B, *spatial]} or [B, 1, *spatial] (x is {list(x.shape)}), "
            f"got {list(shape)}",
        )


def check_args(
    x,
    target,
    perm,
    lam,
    boxes,
    num_classes,
    label_smoothing,
    mean=None,
    std=None,
    out_dtype=None,
    *,
    inplace=False,
    cut_mask=None,
    masks=None,
):
    """Metadata rules of a mix. ``boxes`` are ``[B, 2n]`` for n spatial dims;
    ``cut_mask`` (bool/uint8) and ``masks`` (integer label maps) are per pixel,
    ``[B, *spatial]`` or ``[B, 1, *spatial]``."""
    normalize = mean is not None or std is not None
    if x.dim() < 1:
        _fail(ValueError, "x must have a batch dimension, got a 0-d tensor")
    if normalize:
        if not (x.dtype in FLOAT_DTYPES or x.dtype == torch.uint8):
            _fail(TypeError, f"x must be uint8 or floating when mean/std are given, got {x.dtype}")
    elif x.dtype not in FLOAT_DTYPES:
        _fail(
            TypeError,
            f"x must be a floating tensor (float32, float16, bfloat16 or float64), got {x.dtype}; "
            "integer images need mean and std to be normalised",
        )
    if out_dtype is not None and out_dtype not in FLOAT_DTYPES:
        _fail(TypeError, f"out_dtype must be a floating dtype, got {out_dtype}")
    B = x.shape[0]
    named = (("target", target), ("perm", perm), ("lam", lam), ("boxes", boxes), ("cut_mask", cut_mask),
             ("masks", masks), ("mean", mean), ("std", std))  # fmt: skip
    for name, t in named:
        if t is not None and t.device != x.device:
            _fail(ValueError, f"{name} is on {t.device} but x is on {x.device}; all tensors must be on the same device")
    if perm.dtype not in (torch.int64, torch.int32):
        _fail(TypeError, f"perm must be an int64 tensor, got {perm.dtype}")
    if perm.dim() != 1 or perm.shape[0] != B:
        _fail(ValueError, f"perm must have shape [B] = [{B}], got {list(perm.shape)}")
    if lam.dtype not in FLOAT_DTYPES:
        _fail(TypeError, f"lam must be a floating tensor, got {lam.dtype}")
    if lam.dim() != 1 or lam.shape[0] != B:
        _fail(ValueError, f"lam must have shape [B] = [{B}], got {list(lam.shape)}")
    if boxes is not None and cut_mask is not None:
        _fail(ValueError, "cut_mask and boxes are exclusive: pass one of them")
    if boxes is not None:
        n = 2 * len(_spatial_of(x, "boxes (CutMix)"))
        if boxes.dtype in FLOAT_DTYPES or boxes.dtype in (torch.bool,) or boxes.is_complex():
            _fail(TypeError, f"boxes must be an integer tensor, got {boxes.dtype}")
        if boxes.dim() != 2 or boxes.shape[0] != B or boxes.shape[1] != n:
            _fail(
                ValueError,
                f"boxes must have shape [B, 2 * spatial dims] = [{B}, {n}] for x of shape {list(x.shape)} "
                f"((lo, hi) per spatial dim), got {list(boxes.shape)}",
            )
    if cut_mask is not None:
        _check_map_like("cut_mask", cut_mask, x, CUT_MASK_DTYPES, "a bool (or uint8) tensor")
    if masks is not None:
        _check_map_like("masks", masks, x, MAP_DTYPES, "an integer label map (int64, int32 or uint8)")
    check_num_classes(num_classes)
    check_label_smoothing(label_smoothing)
    if target.dtype in FLOAT_DTYPES:
        if target.dim() != 2 or target.shape[0] != B or target.shape[1] != num_classes:
            _fail(
                ValueError,
                f"soft target must have shape [B, num_classes] = [{B}, {num_classes}], got {list(target.shape)}",
            )
    else:
        if target.dtype == torch.bool or target.is_complex() or target.is_floating_point():
            _fail(TypeError, f"target must hold int64 class ids or floating soft targets, got {target.dtype}")
        if target.dim() != 1 or target.shape[0] != B:
            _fail(ValueError, f"target (class ids) must have shape [B] = [{B}], got {list(target.shape)}")
    check_mean_std_pair(mean, std)
    if normalize:
        if x.dim() != 4:
            _fail(ValueError, f"mean/std need x of shape [B, C, H, W], got {list(x.shape)}")
        for name, t in (("mean", mean), ("std", std)):
            if t.dtype not in FLOAT_DTYPES:
                _fail(TypeError, f"{name} must be a floating tensor, got {t.dtype}")
            if t.numel() != x.shape[1]:
                _fail(ValueError, f"{name} must have C = {x.shape[1]} values, got {t.numel()}")
    if inplace and normalize:
        _fail(ValueError, _INPLACE_NORMALIZE)


def box_error(i: int, row, spatial, d: int) -> str:
    """The message for box row ``i`` whose spatial dim ``d`` is out of bounds."""
    if len(spatial) == 2:
        H, W = spatial
        return (
            f"boxes[{i}] = {tuple(row)} must satisfy 0 <= y0 <= y1 <= H = {H} and 0 <= x0 <= x1 <= W = {W}, "
            f"or be {tuple([-1] * len(row))} (NO_BOX) to mix that sample with lam"
        )
    return (
        f"boxes[{i}] = {tuple(row)}: spatial dim {d} needs 0 <= lo <= hi <= {spatial[d]} (spatial size "
        f"{tuple(spatial)}, (lo, hi) per dim), or the row all -1 (NO_BOX) to mix that sample with lam"
    )


def check_class_ids(target, num_classes: int, name: str = "target") -> None:
    """Every id in ``[0, num_classes)``; the message names the first that is not (``name[i] = v``)."""
    for i, v in enumerate(target.tolist()):
        if not 0 <= v < num_classes:
            _fail(ValueError, f"{name}[{i}] = {v} is not a class id in [0, num_classes = {num_classes})")


def check_values(x, target, perm, lam, boxes, num_classes, mean=None, std=None, *, inplace=False):
    """(``cut_mask`` and ``masks`` have no value rules: any nonzero cuts, any label moves.)"""
    """Data-dependent checks; all conditions are reduced on the device and read
    back with a single synchronisation, then the first failure is explained."""
    B = x.shape[0]
    if B == 0:
        return
    p = perm.long()
    ok = []
    counts = torch.zeros(B, dtype=torch.int64, device=perm.device)
    in_range = (p >= 0) & (p < B)
    counts.index_add_(0, p.clamp(0, B - 1), in_range.long())
    ok.append(in_range.all())
    ok.append((counts == 1).all())
    ok.append(p.clamp(0, B - 1)[p.clamp(0, B - 1)].eq(torch.arange(B, device=p.device)).all() if inplace else None)
    ok.append(((lam >= 0) & (lam <= 1)).all())  # NaN fails both comparisons
    if target.dtype in FLOAT_DTYPES:
        ok.append(None)
    else:
        ok.append(((target >= 0) & (target < num_classes)).all())
    if boxes is not None:
        spatial = tuple(x.shape[2:])
        b = boxes.long()
        good = torch.ones(B, dtype=torch.bool, device=b.device)
        for d, size in enumerate(spatial):
            good = good & (b[:, 2 * d] >= 0) & (b[:, 2 * d] <= b[:, 2 * d + 1]) & (b[:, 2 * d + 1] <= size)
        no_box = (b == -1).all(dim=1)
        ok.append((good | no_box).all())
    else:
        ok.append(None)
    if mean is not None:
        ok.append(torch.isfinite(mean).all() & torch.isfinite(std).all() & (std != 0).all())
    else:
        ok.append(None)
    flags = [f for f in ok if f is not None]
    if bool(torch.stack(flags).all()):
        return
    # Slow path: something failed; find it and name it.
    pl = p.tolist()
    for i, v in enumerate(pl):
        if not 0 <= v < B:
            _fail(ValueError, f"perm[{i}] = {v} is out of range [0, {B})")
    seen = set()
    for v in pl:
        if v in seen:
            _fail(ValueError, f"perm is not a permutation: {v} appears twice")
        seen.add(v)
    if inplace:
        for i, v in enumerate(pl):
            if pl[v] != i:
                _fail(
                    ValueError,
                    f"inplace=True needs perm to be an involution (perm[perm[i]] == i), "
                    f"but perm[{i}] = {v} and perm[{v}] = {pl[v]}",
                )
    for i, v in enumerate(lam.tolist()):
        if not 0.0 <= v <= 1.0:
            _fail(ValueError, f"lam[{i}] = {v} must be in [0, 1]")
    if target.dtype not in FLOAT_DTYPES:
        check_class_ids(target, num_classes)
    if boxes is not None:
        for i, row in enumerate(boxes.tolist()):
            if all(v == -1 for v in row):
                continue
            for d, size in enumerate(spatial):
                lo, hi = row[2 * d], row[2 * d + 1]
                if not 0 <= lo <= hi <= size:
                    _fail(ValueError, box_error(i, row, spatial, d))
    if mean is not None:
        for name, t in (("mean", mean), ("std", std)):
            for c, v in enumerate(t.tolist()):
                if v != v or v in (float("inf"), float("-inf")) or (name == "std" and v == 0):
                    _fail(ValueError, f"{name}[{c}] = {v} must be finite" + (" and nonzero" if name == "std" else ""))
