"""Free-form cut masks: FMix and ClassMix.

A cut mask is bool ``[B, *spatial]`` (1, 2 or 3 spatial dims): True where
sample ``i`` takes the pixel of its partner ``perm[i]``, False where it keeps
its own, over all channels. The weight of the sample's own target is then the
fraction of False pixels, :func:`mask_lam` (``lam`` means the weight of the
sample itself everywhere in this library, as with boxes).

* :func:`fmix_masks`: FMix (Harris et al. 2020, "FMix: Enhancing Mixed Sample
  Data Augmentation"): a threshold of low-frequency Gaussian noise, with a
  True area of exactly ``round((1 - lam) * N)`` pixels.
* :func:`classmix_masks`: ClassMix (Olsson et al. 2021, "ClassMix:
  Segmentation-Based Data Augmentation for Semi-Supervised Learning"): the
  pixels of half the classes of the partner's label map.

Both draw from a ``torch.Generator`` (or torch's default one) on the tensors'
device, vectorised over the batch.
"""

from __future__ import annotations

import math
import numbers
import operator

import torch

from .params import spatial_sizes

__all__ = ["classmix_masks", "fmix_masks", "mask_lam"]


def _draw_device(generator: torch.Generator | None, device) -> torch.device:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"mixup_fused: generator must be a torch.Generator, got {type(generator).__name__}")
    if device is None:
        return generator.device if generator is not None else torch.device("cpu")
    device = torch.device(device)
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"mixup_fused: generator is on {generator.device} but device is {device}")
    return device


def _mask_lams(lam, batch_size: int, device: torch.device) -> torch.Tensor:
    """lam as float64 ``[B]`` on ``device``; values in [0, 1] (checked where it costs no host read)."""
    if isinstance(lam, torch.Tensor):
        if not lam.is_floating_point():
            raise TypeError(f"mixup_fused: lam must be a float or a floating tensor [B], got dtype {lam.dtype}")
        if lam.dim() > 1 or (lam.dim() == 1 and lam.shape[0] != batch_size):
            raise ValueError(
                f"mixup_fused: lam must be a float or a tensor of shape [{batch_size}], got shape {tuple(lam.shape)}"
            )
        if lam.device.type == "cpu" and lam.numel() and not bool(((lam >= 0) & (lam <= 1)).all()):
            raise ValueError(f"mixup_fused: lam must lie in [0, 1], got {lam.tolist()}")
        return lam.to(device=device, dtype=torch.float64).expand(batch_size)
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
        raise TypeError(f"mixup_fused: lam must be a float or a floating tensor [B], got {type(lam).__name__}")
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"mixup_fused: lam must lie in [0, 1], got {lam}")
    return torch.full((batch_size,), float(lam), dtype=torch.float64, device=device)


def _low_freq_field(
    batch_size: int, sizes: tuple[int, ...], decay_power: float, generator: torch.Generator | None, device
) -> torch.Tensor:
    """FMix's grey-scale source: float32 ``[B, *sizes]``, the real inverse FFT
    of a complex Gaussian spectrum over the rfft frequency grid scaled by
    ``1 / max(|f|, f0) ** decay_power``, ``f0 = 1 / max(sizes)`` (|f| in cycles
    per pixel). The scale is divided by its largest value ``f0 ** -decay_power``:
    the same field up to a constant factor, which keeps float32 in range for
    any decay and leaves the ranking of the pixels unchanged."""
    axes = [torch.fft.fftfreq(s, device=device) for s in sizes[:-1]] + [torch.fft.rfftfreq(sizes[-1], device=device)]
    grid = torch.meshgrid(*axes, indexing="ij")
    freq = torch.sqrt(sum(f * f for f in grid))
    lowest = 1.0 / max(sizes)
    scale = (freq.clamp_min(lowest) / lowest).pow(-float(decay_power))
    gaussian = torch.randn((batch_size, *freq.shape, 2), generator=generator, device=device)
    spectrum = torch.view_as_complex(gaussian) * scale
    return torch.fft.irfftn(spectrum, s=sizes, dim=tuple(range(1, len(sizes) + 1)))


def _top_pixels(field: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """bool, shaped as ``field``: True on the ``counts[i]`` largest values of row ``i``
    (exactly that many, ties broken by position)."""
    flat = field.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    taken = torch.arange(flat.shape[1], device=flat.device) < counts.unsqueeze(1)
    return torch.empty_like(taken).scatter_(1, order, taken).view(field.shape)


def fmix_masks(
    batch_size: int,
    spatial_shape,
    lam,
    *,
    decay_power: float = 3.0,
    max_soft: float = 0.0,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """FMix cut masks: bool ``[B, *spatial_shape]`` (1, 2 or 3 spatial dims).

    Per row: a complex Gaussian spectrum over the rfft frequency grid, scaled
    by ``1 / max(freq, 1 / max(spatial_shape)) ** decay_power``, back through
    the real inverse FFT (low-frequency noise); the mask is True on its
    ``round((1 - lam) * N)`` largest pixels (``N`` the pixels of a row,
    round half to even as Python's ``round``), exactly that many.

    The paper binarises the other way round: it sets the top ``lam * N``
    pixels to 1 and keeps the sample's own pixels where the mask is 1. Here
    True means the pixel is taken from the partner, so the True area is
    ``1 - lam`` of the image and ``lam`` stays the weight of the sample
    itself; the noise is symmetric under negation, so the masks have the
    paper's distribution. The paper picks ``ceil`` or ``floor`` of the count
    at random; here it is rounded, so that the area is a function of lam.

    Targets must be weighted with the area actually cut, which differs from
    lam by the rounding to whole pixels: ``mask_lam(mask)`` (= ``1 -
    round((1 - lam) * N) / N``, float64 ``[B]``).

    Args:
        batch_size: ``B``, the number of masks.
        spatial_shape: ``(T,)``, ``(H, W)`` or ``(D, H, W)``.
        lam: a float in [0, 1] (every row) or a floating tensor ``[B]`` (one per row).
        decay_power: the spectrum's decay exponent (the paper's ``decay_power``, 3 by
            default); larger gives smoother, blobbier masks, 0 white noise.
        max_soft: must be 0: the op takes binary cut masks (a soft FMix mask
            would be a per-pixel blend, not a cut).
        generator: the ``torch.Generator`` to draw from (default: torch's default one).
        device: where the masks are made (default: the generator's device, else CPU).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 0:
        raise ValueError(f"mixup_fused: batch_size must be an int >= 0, got {batch_size!r}")
    batch_size = int(batch_size)
    sizes = spatial_sizes(spatial_shape, "spatial_shape")
    if not (isinstance(decay_power, numbers.Real) and math.isfinite(decay_power) and decay_power >= 0):
        raise ValueError(f"mixup_fused: decay_power must be a finite number >= 0, got {decay_power!r}")
    if max_soft != 0.0:
        raise ValueError(
            f"mixup_fused: max_soft must be 0.0 (the op takes binary cut masks; a soft FMix mask is a "
            f"per-pixel blend), got {max_soft!r}"
        )
    device = _draw_device(generator, device)
    lam = _mask_lams(lam, batch_size, device)
    if batch_size == 0:  # (an FFT of no rows is refused by some backends)
        return torch.zeros((0, *sizes), dtype=torch.bool, device=device)
    field = _low_freq_field(batch_size, sizes, decay_power, generator, device)
    counts = torch.round((1.0 - lam) * math.prod(sizes)).long()
    return _top_pixels(field, counts)


def mask_lam(cut_mask: torch.Tensor) -> torch.Tensor:
    """The weight of each sample's own target for a cut mask: float64 ``[B]``,
    ``1 - (True pixels) / N`` (the arithmetic of a box's ``1 - area / (H * W)``)."""
    if not isinstance(cut_mask, torch.Tensor) or cut_mask.dtype != torch.bool or cut_mask.dim() < 2:
        got = (
            f"dtype {cut_mask.dtype}, shape {tuple(cut_mask.shape)}"
            if isinstance(cut_mask, torch.Tensor)
            else type(cut_mask).__name__
        )
        raise TypeError(f"mixup_fused: cut_mask must be a bool tensor [B, *spatial], got {got}")
    n = math.prod(cut_mask.shape[1:])
    return 1.0 - cut_mask.flatten(1).sum(1, dtype=torch.float64) / float(max(n, 1))


def _label_maps(masks) -> torch.Tensor:
    """``masks`` as ``[B, *spatial]``: dim 1 of size 1 of a 3- to 5-dim map is its channel dim."""
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"mixup_fused: masks must be an integer tensor [B, *spatial], got {type(masks).__name__}")
    if masks.is_floating_point() or masks.is_complex() or masks.dtype == torch.bool:
        raise TypeError(f"mixup_fused: masks must be an integer label map, got dtype {masks.dtype}")
    labels = masks.squeeze(1) if masks.dim() >= 3 and masks.shape[1] == 1 else masks
    if not 2 <= labels.dim() <= 4:
        raise ValueError(
            "mixup_fused: masks must be [B, *spatial] or [B, 1, *spatial] with 1 to 3 spatial dims, "
            f"got shape {tuple(masks.shape)}"
        )
    return labels


def _partner_index(perm, batch_size: int, device: torch.device) -> torch.Tensor:
    if not isinstance(perm, torch.Tensor):
        raise TypeError(f"mixup_fused: perm must be an integer tensor [B], got {type(perm).__name__}")
    if perm.is_floating_point() or perm.is_complex() or perm.dtype == torch.bool:
        raise TypeError(f"mixup_fused: perm must be an integer tensor [B], got dtype {perm.dtype}")
    if perm.shape != (batch_size,):
        raise ValueError(
            f"mixup_fused: perm must have shape [{batch_size}] (one partner per row of masks), got {tuple(perm.shape)}"
        )
    if perm.device != device:
        raise ValueError(f"mixup_fused: perm is on {perm.device} but masks is on {device}")
    perm = perm.long()
    if perm.device.type == "cpu" and perm.numel() and not bool(((perm >= 0) & (perm < batch_size)).all()):
        raise ValueError(f"mixup_fused: perm must hold indices in [0, {batch_size}), got {perm.tolist()}")
    return perm


def classmix_masks(
    masks: torch.Tensor,
    perm: torch.Tensor,
    *,
    ignore_index: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ClassMix cut masks from label maps: bool ``[B, *spatial]``.

    For row ``i`` the partner's map ``masks[perm[i]]`` holds ``n`` classes
    (``ignore_index`` not counted); ``n // 2`` of them (floor, as the authors'
    code: ``int((n - n % 2) / 2)``; a map with a single class cuts nothing)
    are drawn uniformly without replacement, and the mask is True where the
    partner's map has one of them: the partner's pixels of those classes are
    pasted onto image ``i``. The label maps move with the pixels, so the
    mixed map of row ``i`` is ``where(mask, masks[perm[i]], masks[i])``; the
    image-level weight of row ``i`` is :func:`mask_lam`.

    Vectorised over the batch: one random score per (row, class) ranks the
    partner's classes, the ``n // 2`` lowest are taken. Finding the classes
    present (``torch.unique``) reads their number back to the host once.

    Args:
        masks: integer label maps ``[B, *spatial]`` or ``[B, 1, *spatial]`` (1 to 3
            spatial dims; dim 1 of size 1 of a 3- to 5-dim map is read as the
            channel dim and dropped).
        perm: integer ``[B]`` on masks' device: the partner of each row.
        ignore_index: a label that is never selected (e.g. 255), or None.
        generator: a ``torch.Generator`` on masks' device (default: torch's default one).
    """
    labels = _label_maps(masks)
    B, spatial = labels.shape[0], labels.shape[1:]
    device = labels.device
    perm = _partner_index(perm, B, device)
    if ignore_index is not None:
        try:
            ignore_index = operator.index(ignore_index)
        except TypeError:
            raise TypeError(f"mixup_fused: ignore_index must be an int or None, got {ignore_index!r}") from None
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"mixup_fused: generator must be a torch.Generator, got {type(generator).__name__}")
        if generator.device.type != device.type:
            raise ValueError(f"mixup_fused: generator is on {generator.device} but masks is on {device}")
    flat = labels.flatten(1)
    classes, class_ids = torch.unique(flat, sorted=True, return_inverse=True)  # class_ids: [B, N] in 0..U-1
    present = torch.zeros((B, classes.numel()), dtype=torch.bool, device=device).scatter_(1, class_ids, True)
    if ignore_index is not None:
        present &= classes != ignore_index
    partner_present = present[perm]
    picks = partner_present.sum(1) // 2
    scores = torch.rand(partner_present.shape, dtype=torch.float64, generator=generator, device=device)
    scores = scores.masked_fill(~partner_present, 2.0)  # absent classes rank last
    rank = torch.empty(partner_present.shape, dtype=torch.int64, device=device)
    rank.scatter_(1, scores.argsort(dim=1), torch.arange(classes.numel(), device=device).expand_as(rank))
    chosen = partner_present & (rank < picks.unsqueeze(1))
    return chosen.gather(1, class_ids[perm]).view(B, *spatial)
