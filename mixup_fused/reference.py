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


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boolean ``[B, 1, H, W]``: True inside each sample's half-open box ``(y0, y1, x0, x1)``."""
    boxes = boxes.long()
    ys = torch.arange(height, device=boxes.device).view(1, height, 1)
    xs = torch.arange(width, device=boxes.device).view(1, 1, width)
    y0, y1, x0, x1 = (boxes[:, j].view(-1, 1, 1) for j in range(4))
    inside = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
    return inside.unsqueeze(1)


def mixup_rows(boxes: torch.Tensor) -> torch.Tensor:
    """Boolean ``[B]``: rows marked ``NO_BOX`` (all -1) are mixed with lam, not cut."""
    return (boxes == -1).all(dim=1)


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
) -> torch.Tensor:
    """Mixup (``lam[i] * x[i] + (1 - lam[i]) * x[perm[i]]``) or, with ``boxes``,
    CutMix (``x[perm[i]]`` inside box i, ``x[i]`` outside). A box row of all -1
    (``NO_BOX``) mixes that sample with lam instead, so one call can mix some
    samples and cut others. Differentiable."""
    out_dtype = out_dtype or (torch.float32 if x.dtype == torch.uint8 else x.dtype)
    dt = torch.float64 if torch.float64 in (x.dtype, out_dtype) else torch.float32
    xf = normalize_reference(x, mean, std, dt) if mean is not None else x.to(dt)
    xf = xf.to(dt)
    shape = (-1,) + (1,) * (x.dim() - 1)
    w_self, w_part = (w.view(shape) for w in weights(lam, dt))
    mixed = w_self * xf + w_part * xf[perm]
    if boxes is not None:
        cut = torch.where(box_mask(boxes, x.shape[2], x.shape[3]), xf[perm], xf)
        mixed = torch.where(mixup_rows(boxes).view(-1, 1, 1, 1), mixed, cut)
    return mixed.to(out_dtype)


def kept_in_place(
    perm: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor | None = None, f64: bool = False
) -> torch.Tensor:
    """Rows that an in-place mix leaves untouched, bit for bit: rows blended
    with their partner's weight exactly 0 (``1 - lam`` as the kernels use it,
    float32 unless computing in float64), as timm skips lam == 1
    (``1 * a + 0 * b`` is not ``a`` when ``b`` is inf or NaN, or ``a`` is -0.0)."""
    one = weights(lam, torch.float64 if f64 else torch.float32)[1] == 0.0
    if boxes is not None:
        one = one & mixup_rows(boxes)
    return one


def mix_inplace_reference(
    x: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor | None = None
) -> torch.Tensor:
    """The in-place mix as the kernels make it (``perm`` an involution): every
    row becomes its mix, except the rows :func:`kept_in_place`. Returns ``x``."""
    out = mix_images_reference(x, perm, lam, boxes)
    keep = kept_in_place(perm, lam, boxes, f64=x.dtype == torch.float64)
    return x.copy_(torch.where(keep.view((-1,) + (1,) * (x.dim() - 1)), x, out))


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """The contract: mixed images and mixed, smoothed float32 targets."""
    lam = torch.as_tensor(lam, dtype=torch.float64, device=x.device).expand(x.shape[0])
    x_out = mix_images_reference(x, perm, lam, boxes, mean, std, out_dtype)
    y_out = mix_targets_reference(target, perm, lam, num_classes, label_smoothing)
    return x_out, y_out


def mix_backward_reference(
    grad: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor, boxes: torch.Tensor | None = None
) -> torch.Tensor:
    """Gradient of the image mix with respect to ``x``, written out.

    With ``q = perm^-1``: ``grad[k] = lam[k] g[k] + (1 - lam[q[k]]) g[q[k]]``;
    for CutMix, ``g[k]`` outside box k plus ``g[q[k]]`` inside box q[k].
    """
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    dt = compute_dtype(grad.dtype)
    g = grad.to(dt)
    w_self, w_part = (w.view((-1,) + (1,) * (grad.dim() - 1)) for w in weights(lam, dt))
    own = w_self * g
    other = w_part[inv] * g[inv]
    if boxes is not None:
        inside = box_mask(boxes, grad.shape[2], grad.shape[3])
        mix_row = mixup_rows(boxes).view(-1, 1, 1, 1)
        own = torch.where(mix_row, own, torch.where(inside, 0.0, g))
        other = torch.where(mix_row[inv], other, torch.where(inside[inv], g[inv], 0.0))
    return (own + other).to(grad.dtype)


def collate_mix_reference(
    samples: list[torch.Tensor],
    perm: torch.Tensor,
    w_self: torch.Tensor,
    w_part: torch.Tensor,
    boxes: torch.Tensor | None,
    rows: int,
) -> torch.Tensor:
    """Collate-time mixing of uint8 ``[C, H, W]`` samples (``FastCollateMixup``):
    row ``i < rows`` is ``rint(w_self[i] * x[i] + w_part[i] * x[perm[i]])`` in
    float32 (ties to even, as timm rounds), or, for a row with a box other than
    ``NO_BOX``, ``x[i]`` with ``x[perm[i]]`` inside the box. uint8 ``[rows, C, H, W]``."""
    x = torch.stack(samples)
    shape = (-1, 1, 1, 1)
    xf = x.float()
    blended = torch.round(xf * w_self.float().view(shape) + xf[perm] * w_part.float().view(shape)).clamp(0, 255)
    out = blended.to(torch.uint8)
    if boxes is not None:
        cut = torch.where(box_mask(boxes, x.shape[2], x.shape[3]), x[perm], x)
        out = torch.where(mixup_rows(boxes).view(shape), out, cut)
    return out[:rows]
