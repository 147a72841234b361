"""Draws from a ``torch.Generator``, vectorised, on any device.

No per-sample Python loop and no host reads, so a CUDA generator gives a
sampling step with no host-device synchronisation (and one that can be
captured in a CUDA graph). The distributions are timm's; the draw order is not.
"""

from __future__ import annotations

import torch

from .pairing import flip_pairing, half_pairing, random_pairing
from .params import MixParams, MixupConfig, draws_per_row, scatter_rows
from .timm import need_hw

__all__ = ["TorchSampler", "cutmix_boxes_and_lam", "rand_boxes", "rand_boxes_minmax", "sample_beta"]


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


def rand_boxes(height: int, width: int, lam: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """timm's ``rand_bbox`` for a vector of lam: int64 ``[n, 4]`` rows ``(y0, y1, x0, x1)`` on lam's device."""
    ratio = torch.sqrt((1.0 - lam.double()).clamp_min(0.0))
    cut_h = (height * ratio).long()  # int() truncates; ratio >= 0
    cut_w = (width * ratio).long()
    cy = torch.randint(0, height, lam.shape, generator=generator, device=lam.device)
    cx = torch.randint(0, width, lam.shape, generator=generator, device=lam.device)
    y0 = (cy - cut_h // 2).clamp(0, height)
    y1 = (cy + (cut_h + 1) // 2).clamp(0, height)
    x0 = (cx - cut_w // 2).clamp(0, width)
    x1 = (cx + (cut_w + 1) // 2).clamp(0, width)
    return torch.stack((y0, y1, x0, x1), dim=1)


def rand_boxes_minmax(
    height: int, width: int, minmax, n: int, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """timm's ``rand_bbox_minmax`` for ``n`` boxes: int64 ``[n, 4]`` rows ``(y0, y1, x0, x1)``."""
    if len(minmax) != 2:
        raise ValueError(f"mixup_fused: cutmix_minmax must be (min, max), got {minmax!r}")
    cut_h = torch.randint(int(height * minmax[0]), int(height * minmax[1]), (n,), generator=generator, device=device)
    cut_w = torch.randint(int(width * minmax[0]), int(width * minmax[1]), (n,), generator=generator, device=device)
    # Uniform integer in [0, side - cut] with a per-row bound: floor(u * (bound + 1)).
    u = torch.rand((2, n), dtype=torch.float64, generator=generator, device=device)
    y0 = (u[0] * (height - cut_h + 1)).long().clamp_max(height - cut_h)
    x0 = (u[1] * (width - cut_w + 1)).long().clamp_max(width - cut_w)
    return torch.stack((y0, y0 + cut_h, x0, x0 + cut_w), dim=1)


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
    if ratio_minmax is not None:
        boxes = rand_boxes_minmax(height, width, ratio_minmax, lam.shape[0], generator=generator, device=lam.device)
    else:
        boxes = rand_boxes(height, width, lam, generator=generator)
    if correct_lam or ratio_minmax is not None:
        area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
        lam = 1.0 - area.to(lam.dtype) / float(height * width)
    return boxes, lam


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
            H, W = need_hw(img_size)
            box_n, lam_c = cutmix_boxes_and_lam(H, W, lam, cfg.cutmix_minmax, cfg.correct_lam, generator=g)
            lam = torch.where(use_cut, lam_c, lam)
        params = scatter_rows(mode, pair, lam, use_cut, box_n)
        return params.with_host_hints(use_cut) if self.host_hints else params
