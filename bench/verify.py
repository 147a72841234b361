"""Checks every provider's output against ``mixup_fused.reference`` before it is timed.

Providers whose random draws are known (ours, naive, torch.compile, the
torchvision op sequence, the Dataset, kornia's recorded parameters) are compared
with ``mix_reference`` given those draws. Providers that draw internally
(timm's ``Mixup``, our drop-in classes) are checked from their output: lam is
fitted from the images by least squares (mixup) or the box is read from the
pixels that changed (CutMix), then images and targets are compared with the
reference given those draws.
"""

from __future__ import annotations

import torch

from mixup_fused.reference import (
    mix_backward_reference,
    mix_images_reference,
    mix_inplace_reference,
    mix_maps_reference,
    mix_reference,
    mix_targets_reference,
)


class VerificationError(AssertionError):
    pass


def tolerance(dtype: torch.dtype, scale: float) -> tuple[float, float]:
    """(atol, rtol) for a result stored in ``dtype`` whose inputs reach ``scale``:
    a few units in the last place of the largest input (several roundings in the
    peers' multi-pass op sequences)."""
    eps = torch.finfo(dtype).eps
    return 4 * eps * max(scale, 1.0), 2 * eps


def _compare(name: str, got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> float:
    if got.shape != want.shape:
        raise VerificationError(f"{name}: shape {list(got.shape)}, expected {list(want.shape)}")
    if got.dtype != want.dtype:
        raise VerificationError(f"{name}: dtype {got.dtype}, expected {want.dtype}")
    # float32 is exact enough here: every tolerance is far above float32 rounding.
    cdt = torch.float64 if torch.float64 in (got.dtype, want.dtype) else torch.float32
    g, w = got.detach().to(cdt), want.detach().to(cdt)
    err = (g - w).abs_()
    bad = err > w.abs().mul_(rtol).add_(atol)
    if bool(bad.any()):
        i = int(bad.flatten().nonzero()[0])
        raise VerificationError(
            f"{name}: {int(bad.sum())} of {bad.numel()} elements differ from the reference "
            f"(first at flat index {i}: got {g.flatten()[i].item():.6g}, expected {w.flatten()[i].item():.6g}; "
            f"atol={atol:.3g}, rtol={rtol:.3g})"
        )
    return float(err.max()) if err.numel() else 0.0


def check_mix(
    inp,
    x_out: torch.Tensor,
    y_out: torch.Tensor | None,
    perm: torch.Tensor,
    lam,
    *,
    boxes: torch.Tensor | None = None,
    label_smoothing: float | None = None,
    y_atol: float = 2e-6,
    rows: int | None = None,
) -> dict:
    """Compare ``(x_out, y_out)`` with ``mix_reference`` of the case's inputs
    (only its first ``rows`` rows when given: timm's 'half' mode)."""
    case = inp.case
    ls = case.label_smoothing if label_smoothing is None else label_smoothing
    lam_t = torch.as_tensor(lam, dtype=torch.float64, device=inp.x.device).expand(case.batch)
    want_x, want_y = _reference(inp, perm, lam_t, boxes, ls)
    if rows is not None:
        want_x, want_y = want_x[:rows], want_y[:rows]
    atol, rtol = tolerance(case.out_dtype, _scale(inp))
    result = {"max_abs_err_x": _compare("x_out", x_out, want_x, atol, rtol)}
    if y_out is not None:
        result["max_abs_err_y"] = _compare("y_out", y_out.float(), want_y, y_atol, 0.0)
    return result


def _reference(inp, perm, lam_t, boxes, ls):
    """``mix_reference`` of the case's inputs, cached per draws (many providers share them)."""

    def key_of(t):
        return None if t is None else (t.dtype, tuple(t.shape), t.detach().cpu().numpy().tobytes())

    key = ("reference", key_of(perm), key_of(lam_t.double()), key_of(boxes), ls)
    cache = inp.extra.setdefault("reference_cache", {})
    if key not in cache:
        if len(cache) >= 4:
            cache.clear()
        case = inp.case
        # Draws made on the host (Mixup.sample_params) index a batch on any device.
        perm = perm.to(inp.x.device)
        boxes = None if boxes is None else boxes.to(inp.x.device)
        cache[key] = mix_reference(
            inp.x,
            inp.target,
            perm,
            lam_t,
            num_classes=case.num_classes,
            label_smoothing=ls,
            boxes=boxes,
            mean=inp.mean,
            std=inp.std,
            out_dtype=case.out_dtype,
        )
    return cache[key]


def _scale(inp) -> float:
    if "scale" not in inp.extra:
        inp.extra["scale"] = float(inp.x_float().abs().max())
    return inp.extra["scale"]


def fit_lam(x: torch.Tensor, x_pair: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Per-sample least-squares lam of ``out = lam * x + (1 - lam) * x_pair``."""
    B = x.shape[0]
    a = (x.double() - x_pair.double()).reshape(B, -1)
    b = (out.double() - x_pair.double()).reshape(B, -1)
    den = (a * a).sum(1)
    return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.ones_like(den))


def boxes_from_change(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Per-sample half-open bounding box ``(lo, hi)`` per spatial dim of the
    pixels where ``out`` differs from ``x`` (``[B, C, *spatial]``, 1 to 3
    spatial dims); an unchanged sample gets the empty box of zeros."""
    changed = (out != x).any(1)  # [B, *spatial]
    B, n = changed.shape[0], changed.dim() - 1
    boxes = torch.zeros(B, 2 * n, dtype=torch.int64, device=x.device)
    along = [
        changed.any(dim=tuple(e for e in range(1, n + 1) if e != d)) if n > 1 else changed for d in range(1, n + 1)
    ]
    for i in range(B):
        idx = [a[i].nonzero().flatten() for a in along]
        if idx[0].numel():
            boxes[i] = torch.stack([v for ix in idx for v in (ix[0], ix[-1] + 1)])
    return boxes


def cut_fraction(boxes: torch.Tensor, spatial) -> torch.Tensor:
    """Per-row cut volume over the total volume of ``[B, 2n]`` boxes."""
    n = boxes.shape[1] // 2
    volume = torch.ones(boxes.shape[0], dtype=torch.float64, device=boxes.device)
    for d in range(n):
        volume *= (boxes[:, 2 * d + 1] - boxes[:, 2 * d]).double()
    total = 1
    for s in spatial:
        total *= s
    return volume / total


def lam_from_targets(inp, y_out: torch.Tensor, label_smoothing: float, rows: int) -> torch.Tensor:
    """Per-sample lam read off mixed targets: ``y[i, t[i]] = lam * on + (1 - lam) * off``
    (the case's class ids are distinct, so ``t[i] != t[perm[i]]``)."""
    K = inp.case.num_classes
    off = label_smoothing / K
    on = 1.0 - label_smoothing + off
    y_own = y_out.double().gather(1, inp.target[:rows].view(-1, 1)).flatten()
    return (y_own - off) / (on - off)


def check_mix_inferred(
    inp,
    x_out: torch.Tensor,
    y_out: torch.Tensor,
    perm: torch.Tensor,
    *,
    cutmix: bool,
    label_smoothing: float | None = None,
    lam_atol: float = 1e-5,
    y_atol: float = 2e-6,
    rows: int | None = None,
) -> dict:
    """Check a provider that drew its own lam (and box), from its output alone.

    Mixup: lam is fitted from the images and read off the targets; the images
    are compared with the reference at the fitted lam, the targets at the lam
    they carry, and the two lams must agree within ``lam_atol`` (plus the
    fit's own error in half precision). CutMix: the box is the bounding box of
    the changed pixels, and lam the box-area-corrected one. With ``rows``,
    only the first rows are returned and checked; the others keep lam = 1.
    """
    ls = inp.case.label_smoothing if label_smoothing is None else label_smoothing
    if cutmix:
        x = inp.x_float() if inp.case.dtype == torch.uint8 else inp.x
        boxes = boxes_from_change(x, x_out)
        fraction = cut_fraction(boxes, x.shape[2:])
        result = check_mix(inp, x_out, y_out, perm, 1.0 - fraction, boxes=boxes, label_smoothing=ls, y_atol=y_atol)
        result["inferred"] = "boxes from changed pixels"
        result["cut_fraction"] = round(float(fraction.max()), 4)
        return result
    xf = inp.x_float()
    n = inp.case.batch if rows is None else rows
    lam_img = torch.ones(inp.case.batch, dtype=torch.float64, device=xf.device)
    lam_y = lam_img.clone()
    lam_img[:n] = fit_lam(xf[:n], xf[perm][:n], x_out.float())
    lam_y[:n] = lam_from_targets(inp, y_out, ls, n)
    result = check_mix(inp, x_out, None, perm, lam_img, label_smoothing=ls, rows=rows)
    result["max_abs_err_y"] = check_targets(inp, y_out, perm, lam_y, ls, y_atol=y_atol, rows=rows)
    fit_err = 8 * torch.finfo(inp.case.out_dtype).eps if inp.case.out_dtype != torch.float32 else 0.0
    gap = float((lam_img - lam_y).abs().max())
    if gap > lam_atol + fit_err:
        i = int((lam_img - lam_y).abs().argmax())
        raise VerificationError(
            f"the targets carry lam = {lam_y[i].item():.7g} for sample {i} but its image was mixed with "
            f"lam = {lam_img[i].item():.7g} (|difference| {gap:.3g} > {lam_atol + fit_err:.3g})"
        )
    result["max_lam_gap"] = gap
    result["inferred"] = "lam fitted from images and read off targets"
    return result


def check_targets(inp, y_out, perm, lam, label_smoothing: float, y_atol: float = 2e-6, rows=None) -> float:
    lam_t = torch.as_tensor(lam, dtype=torch.float64, device=y_out.device).expand(inp.case.batch)
    want = mix_targets_reference(inp.target, perm, lam_t, inp.case.num_classes, label_smoothing)[:rows]
    return _compare("y_out", y_out.float(), want, y_atol, 0.0)


def check_backward(inp, out: torch.Tensor, grad_h: torch.Tensor, perm, lam) -> dict:
    """Forward against ``mix_reference``, gradient against ``mix_backward_reference``."""
    case = inp.case
    lam_t = torch.as_tensor(lam, dtype=torch.float32, device=out.device).expand(case.batch)
    result = check_mix(inp, out, None, perm, lam_t)
    want = mix_backward_reference(inp.grad, perm, lam_t)
    atol, rtol = tolerance(case.dtype, float(inp.grad.abs().max()))
    result["max_abs_err_grad"] = _compare("grad", grad_h, want, atol, rtol)
    return result


def check_maps(
    inp,
    x_out: torch.Tensor,
    maps_out: torch.Tensor,
    perm: torch.Tensor,
    lam,
    *,
    boxes: torch.Tensor | None = None,
    cut_mask: torch.Tensor | None = None,
    inplace: bool = False,
) -> dict:
    """Images and label maps cut with ``boxes`` or ``cut_mask`` (the case's
    ``inp.maps``; no class targets) against the reference: the in-place one
    (``mix_inplace_reference``) for an in-place provider, ``mix_images_reference``
    and ``mix_maps_reference`` otherwise. Cut pixels and labels are moved,
    never computed: both must match exactly."""
    lam_t = torch.as_tensor(lam, dtype=torch.float64, device=inp.x.device).expand(inp.case.batch)
    if inplace:
        want_maps = inp.maps.clone()
        want_x = mix_inplace_reference(inp.x.clone(), perm, lam_t, boxes, cut_mask=cut_mask, masks=want_maps)
    else:
        want_x = mix_images_reference(inp.x, perm, lam_t, boxes, cut_mask=cut_mask)
        want_maps = mix_maps_reference(inp.maps, perm, inp.x.shape, boxes, cut_mask)
    result = {"max_abs_err_x": _compare("x_out", x_out, want_x, 0.0, 0.0)}
    if maps_out.shape != want_maps.shape or maps_out.dtype != want_maps.dtype:
        raise VerificationError(
            f"maps_out: {maps_out.dtype} {list(maps_out.shape)}, expected {want_maps.dtype} {list(want_maps.shape)}"
        )
    wrong = int((maps_out != want_maps).sum())
    if wrong:
        raise VerificationError(f"maps_out: {wrong} of {maps_out.numel()} labels differ from the reference")
    result["maps_exact"] = True
    cut = cut_mask.reshape(cut_mask.shape[0], -1) if cut_mask is not None else None
    if cut is None and boxes is not None:
        result["cut_fraction"] = round(float(cut_fraction(boxes, inp.x.shape[2:]).mean()), 4)
    elif cut is not None:
        result["cut_fraction"] = round(float(cut.float().mean()), 4)
    return result


# The collate workload's mixer: timm's FastCollateMixup settings of its DeiT-style recipes.
COLLATE_MIX = dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, mode="elem")


def check_collate(inp, collate_fn, seed: int = 1234) -> dict:
    """A FastCollateMixup-style ``collate_fn(samples) -> (uint8 batch, targets)``
    against the reference given the draws it makes: timm's, from numpy's
    global RNG, which ``mixup_fused.FastCollateMixup.sample_params`` makes too."""
    import numpy as np

    from mixup_fused import FastCollateMixup
    from mixup_fused.reference import collate_mix_reference

    c = inp.case
    np.random.seed(seed)
    got_x, got_y = collate_fn(inp.samples)
    np.random.seed(seed)
    draws = FastCollateMixup(num_classes=c.num_classes, label_smoothing=c.label_smoothing, **COLLATE_MIX)
    params = draws.sample_params(c.batch, c.shape[-2:])
    images = [torch.from_numpy(im) for im, _ in inp.samples]
    want_x, want_y = collate_mix_reference(
        images, params.perm, params.lam, params.boxes, c.batch, inp.target.cpu(), c.num_classes, c.label_smoothing
    )
    if not torch.equal(got_x, want_x):
        raise VerificationError(f"collated images: {int((got_x != want_x).sum())} elements differ from the reference")
    err_y = _compare("targets", got_y, want_y, 0.0, 0.0)
    cut = 0 if params.boxes is None else int((params.boxes != -1).any(1).sum())
    return {"max_abs_err_x": 0.0, "max_abs_err_y": err_y, "exact": True, "cut_rows": cut}
