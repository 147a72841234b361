"""All the random draws of Mixup and CutMix, in one module.

The fused op is deterministic: it takes the pairing, the per-sample weights
``lam`` and the per-sample boxes as tensors. This module draws them.

Two sources of randomness:

* **numpy's global RNG, in timm's exact order** (:class:`NumpySampler`). With
  the same ``np.random.seed``, :class:`mixup_fused.Mixup` draws the same lam,
  boxes and pairing as ``timm.data.Mixup`` (and ``FastCollateMixup`` for mode
  ``'half'``). The draws are made on the host, as timm makes them, and reach
  the device in one non-blocking copy from pinned memory.
* **a torch.Generator** (:class:`TorchSampler`): vectorised draws on the
  generator's device, with no per-sample Python loop and no host reads, so a
  CUDA generator gives a sampling step with no host-device synchronisation.
  The distributions are timm's; the draw order is not.

Both produce a :class:`MixParams`: one row per sample, ready for one call of
:func:`mixup_fused.mix`. A box row of ``NO_BOX`` (all -1) tells the op to blend
that sample with lam (Mixup) instead of cutting; ``EMPTY_BOX`` leaves a sample
untouched. That is how one launch mixes some samples and cuts others.

Pairings are involutions (``perm[perm[i]] == i``) so that the op can mix in
place; an odd batch has one sample paired with itself, which keeps lam = 1 and
is left unchanged. Samplers for other devices or sources (e.g. drawing
directly on ``x``'s device) plug in by implementing ``sample``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch

from .reference import NO_BOX

__all__ = [
    "EMPTY_BOX",
    "MODES",
    "NO_BOX",
    "MixParams",
    "MixupConfig",
    "NumpySampler",
    "SAMPLERS",
    "Pairing",
    "TorchSampler",
    "cutmix_bbox_and_lam",
    "cutmix_boxes_and_lam",
    "flip_pairing",
    "half_pairing",
    "make_sampler",
    "rand_bbox",
    "rand_bbox_minmax",
    "rand_boxes",
    "rand_boxes_minmax",
    "random_pairing",
    "random_permutation",
    "roll_permutation",
    "sample_beta",
    "torchvision_cutmix_box",
    "to_device",
    "torchvision_lam",
]

EMPTY_BOX = (0, 0, 0, 0)
MODES = ("batch", "pair", "elem", "half")

# ----------------------------------------------------------------------------
# Pairings
# ----------------------------------------------------------------------------


class Pairing(NamedTuple):
    """An involution and its pairs.

    ``perm[first[k]] == second[k]`` and ``perm[second[k]] == first[k]`` for the
    ``B // 2`` pairs, listed in the order their parameters are drawn; an odd
    batch has one more sample with ``perm[m] == m`` that is in neither list.
    """

    perm: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor

    def paired(self) -> torch.Tensor:
        """Boolean ``[B]``: True for samples that have a partner other than themselves."""
        mask = torch.zeros(self.perm.shape[0], dtype=torch.bool, device=self.perm.device)
        return mask.index_fill_(0, self.first, True).index_fill_(0, self.second, True)

    def to(self, device, non_blocking: bool = False) -> Pairing:
        return Pairing(*(t.to(device, non_blocking=non_blocking) for t in self))


def _pairing_from_lists(batch_size: int, first: torch.Tensor, second: torch.Tensor) -> Pairing:
    perm = torch.arange(batch_size, device=first.device)
    perm = perm.index_copy(0, first, second).index_copy(0, second, first)
    return Pairing(perm, first, second)


def flip_pairing(batch_size: int, device=None) -> Pairing:
    """timm's pairing: sample ``i`` with ``B - 1 - i`` (``x.flip(0)``); an odd batch's middle sample with itself.

    The result is cached per (batch size, device) -- it never changes -- so
    its tensors are shared: read them, do not write into them."""
    return _flip_pairing(batch_size, None if device is None else torch.device(device))


@functools.lru_cache(maxsize=32)
def _flip_pairing(batch_size: int, device) -> Pairing:
    first = torch.arange(batch_size // 2, device=device)
    return Pairing(torch.arange(batch_size - 1, -1, -1, device=device), first, batch_size - 1 - first)


def random_pairing(batch_size: int, *, generator: torch.Generator | None = None, device=None) -> Pairing:
    """A uniformly random perfect matching (an odd batch leaves one random sample alone), drawn with torch."""
    device = generator.device if generator is not None and device is None else device
    order = torch.randperm(batch_size, generator=generator, device=device)
    h = batch_size // 2
    return _pairing_from_lists(batch_size, order[0 : 2 * h : 2], order[1 : 2 * h : 2])


def _random_pairing_numpy(batch_size: int) -> Pairing:
    order = torch.from_numpy(np.random.permutation(batch_size).astype(np.int64))
    h = batch_size // 2
    return _pairing_from_lists(batch_size, order[0 : 2 * h : 2], order[1 : 2 * h : 2])


def half_pairing(
    batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None, device=None
) -> Pairing:
    """Mode ``'half'``: sample ``k < B // 2`` is paired with one of the last ``B // 2`` samples.

    ``shuffle=False`` is timm's ``FastCollateMixup`` (``k`` with ``B - 1 - k``,
    the flip). ``shuffle=True`` draws the partner in the second half at random
    (torch, or numpy's global RNG when ``generator`` is None and ``device`` is
    None).
    """
    h = batch_size // 2
    if not shuffle:
        return flip_pairing(batch_size, device)
    if generator is None and device is None:
        sigma = torch.from_numpy(np.random.permutation(h).astype(np.int64))
    else:
        device = generator.device if generator is not None and device is None else device
        sigma = torch.randperm(h, generator=generator, device=device)
    first = torch.arange(h, device=sigma.device)
    return _pairing_from_lists(batch_size, first, batch_size - h + sigma)


def random_permutation(batch_size: int, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """A uniformly random permutation (not an involution: the op then mixes out of place)."""
    device = generator.device if generator is not None and device is None else device
    return torch.randperm(batch_size, generator=generator, device=device)


def roll_permutation(batch_size: int, shifts: int = 1, device=None) -> torch.Tensor:
    """torchvision's pairing ``x.roll(shifts, 0)``: sample ``i`` is mixed with ``i - shifts`` (mod B)."""
    return (torch.arange(batch_size, device=device) - shifts) % max(batch_size, 1)


# ----------------------------------------------------------------------------
# Beta draws
# ----------------------------------------------------------------------------


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


def torchvision_lam(alpha: float, *, generator: torch.Generator | None = None) -> float:
    """torchvision v2's draw: ``float(Beta(tensor([alpha]), tensor([alpha])).sample(()))``.

    Same float32 Dirichlet call on the CPU, so with ``generator=None`` it
    consumes torch's global RNG exactly as torchvision does.
    """
    if not alpha > 0:
        raise ValueError(f"mixup_fused: alpha must be > 0, got {alpha}")
    concentration = torch.tensor([[float(alpha), float(alpha)]])
    return float(torch._sample_dirichlet(concentration, generator=generator)[0, 0])


def torchvision_cutmix_box(
    height: int, width: int, lam: float, *, generator: torch.Generator | None = None
) -> tuple[tuple[int, int, int, int], float]:
    """torchvision v2 ``CutMix``'s box: returns ``((y0, y1, x0, x1), lam_adjusted)``.

    The centre is drawn as torchvision draws it (x first, then y); the box has
    half sides ``int(0.5 * sqrt(1 - lam) * side)``, is clipped to the image,
    and lam is corrected to the clipped area.
    """
    r_x = int(torch.randint(width, size=(1,), generator=generator))
    r_y = int(torch.randint(height, size=(1,), generator=generator))
    r = 0.5 * math.sqrt(1.0 - lam)
    r_w_half, r_h_half = int(r * width), int(r * height)
    x0, y0 = max(r_x - r_w_half, 0), max(r_y - r_h_half, 0)
    x1, y1 = min(r_x + r_w_half, width), min(r_y + r_h_half, height)
    lam_adjusted = float(1.0 - (x1 - x0) * (y1 - y0) / (width * height))
    return (y0, y1, x0, x1), lam_adjusted


# ----------------------------------------------------------------------------
# Boxes: timm's functions (numpy's global RNG, the same arithmetic as timm)
# ----------------------------------------------------------------------------


def rand_bbox(img_shape, lam, margin: float = 0.0, count=None):
    """timm's ``rand_bbox``: a box of sides ``int(side * sqrt(1 - lam))`` around
    a uniform centre, clipped to the image. Returns ``(y0, y1, x0, x1)``.

    ``lam`` keeps its numpy type, as in timm: a float32 lam (per-sample modes)
    gives float32 arithmetic, a Python float (batch mode) float64.
    """
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape[-2:]
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    margin_y, margin_x = int(margin * cut_h), int(margin * cut_w)
    cy = np.random.randint(0 + margin_y, img_h - margin_y, size=count)
    cx = np.random.randint(0 + margin_x, img_w - margin_x, size=count)
    # np.clip on scalars costs microseconds each; min/max gives the same np.int64 values.
    clip = (lambda v, hi: np.int64(min(max(v, 0), hi))) if count is None else (lambda v, hi: np.clip(v, 0, hi))
    yl = clip(cy - cut_h // 2, img_h)
    yh = clip(cy + (cut_h + 1) // 2, img_h)
    xl = clip(cx - cut_w // 2, img_w)
    xh = clip(cx + (cut_w + 1) // 2, img_w)
    return yl, yh, xl, xh


def rand_bbox_minmax(img_shape, minmax, count=None):
    """timm's ``rand_bbox_minmax``: sides uniform in ``[min, max)`` of the image
    side, placed uniformly inside the image. Returns ``(y0, y1, x0, x1)``."""
    if len(minmax) != 2:
        raise ValueError(f"mixup_fused: cutmix_minmax must be (min, max), got {minmax!r}")
    img_h, img_w = img_shape[-2:]
    cut_h = np.random.randint(int(img_h * minmax[0]), int(img_h * minmax[1]), size=count)
    cut_w = np.random.randint(int(img_w * minmax[0]), int(img_w * minmax[1]), size=count)
    yl = np.random.randint(0, img_h - cut_h + 1, size=count)
    xl = np.random.randint(0, img_w - cut_w + 1, size=count)
    return yl, yl + cut_h, xl, xl + cut_w


def cutmix_bbox_and_lam(img_shape, lam, ratio_minmax=None, correct_lam: bool = True, count=None):
    """timm's ``cutmix_bbox_and_lam``: the box, and lam corrected to ``1 - area / (H * W)``
    when ``correct_lam`` is on or ``ratio_minmax`` is given (otherwise lam is returned as drawn)."""
    if ratio_minmax is not None:
        yl, yu, xl, xu = rand_bbox_minmax(img_shape, ratio_minmax, count=count)
    else:
        yl, yu, xl, xu = rand_bbox(img_shape, lam, count=count)
    if correct_lam or ratio_minmax is not None:
        bbox_area = (yu - yl) * (xu - xl)
        lam = 1.0 - bbox_area / float(img_shape[-2] * img_shape[-1])
    return (yl, yu, xl, xu), lam


# ----------------------------------------------------------------------------
# Boxes: vectorised torch versions (same distributions, any device)
# ----------------------------------------------------------------------------


def rand_boxes(height: int, width: int, lam: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``rand_bbox`` for a vector of lam: int64 ``[n, 4]`` rows ``(y0, y1, x0, x1)`` on lam's device."""
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
    """``rand_bbox_minmax`` for ``n`` boxes: int64 ``[n, 4]`` rows ``(y0, y1, x0, x1)``."""
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
    """``cutmix_bbox_and_lam`` for a vector of lam: ``(boxes [n, 4], lam [n])``."""
    if ratio_minmax is not None:
        boxes = rand_boxes_minmax(height, width, ratio_minmax, lam.shape[0], generator=generator, device=lam.device)
    else:
        boxes = rand_boxes(height, width, lam, generator=generator)
    if correct_lam or ratio_minmax is not None:
        area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
        lam = 1.0 - area.to(lam.dtype) / float(height * width)
    return boxes, lam


# ----------------------------------------------------------------------------
# Mixup parameters for a whole batch
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MixupConfig:
    """The knobs of timm's ``Mixup`` that decide the draws."""

    mixup_alpha: float = 1.0
    cutmix_alpha: float = 0.0
    cutmix_minmax: tuple[float, float] | None = None
    prob: float = 1.0
    switch_prob: float = 0.5
    correct_lam: bool = True
    enabled: bool = True

    def __post_init__(self):
        if self.cutmix_minmax is not None:
            # As timm: minmax boxes turn CutMix on with alpha 1 (lam is then set by the box area).
            object.__setattr__(self, "cutmix_alpha", 1.0)

    @property
    def mixup_on(self) -> bool:
        return self.mixup_alpha > 0.0

    @property
    def cutmix_on(self) -> bool:
        return self.cutmix_alpha > 0.0 or self.cutmix_minmax is not None

    def check(self) -> None:
        if self.enabled and not (self.mixup_on or self.cutmix_on):
            raise ValueError(
                "mixup_fused: one of mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax not None must hold "
                f"(got mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, "
                f"cutmix_minmax={self.cutmix_minmax})"
            )


@dataclass
class MixParams:
    """Everything one call of :func:`mixup_fused.mix` needs, one row per sample.

    Attributes:
        pairing: the involution (``pairing.perm`` goes to the op).
        lam: float32 or float64 ``[B]``, the weight of each sample's own target; for rows
            that are blended (no box, or ``NO_BOX``) also of its own image.
        boxes: int64 ``[B, 4]`` ``(y0, y1, x0, x1)`` or None (every row is
            blended). Rows equal to ``NO_BOX`` are blended with lam,
            ``EMPTY_BOX`` rows are left unchanged.
        mixes: False when no sample changes (the image pass can be skipped),
            True when some may, None when unknown without reading the device.
    """

    pairing: Pairing
    lam: torch.Tensor
    boxes: torch.Tensor | None
    mixes: bool | None = None

    @property
    def perm(self) -> torch.Tensor:
        return self.pairing.perm

    def to(self, device, lam_dtype: torch.dtype | None = None) -> MixParams:
        """Move to ``device`` (host-to-device copies from pinned memory, non-blocking)."""
        device = torch.device(device)
        if self.lam.device == device and (lam_dtype is None or self.lam.dtype == lam_dtype):
            return self
        lam = self.lam if lam_dtype is None else self.lam.to(lam_dtype)
        pairing, boxes = self.pairing, self.boxes
        if lam.device != device:
            lam, boxes = to_device(lam, device), to_device(boxes, device)
            pairing = Pairing(*(to_device(t, device) for t in pairing))
        return replace(self, pairing=pairing, lam=lam, boxes=boxes)


def to_device(t: torch.Tensor | None, device) -> torch.Tensor | None:
    """Host tensor to ``device`` without a synchronisation: a CUDA copy goes
    through pinned memory with ``non_blocking=True`` (a copy from pageable
    memory would wait for the stream)."""
    if t is None or t.device == torch.device(device):
        return t
    if torch.device(device).type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def _draws_per_row(mode: str, batch_size: int) -> int:
    if mode == "batch":
        return 1
    if mode == "elem":
        return batch_size
    return batch_size // 2  # 'pair' and 'half': one draw per pair


class NumpySampler:
    """timm's draws from numpy's global RNG, in timm's order.

    ``'batch'``: ``Mixup._params_per_batch``, then the box. ``'elem'``:
    ``Mixup._params_per_elem(B)``, then one box per cut sample in index
    order. ``'pair'``: ``_params_per_elem(B // 2)``, then one box per cut
    pair. ``'half'``: as ``FastCollateMixup``'s ``'half'``. A random pairing
    (``pairing='random'``, not in timm) is drawn after all of these.
    """

    def sample(self, cfg: MixupConfig, mode: str, batch_size: int, img_size=None, pairing: str = "flip") -> MixParams:
        cfg.check()
        B = batch_size
        if mode == "batch":
            lam_b, use_cut_b = self._params_per_batch(cfg)
            if not use_cut_b or lam_b == 1.0:  # the common case, kept short: one blend weight
                return _batch_blend(self._pairing(mode, B, pairing), lam_b)
            # A cut (timm returns before the box when lam == 1, handled above).
            box, lam_cut = cutmix_bbox_and_lam(_need_hw(img_size), lam_b, cfg.cutmix_minmax, cfg.correct_lam)
            lam_n = np.array([lam_cut], dtype=np.float64)
            use_cut_n = np.array([True])
            box_n = np.array([box], dtype=np.int64)
        elif cfg.enabled and not cfg.cutmix_on:
            # Mixup only, per sample: timm's draws (beta, then rand), with fewer numpy calls.
            n = _draws_per_row(mode, B)
            # lam stays float32, as timm's: the op takes it as it is.
            lam_n = np.random.beta(cfg.mixup_alpha, cfg.mixup_alpha, size=n).astype(np.float32)
            keep = np.random.rand(n)  # timm: np.where(rand < prob, lam_mix, 1)
            every = cfg.prob >= 1.0
            if not every:  # (a NaN prob mixes nothing, as in timm)
                lam_n[~(keep < cfg.prob)] = 1.0
            return _blend_rows(mode, self._pairing(mode, B, pairing), lam_n, flip=pairing != "random", every=every)
        else:
            # lam stays float32, as in timm's arrays (it sets the box arithmetic and the rounding).
            lam_n, use_cut_n = self._params_per_elem(cfg, _draws_per_row(mode, B))
            use_cut_n = use_cut_n & (lam_n != 1.0)  # timm draws no box for a sample that is not mixed
            rows = np.flatnonzero(use_cut_n)
            box_n = None if not rows.size else np.tile(np.array(NO_BOX, dtype=np.int64), (lam_n.shape[0], 1))
            if rows.size:
                box_n[rows], lam_n[rows] = _timm_boxes_in_order(
                    _need_hw(img_size), lam_n[rows], cfg.cutmix_minmax, cfg.correct_lam
                )
        return _rows_numpy(mode, self._pairing(mode, B, pairing), lam_n.astype(np.float64), use_cut_n, box_n)

    @staticmethod
    def _pairing(mode: str, B: int, pairing: str) -> Pairing:
        # Drawn after lam and the boxes, as in timm's order.
        if pairing == "random":
            return half_pairing(B, shuffle=True) if mode == "half" else _random_pairing_numpy(B)
        return flip_pairing(B)

    @staticmethod
    def _params_per_elem(cfg: MixupConfig, n: int):
        # timm's Mixup._params_per_elem, draw for draw.
        lam = np.ones(n, dtype=np.float32)
        use_cutmix = np.zeros(n, dtype=bool)
        if cfg.enabled:
            if cfg.mixup_on and cfg.cutmix_on:
                use_cutmix = np.random.rand(n) < cfg.switch_prob
                lam_mix = np.where(
                    use_cutmix,
                    np.random.beta(cfg.cutmix_alpha, cfg.cutmix_alpha, size=n),
                    np.random.beta(cfg.mixup_alpha, cfg.mixup_alpha, size=n),
                )
            elif cfg.mixup_on:
                lam_mix = np.random.beta(cfg.mixup_alpha, cfg.mixup_alpha, size=n)
            else:
                use_cutmix = np.ones(n, dtype=bool)
                lam_mix = np.random.beta(cfg.cutmix_alpha, cfg.cutmix_alpha, size=n)
            lam = np.where(np.random.rand(n) < cfg.prob, lam_mix.astype(np.float32), lam)
        return lam, use_cutmix

    @staticmethod
    def _params_per_batch(cfg: MixupConfig):
        # timm's Mixup._params_per_batch, draw for draw.
        lam, use_cutmix = 1.0, False
        if cfg.enabled and np.random.rand() < cfg.prob:
            if cfg.mixup_on and cfg.cutmix_on:
                use_cutmix = bool(np.random.rand() < cfg.switch_prob)
                alpha = cfg.cutmix_alpha if use_cutmix else cfg.mixup_alpha
                lam_mix = np.random.beta(alpha, alpha)
            elif cfg.mixup_on:
                lam_mix = np.random.beta(cfg.mixup_alpha, cfg.mixup_alpha)
            else:
                use_cutmix = True
                lam_mix = np.random.beta(cfg.cutmix_alpha, cfg.cutmix_alpha)
            lam = float(lam_mix)
        return lam, use_cutmix


def _timm_boxes_in_order(hw, lam: np.ndarray, minmax, correct_lam: bool):
    """``cutmix_bbox_and_lam`` for each float32 lam in turn, as timm's per-sample
    loop calls it: the same numpy draws in the same order and the same
    float32 / int arithmetic, with the arithmetic vectorised. Returns
    ``(boxes [n, 4], lam [n])``."""
    H, W = hw
    n = lam.shape[0]
    if minmax is not None:
        # Each box's later draws depend on its first ones: one box at a time.
        boxes = np.array([rand_bbox_minmax(hw, minmax) for _ in range(n)], dtype=np.int64).reshape(n, 4)
    else:
        ratio = np.sqrt(1 - lam)  # float32, as timm's scalar float32 lam
        cut_h, cut_w = (H * ratio).astype(np.int64), (W * ratio).astype(np.int64)
        if H == W:
            # randint with size draws the same stream as repeated scalar calls with the same bounds.
            centres = np.random.randint(0, H, size=2 * n).reshape(n, 2)
        else:
            centres = np.array([(np.random.randint(0, H), np.random.randint(0, W)) for _ in range(n)]).reshape(n, 2)
        cy, cx = centres[:, 0], centres[:, 1]
        boxes = np.stack(
            (
                np.clip(cy - cut_h // 2, 0, H),
                np.clip(cy + (cut_h + 1) // 2, 0, H),
                np.clip(cx - cut_w // 2, 0, W),
                np.clip(cx + (cut_w + 1) // 2, 0, W),
            ),
            axis=1,
        )
    if correct_lam or minmax is not None:
        area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
        lam = 1.0 - area / float(H * W)
    return boxes, lam


def _batch_blend(pair: Pairing, lam_b: float) -> MixParams:
    """One blend weight for every paired sample (batch mode without a cut)."""
    B = pair.perm.shape[0]
    lam = torch.full((B,), lam_b, dtype=torch.float64)
    if B % 2:
        lam[pair.perm == torch.arange(B)] = 1.0  # the sample paired with itself
    return MixParams(pair, lam, None, mixes=lam_b != 1.0 and B > 1)


def _blend_rows(mode: str, pair: Pairing, lam_n: np.ndarray, flip: bool, every: bool = False) -> MixParams:
    """Per-sample blends only (no row cuts): no box arrays at all. ``lam_n``:
    one fresh float array of draws (written into). ``flip``: ``pair`` is
    :func:`flip_pairing` (whose only unpaired sample is an odd batch's middle
    one). ``every``: every draw mixes (``prob >= 1``), so the batch mixes if
    it has a pair, without a scan of lam."""
    B = pair.perm.shape[0]
    if mode == "elem":
        lam = lam_n
        # A sample paired with itself keeps lam = 1.
        if flip:
            if B % 2:
                lam[B // 2] = 1.0
        else:
            lam[pair.perm.numpy() == np.arange(B)] = 1.0
    else:
        lam = np.ones(B, dtype=lam_n.dtype)
        lam[pair.first.numpy()] = lam_n
        if mode == "pair":
            lam[pair.second.numpy()] = lam_n
    mixes = B > 1 if every else bool((lam != 1.0).any())
    return MixParams(pair, torch.from_numpy(lam), None, mixes=mixes)


def _rows_numpy(
    mode: str, pair: Pairing, lam_n: np.ndarray, use_cut_n: np.ndarray, box_n: np.ndarray | None
) -> MixParams:
    """:func:`_scatter_rows` on the host, in numpy (a few microseconds instead
    of a few dozen small torch ops), plus the host hints of :func:`_on_host`.
    ``box_n`` None: no row cuts."""
    B = pair.perm.shape[0]
    if box_n is None:
        return _blend_rows(mode, pair, lam_n, flip=False)
    first, second = pair.first.numpy(), pair.second.numpy()
    box_n = np.where(
        use_cut_n[:, None], box_n, np.where((lam_n != 1.0)[:, None], np.array(NO_BOX), np.array(EMPTY_BOX))
    )
    lam = np.ones(B)
    boxes = np.zeros((B, 4), dtype=np.int64)  # EMPTY_BOX
    if mode in ("batch", "elem"):
        paired = np.zeros(B, dtype=bool)
        paired[first] = paired[second] = True
        idx = np.zeros(B, dtype=np.int64) if mode == "batch" else np.arange(B)
        lam[paired] = lam_n[idx[paired]]
        boxes[paired] = box_n[idx[paired]]
    else:
        lam[first], boxes[first] = lam_n, box_n
        if mode == "pair":
            lam[second], boxes[second] = lam_n, box_n
    cuts = (boxes != np.array(NO_BOX)).any(1) & (boxes[:, 1] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 2])
    has_box = bool(use_cut_n.any())
    return MixParams(
        pair,
        torch.from_numpy(lam),
        torch.from_numpy(boxes) if has_box else None,
        mixes=bool((lam != 1.0).any() or (has_box and cuts.any())),
    )


class TorchSampler:
    """Draws from a ``torch.Generator``, vectorised, on the generator's device.

    Nothing is read back to the host, so with a CUDA generator the draws add no
    synchronisation. Per row: ``use_cutmix ~ Bernoulli(switch_prob)`` (when
    both are on), lam from the matching Beta, lam = 1 with probability
    ``1 - prob``, then a box (timm's ``rand_bbox`` / ``rand_bbox_minmax``
    distributions) for the rows that cut.

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
        self._device = generator.device if generator is not None else torch.device(device)
        self.host_hints = self._device.type == "cpu" if host_hints is None else bool(host_hints)

    @property
    def device(self) -> torch.device:
        return self._device

    def sample(self, cfg: MixupConfig, mode: str, batch_size: int, img_size=None, pairing: str = "flip") -> MixParams:
        cfg.check()
        g, dev, B = self.generator, self.device, batch_size
        n = _draws_per_row(mode, B)
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
        if cfg.cutmix_on and n > 0:
            H, W = _need_hw(img_size)
            boxes, lam_c = cutmix_boxes_and_lam(H, W, lam, cfg.cutmix_minmax, cfg.correct_lam, generator=g)
            lam = torch.where(use_cut, lam_c, lam)
            no_box = torch.full((4,), -1, dtype=torch.int64, device=dev)  # NO_BOX; no host-to-device copy
            box_n = torch.where(use_cut.unsqueeze(1), boxes, no_box)
        else:
            box_n = None
        params = _scatter_rows(mode, pair, lam, use_cut, box_n)
        return _on_host(params, use_cut) if self.host_hints else params


def _scatter_rows(
    mode: str, pair: Pairing, lam_n: torch.Tensor, use_cut_n: torch.Tensor, box_n: torch.Tensor | None
) -> MixParams:
    """Per-draw rows -> per-sample rows, for the op.

    ``'batch'`` repeats the one row; ``'elem'`` keeps one row per sample;
    ``'pair'`` gives both samples of pair ``k`` row ``k``; ``'half'`` gives
    row ``k`` to ``first[k]`` only. Samples without a partner (odd B) and the
    second half in ``'half'`` keep lam = 1 and an empty box. Blended rows get
    ``NO_BOX`` and rows with lam == 1 ``EMPTY_BOX`` (an exact copy).
    """
    B = pair.perm.shape[0]
    dev = pair.perm.device
    lam_n = lam_n.to(dev)
    use_cut_n = use_cut_n.to(dev)
    if mode in ("batch", "elem"):
        idx = torch.zeros(B, dtype=torch.int64, device=dev) if mode == "batch" else torch.arange(B, device=dev)
        keep = pair.paired()
        lam = torch.where(keep, lam_n[idx], 1.0)
        rows = (keep, idx)
    else:
        lam = torch.ones(B, dtype=lam_n.dtype, device=dev).index_copy(0, pair.first, lam_n)
        if mode == "pair":
            lam = lam.index_copy(0, pair.second, lam_n)
        rows = None
    if box_n is None:
        return MixParams(pair, lam, None)
    box_n = box_n.to(dev)
    # Built on the device (torch.tensor(list, device=cuda) would be a synchronous copy).
    empty = torch.zeros(4, dtype=torch.int64, device=dev)  # EMPTY_BOX
    blend = torch.full((4,), -1, dtype=torch.int64, device=dev)  # NO_BOX
    # A row that cuts keeps its box; otherwise NO_BOX (blend with lam) or, when lam == 1, EMPTY (exact copy).
    box_n = torch.where(use_cut_n.unsqueeze(1), box_n, torch.where((lam_n != 1.0).unsqueeze(1), blend, empty))
    if rows is not None:
        keep, idx = rows
        boxes = torch.where(keep.unsqueeze(1), box_n[idx], empty)
    else:
        boxes = empty.expand(B, 4).clone().index_copy_(0, pair.first, box_n)
        if mode == "pair":
            boxes.index_copy_(0, pair.second, box_n)
    return MixParams(pair, lam, boxes)


def _on_host(params: MixParams, use_cut_n: torch.Tensor) -> MixParams:
    """Host-side simplification: no box tensor when no row cuts (the op's pure
    Mixup path), and ``mixes=False`` when no sample changes."""
    boxes = params.boxes if bool(use_cut_n.any()) else None
    mixes = bool((params.lam != 1.0).any())
    if boxes is not None:
        cut = (boxes != torch.tensor(NO_BOX)).any(1)
        mixes = mixes or bool((cut & (boxes[:, 1] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 2])).any())
    return replace(params, boxes=boxes, mixes=mixes)


def _need_hw(img_size):
    if img_size is None:
        raise ValueError("mixup_fused: CutMix needs images of shape [B, C, H, W]")
    return int(img_size[-2]), int(img_size[-1])


SAMPLERS = ("host", "device")


def make_sampler(generator: torch.Generator | None = None, sampler: str = "host", device=None):
    """``sampler='host'``: numpy's global RNG in timm's order without a
    generator, else the torch sampler on the generator's device.

    ``sampler='device'``: torch draws on ``device`` (the batch's device) from
    ``generator`` or, without one, from torch's default generator of that
    device; nothing is read back, so no host synchronisation happens and the
    step can be captured in a CUDA graph or compiled without graph breaks."""
    if sampler == "device":
        return TorchSampler(generator, device=None if generator is not None else device, host_hints=False)
    if sampler != "host":
        raise ValueError(f"mixup_fused: sampler must be one of {SAMPLERS}, got {sampler!r}")
    return NumpySampler() if generator is None else TorchSampler(generator)
