"""Pure-PyTorch reference of the fused mix: the oracle for every test and the
``reference`` provider of every benchmark.

Readable, float64-capable and never optimised. It computes in float32 for
half-precision storage (float64 for float64) and rounds once on the way out,
which is also what every kernel does.
"""

from __future__ import annotations

import torch

NO_BOX = (-1, -1, -1, -1)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def smooth_targets(target: torch.Tensor, num_classes: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """Smoothed float32 targets ``[B, K]`` (timm's convention).

    Class ids become ``onehot * (1 - eps) + eps / K``: off value ``eps / K`` and
    on value ``1 - eps + eps / K``. Soft rows ``t`` become ``t * (1 - eps) + eps / K``.
    """
    off_value = label_smoothing / num_classes
    if target.dim() == 1:
        on_value = 1.0 - label_smoothing + off_value
        out = torch.full((target.shape[0], num_classes), off_value, dtype=torch.float32, device=target.device)
        return out.scatter_(1, target.long().view(-1, 1), on_value)
    return target.float() * (1.0 - label_smoothing) + off_value


def weights(lam: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights of a row and of its partner: ``lam`` and ``1 - lam``, each
    rounded once from the lam given to ``dtype`` (timm's and torchvision's
    arithmetic: a Python-float lam is a float64 tensor here)."""
    return lam.to(dtype), (1.0 - lam.double()).to(dtype)


def mix_targets_reference(
    target: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor, num_classes: int, label_smoothing: float = 0.0
) -> torch.Tensor:
    """``y[i] = lam[i] * s(t[i]) + (1 - lam[i]) * s(t[perm[i]])`` in float32."""
    s = smooth_targets(target, num_classes, label_smoothing)
    w_self, w_part = weights(lam, torch.float32)
    return s * w_self.view(-1, 1) + s[perm] * w_part.view(-1, 1)


def box_mask(boxes: torch.Tensor, spatial) -> torch.Tensor:
    """Boolean ``[B, 1, *spatial]``: True inside each sample's half-open box,
    ``(lo, hi)`` per spatial dim in dim order (2-D: ``(y0, y1, x0, x1)``)."""
    boxes = boxes.long()
    n = len(spatial)
    inside = torch.ones((boxes.shape[0],) + (1,) * n, dtype=torch.bool, device=boxes.device)
    for d, size in enumerate(spatial):
        shape = [1] * (n + 1)
        shape[d + 1] = size
        pos = torch.arange(size, device=boxes.device).view(shape)
        lo = boxes[:, 2 * d].view((-1,) + (1,) * n)
        hi = boxes[:, 2 * d + 1].view((-1,) + (1,) * n)
        inside = inside & (pos >= lo) & (pos < hi)
    return inside.unsqueeze(1)


def mixup_rows(boxes: torch.Tensor) -> torch.Tensor:
    """Boolean ``[B]``: rows marked ``NO_BOX`` (all -1) are mixed with lam, not cut."""
    return (boxes == -1).all(dim=1)


def cut_region(
    x_shape, boxes: torch.Tensor | None = None, cut_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Where each row takes its partner: ``(inside, blended)``.

    ``inside`` is boolean ``[B, 1, *spatial]`` (True: the pixel comes from the
    partner) and ``blended`` boolean ``[B]`` (True: the row is mixed with lam,
    ``inside`` does not apply). From ``boxes`` (``NO_BOX`` rows are blended),
    from a free-form ``cut_mask`` ``[B, *spatial]`` or ``[B, 1, *spatial]``
    (nonzero: cut; no row is blended), or ``(None, None)`` for plain mixup."""
    spatial = tuple(x_shape[2:])
    if cut_mask is not None:
        inside = cut_mask.reshape((cut_mask.shape[0], 1) + spatial) != 0
        return inside, torch.zeros(cut_mask.shape[0], dtype=torch.bool, device=cut_mask.device)
    if boxes is not None:
        return box_mask(boxes, spatial), mixup_rows(boxes)
    return None, None


def _row_view(v: torch.Tensor, dim: int) -> torch.Tensor:
    return v.view((-1,) + (1,) * (dim - 1))


def normalize_reference(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``(x - mean[c]) / std[c]`` in float32 (float64 for float64 input, or
    in ``dtype``: the mix computes in float64 when the output is float64)."""
    dt = dtype or compute_dtype(x.dtype)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x.to(dt) - mean.to(dt).view(shape)) / std.to(dt).view(shape)


def mix_images_reference(
    x: torch.Tensor,
    perm: torch.Tensor,
    lam: torch.Tensor,
    boxes: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    cut_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mixup (``lam[i] * x[i] + (1 - lam[i]) * x[perm[i]]``) or, with ``boxes``
    (``[B, 2n]`` for ``n`` spatial dims), CutMix (``x[perm[i]]`` inside box i,
    ``x[i]`` outside). A box row of all -1 (``NO_BOX``) mixes that sample with
    lam instead, so one call can mix some samples and cut others. With a
    free-form ``cut_mask`` instead of boxes, ``x[perm[i]]`` where it is
    nonzero, ``x[i]`` elsewhere, over all channels. Differentiable."""
    out_dtype = out_dtype or (torch.float32 if x.dtype == torch.uint8 else x.dtype)
    dt = torch.float64 if torch.float64 in (x.dtype, out_dtype) else torch.float32
    xf = normalize_reference(x, mean, std, dt) if mean is not None else x.to(dt)
    xf = xf.to(dt)
    shape = (-1,) + (1,) * (x.dim() - 1)
    w_self, w_part = (w.view(shape) for w in weights(lam, dt))
    mixed = w_self * xf + w_part * xf[perm]
    inside, blended = cut_region(x.shape, boxes, cut_mask)
    if inside is not None:
        cut = torch.where(inside, xf[perm], xf)
        mixed = torch.where(_row_view(blended, x.dim()), mixed, cut)
    return mixed.to(out_dtype)


def mix_maps_reference(
    masks: torch.Tensor,
    perm: torch.Tensor,
    x_shape,
    boxes: torch.Tensor | None = None,
    cut_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Label maps (``[B, *spatial]`` or ``[B, 1, *spatial]``, any integer
    dtype) mixed with the images of shape ``x_shape``: a pixel inside row i's
    cut (box or cut mask) takes the partner's label, every other pixel, and
    every row blended with lam (``NO_BOX``, or no boxes at all), keeps its
    own. Labels are moved, never blended; ignore labels move like any other.
    Same shape and dtype as ``masks``."""
    inside, blended = cut_region(x_shape, boxes, cut_mask)
    if inside is None:
        return masks.clone()
    m = masks.reshape(inside.shape)
    take = inside & ~_row_view(blended, inside.dim())
    return torch.where(take, m[perm], m).reshape(masks.shape)


def kept_in_place(
    perm: torch.Tensor,
    lam: torch.Tensor,
    boxes: torch.Tensor | None = None,
    f64: bool = False,
    cut_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rows that an in-place mix leaves untouched, bit for bit: rows blended
    with their partner's weight exactly 0 (``1 - lam`` as the kernels use it,
    float32 unless computing in float64), as timm skips lam == 1
    (``1 * a + 0 * b`` is not ``a`` when ``b`` is inf or NaN, or ``a`` is -0.0)."""
    one = weights(lam, torch.float64 if f64 else torch.float32)[1] == 0.0
    if cut_mask is not None:
        return torch.zeros_like(one)  # no row is blended: every row is its cut
    if boxes is not None:
        one = one & mixup_rows(boxes)
    return one


def mix_inplace_reference(
    x: torch.Tensor,
    perm: torch.Tensor,
    lam: torch.Tensor,
    boxes: torch.Tensor | None = None,
    cut_mask: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
) -> torch.Tensor:
    """The in-place mix as the kernels make it (``perm`` an involution): every
    row becomes its mix, except the rows :func:`kept_in_place`; label maps
    ``masks``, when given, are mixed in place too. Returns ``x``."""
    if masks is not None:
        masks.copy_(mix_maps_reference(masks, perm, x.shape, boxes, cut_mask))
    out = mix_images_reference(x, perm, lam, boxes, cut_mask=cut_mask)
    keep = kept_in_place(perm, lam, boxes, f64=x.dtype == torch.float64, cut_mask=cut_mask)
    return x.copy_(torch.where(_row_view(keep, x.dim()), x, out))


def mix_reference(
    x: torch.Tensor,
    target: torch.Tensor,
    perm: torch.Tensor,
    lam: torch.Tensor,
    *,
    num_classes: int,
    label_smoothing: float = 0.0,
    boxes: torch.Tensor | None = None,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    cut_mask: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
):
    """The contract: mixed images and mixed, smoothed float32 targets, and
    the mixed label maps when ``masks`` is given: ``(x_out, y_out)`` or
    ``(x_out, y_out, masks_out)``."""
    lam = torch.as_tensor(lam, dtype=torch.float64, device=x.device).expand(x.shape[0])
    x_out = mix_images_reference(x, perm, lam, boxes, mean, std, out_dtype, cut_mask)
    y_out = mix_targets_reference(target, perm, lam, num_classes, label_smoothing)
    if masks is None:
        return x_out, y_out
    return x_out, y_out, mix_maps_reference(masks, perm, x.shape, boxes, cut_mask)


def mix_backward_reference(
    grad: torch.Tensor,
    perm: torch.Tensor,
    lam: torch.Tensor,
    boxes: torch.Tensor | None = None,
    cut_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gradient of the image mix with respect to ``x``, written out.

    With ``q = perm^-1``: ``grad[k] = lam[k] g[k] + (1 - lam[q[k]]) g[q[k]]``;
    for CutMix (a box or a cut mask), ``g[k]`` outside cut k plus ``g[q[k]]``
    inside cut q[k].
    """
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    dt = compute_dtype(grad.dtype)
    g = grad.to(dt)
    w_self, w_part = (w.view((-1,) + (1,) * (grad.dim() - 1)) for w in weights(lam, dt))
    own = w_self * g
    other = w_part[inv] * g[inv]
    inside, blended = cut_region(grad.shape, boxes, cut_mask)
    if inside is not None:
        mix_row = _row_view(blended, grad.dim())
        own = torch.where(mix_row, own, torch.where(inside, 0.0, g))
        other = torch.where(mix_row[inv], other, torch.where(inside[inv], g[inv], 0.0))
    return (own + other).to(grad.dtype)


def collate_mix_reference(
    samples: list[torch.Tensor],
    perm: torch.Tensor,
    lam: torch.Tensor,
    boxes: torch.Tensor | None,
    rows: int,
    target: torch.Tensor,
    num_classes: int,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate-time mixing of uint8 ``[C, H, W]`` samples (``FastCollateMixup``):
    row ``i < rows`` is ``rint(w_self[i] * x[i] + w_part[i] * x[perm[i]])`` in
    float32 with timm's weights (:func:`weights`: ``lam`` and ``1 - lam``, each
    rounded once to float32; ties to even, as timm rounds), or, for a row with
    a box other than ``NO_BOX``, ``x[i]`` with ``x[perm[i]]`` inside the box.
    Returns uint8 ``[rows, C, H, W]`` and the targets ``w_self[i] * s(t[i]) +
    w_part[i] * s(t[perm[i]])``, float32 ``[rows, K]``."""
    x = torch.stack(samples)
    shape = (-1, 1, 1, 1)
    xf = x.float()
    w_self, w_part = weights(lam, torch.float32)
    blended = torch.round(xf * w_self.view(shape) + xf[perm] * w_part.view(shape)).clamp(0, 255)
    out = blended.to(torch.uint8)
    if boxes is not None:
        cut = torch.where(box_mask(boxes, x.shape[2:]), x[perm], x)
        out = torch.where(mixup_rows(boxes).view(shape), out, cut)
    y = mix_targets_reference(target, perm, lam, num_classes, label_smoothing)
    return out[:rows], y[:rows]
