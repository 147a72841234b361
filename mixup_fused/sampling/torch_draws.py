"""Draws from a ``torch.Generator``, vectorised, on any device.

No per-sample Python loop and no host reads, so a CUDA generator gives a
sampling step with no host-device synchronisation (and one that can be
captured in a CUDA graph). The distributions are timm's; the draw order is not.
Boxes have 1, 2 or 3 spatial dims, as in :mod:`.timm`'s ``*_nd`` functions.
"""

from __future__ import annotations

import math

import torch

from .pairing import flip_pairing, half_pairing, random_pairing
from .params import MixParams, MixupConfig, draws_per_row, need_spatial, scatter_rows, spatial_sizes

__all__ = [
    "TorchSampler",
    "box_volumes",
    "cutmix_boxes_and_lam",
    "cutmix_boxes_and_lam_nd",
    "rand_boxes",
    "rand_boxes_minmax",
    "rand_boxes_minmax_nd",
    "rand_boxes_nd",
    "sample_beta",
    "side_ratios",
]


def sample_beta(
    alpha: float,
    size: int,
    *,
    generator: torch.Generator | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``size`` draws from Beta(alpha, alpha) with torch (the Dirichlet sampler
    behind ``torch.distributions.Beta``), on ``device`` (default: the
    generator's). float64 by default, so that small alphas do not round to 0 or 1."""
    if not alpha > 0:
        raise ValueError(f"mixup_fused: Beta alpha must be > 0, got {alpha}")
    if device is None and generator is not None:
        device = generator.device
    concentration = torch.full((size, 2), float(alpha), dtype=dtype, device=device)
    return torch._sample_dirichlet(concentration, generator=generator)[:, 0]


def side_ratios(lam: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """The cut side over the image side, float64, per row: ``(1 - lam) ** (1 / n)``
    for ``n`` spatial dims (2-D: timm's square root)."""
    rest = (1.0 - lam.double()).clamp_min(0.0)
    if spatial_dims == 1:
        return rest
    if spatial_dims == 2:
        return torch.sqrt(rest)
    return rest.pow(1.0 / spatial_dims)


def rand_boxes_nd(spatial_shape, lam: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """timm's ``rand_bbox`` in 1, 2 or 3 spatial dims, for a vector of lam:
    int64 ``[n, 2 * dims]`` rows ``(lo0, hi0, lo1, hi1, ...)`` on lam's device.

    Per dim a cut of ``int(size * ratio)`` (:func:`side_ratios`) around a
    uniform centre (one draw per dim, in dim order), clipped to the image."""
    sizes = spatial_sizes(spatial_shape)
    ratio = side_ratios(lam, len(sizes))
    cuts = [(size * ratio).long() for size in sizes]  # int() truncates; ratio >= 0
    centres = [torch.randint(0, size, lam.shape, generator=generator, device=lam.device) for size in sizes]
    cols = []
    for size, cut, c in zip(sizes, cuts, centres, strict=True):
        cols += [(c - cut // 2).clamp(0, size), (c + (cut + 1) // 2).clamp(0, size)]
    return torch.stack(cols, dim=1)


def rand_boxes(height: int, width: int, lam: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """timm's ``rand_bbox`` for a vector of lam: int64 ``[n, 4]`` rows ``(y0, y1, x0, x1)`` on lam's device."""
    return rand_boxes_nd((height, width), lam, generator=generator)


def rand_boxes_minmax_nd(
    spatial_shape, minmax, n: int, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """timm's ``rand_bbox_minmax`` in 1, 2 or 3 spatial dims, for ``n`` boxes:
    int64 ``[n, 2 * dims]``. Every cut size uniform in ``[int(size * min),
    int(size * max))`` (dim order), then every low uniform in ``[0, size - cut]``."""
    if len(minmax) != 2:
        raise ValueError(f"mixup_fused: cutmix_minmax must be (min, max), got {minmax!r}")
    sizes = spatial_sizes(spatial_shape)
    cuts = [
        torch.randint(int(size * minmax[0]), int(size * minmax[1]), (n,), generator=generator, device=device)
        for size in sizes
    ]
    # Uniform integer in [0, size - cut] with a per-row bound: floor(u * (bound + 1)).
    u = torch.rand((len(sizes), n), dtype=torch.float64, generator=generator, device=device)
    cols = []
    for d, (size, cut) in enumerate(zip(sizes, cuts, strict=True)):
        lo = (u[d] * (size - cut + 1)).long().clamp_max(size - cut)
        cols += [lo, lo + cut]
    return torch.stack(cols, dim=1)


def rand_boxes_minmax(
    height: int, width: int, minmax, n: int, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """timm's ``rand_bbox_minmax`` for ``n`` boxes: int64 ``[n, 4]`` rows ``(y0, y1, x0, x1)``."""
    return rand_boxes_minmax_nd((height, width), minmax, n, generator=generator, device=device)


def box_volumes(boxes: torch.Tensor) -> torch.Tensor:
    """int64 ``[n]``: the cut volume ``prod(hi - lo)`` of each box row ``(lo0, hi0, ...)``."""
    return (boxes[:, 1::2] - boxes[:, 0::2]).prod(dim=1)


def cutmix_boxes_and_lam_nd(
    spatial_shape,
    lam: torch.Tensor,
    ratio_minmax=None,
    correct_lam: bool = True,
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's ``cutmix_bbox_and_lam`` in 1, 2 or 3 spatial dims, for a vector
    of lam: ``(boxes [n, 2 * dims], lam [n])``, lam corrected to
    ``1 - cut volume / total volume`` when ``correct_lam`` or ``ratio_minmax``."""
    sizes = spatial_sizes(spatial_shape)
    if ratio_minmax is not None:
        boxes = rand_boxes_minmax_nd(sizes, ratio_minmax, lam.shape[0], generator=generator, device=lam.device)
    else:
        boxes = rand_boxes_nd(sizes, lam, generator=generator)
    if correct_lam or ratio_minmax is not None:
        lam = 1.0 - box_volumes(boxes).to(lam.dtype) / float(math.prod(sizes))
    return boxes, lam


def cutmix_boxes_and_lam(
    height: int,
    width: int,
    lam: torch.Tensor,
    ratio_minmax=None,
    correct_lam: bool = True,
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's ``cutmix_bbox_and_lam`` for a vector of lam: ``(boxes [n, 4], lam [n])``."""
    return cutmix_boxes_and_lam_nd((height, width), lam, ratio_minmax, correct_lam, generator=generator)


class TorchSampler:
    """Draws from a ``torch.Generator``, vectorised, on the generator's device.

    Per row: ``use_cutmix ~ Bernoulli(switch_prob)`` (when both are on), lam
    from the matching Beta, lam = 1 with probability ``1 - prob``, then a box
    (timm's ``rand_bbox`` / ``rand_bbox_minmax`` distributions) for the rows
    that cut.

    ``host_hints`` (default: True for a CPU generator) reads the drawn values
    back to tell the op what it can skip (no box tensor when nothing is cut,
    no launch when nothing is mixed). It is off for device generators, where
    a read would synchronise.
    """

    def __init__(self, generator: torch.Generator | None = None, *, device=None, host_hints: bool | None = None):
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"mixup_fused: generator must be a torch.Generator, got {type(generator).__name__}")
        if generator is None and device is None:
            raise ValueError("mixup_fused: TorchSampler needs a generator or a device")
        if generator is not None and device is not None and generator.device != torch.device(device):
            raise ValueError(
                f"mixup_fused: generator is on {generator.device} but the draws are wanted on {torch.device(device)}"
            )
        self.generator = generator
        # Without a generator, torch's default generator of ``device`` is used
        # (what CUDA graph capture and torch.compile handle best).
        self.device = generator.device if generator is not None else torch.device(device)
        self.host_hints = self.device.type == "cpu" if host_hints is None else bool(host_hints)

    def sample(self, cfg: MixupConfig, mode: str, batch_size: int, img_size=None, pairing: str = "flip") -> MixParams:
        cfg.check()
        g, dev, B = self.generator, self.device, batch_size
        n = draws_per_row(mode, B)
        if pairing == "random":
            if mode == "half":
                pair = half_pairing(B, shuffle=True, generator=g, device=dev)
            else:
                pair = random_pairing(B, generator=g, device=dev)
        else:
            pair = flip_pairing(B, dev)
        lam = torch.ones(n, dtype=torch.float64, device=dev)
        use_cut = torch.zeros(n, dtype=torch.bool, device=dev)
        if cfg.enabled and n > 0:
            if cfg.mixup_on and cfg.cutmix_on:
                use_cut = torch.rand(n, generator=g, device=dev) < cfg.switch_prob
                lam_cut = sample_beta(cfg.cutmix_alpha, n, generator=g, device=dev)
                lam_mix = sample_beta(cfg.mixup_alpha, n, generator=g, device=dev)
                lam_draw = torch.where(use_cut, lam_cut, lam_mix)
            elif cfg.mixup_on:
                lam_draw = sample_beta(cfg.mixup_alpha, n, generator=g, device=dev)
            else:
                use_cut = torch.ones(n, dtype=torch.bool, device=dev)
                lam_draw = sample_beta(cfg.cutmix_alpha, n, generator=g, device=dev)
            apply = torch.rand(n, generator=g, device=dev) < cfg.prob
            lam = torch.where(apply, lam_draw, lam)
            use_cut = use_cut & (lam != 1.0)
        box_n = None
        if cfg.cutmix_on and n > 0:
            sizes = need_spatial(img_size)
            box_n, lam_c = cutmix_boxes_and_lam_nd(sizes, lam, cfg.cutmix_minmax, cfg.correct_lam, generator=g)
            lam = torch.where(use_cut, lam_c, lam)
        return scatter_rows(mode, pair, lam, use_cut, box_n, host_hints=self.host_hints)
