"""All the random draws of Mixup and CutMix.

The fused op is deterministic: it takes the pairing, the per-sample weights
``lam`` and the per-sample boxes as tensors. This package draws them:

* :mod:`.pairing`: who is mixed with whom (involutions for in-place mixing);
* :mod:`.timm`: timm's draws from numpy's global RNG, in timm's order
  (:class:`NumpySampler`: the same lam, boxes and pairing as ``timm.data.Mixup``
  for the same ``np.random.seed``);
* :mod:`.torch_draws`: vectorised draws from a ``torch.Generator`` on any
  device, with no host reads (:class:`TorchSampler`);
* :mod:`.torchvision`: torchvision v2's draws;
* :mod:`.masks`: free-form cut masks (FMix, ClassMix) and their weights;
* :mod:`.params`: :class:`MixParams`, the per-sample rows both samplers
  produce for one call of :func:`mixup_fused.mix`.

Boxes have 1, 2 or 3 spatial dims (``img_size = x.shape[2:]`` of a
``[B, C, T]``, ``[B, C, H, W]`` or ``[B, C, D, H, W]`` batch): int64 rows
``(lo, hi)`` per dim in dim order, half-open; the ``*_nd`` functions take the
spatial shape, the 2-D names (``rand_bbox``, ``rand_boxes``, ...) are timm's.
"""

from __future__ import annotations

import torch

from .masks import classmix_masks, fmix_masks, mask_lam
from .pairing import (
    Pairing,
    flip_pairing,
    half_pairing,
    random_pairing,
    random_permutation,
    refuse_in_capture,
    roll_permutation,
)
from .params import (
    EMPTY_BOX,
    MODES,
    NO_BOX,
    MixParams,
    MixupConfig,
    draws_per_row,
    empty_box,
    need_spatial,
    no_box,
    scatter_rows,
    to_device,
    upload,
)
from .timm import (
    NumpySampler,
    cutmix_bbox_and_lam,
    cutmix_box_and_lam_nd,
    cutmix_boxes_per_row,
    rand_bbox,
    rand_bbox_minmax,
    rand_box_minmax_nd,
    rand_box_nd,
)
from .torch_draws import (
    TorchSampler,
    box_volumes,
    cutmix_boxes_and_lam,
    cutmix_boxes_and_lam_nd,
    rand_boxes,
    rand_boxes_minmax,
    rand_boxes_minmax_nd,
    rand_boxes_nd,
    sample_beta,
)
from .torchvision import torchvision_cutmix_box, torchvision_lam

__all__ = [
    "EMPTY_BOX",
    "MODES",
    "NO_BOX",
    "SAMPLERS",
    "MixParams",
    "MixupConfig",
    "NumpySampler",
    "Pairing",
    "TorchSampler",
    "box_volumes",
    "classmix_masks",
    "cutmix_bbox_and_lam",
    "cutmix_box_and_lam_nd",
    "cutmix_boxes_per_row",
    "cutmix_boxes_and_lam",
    "cutmix_boxes_and_lam_nd",
    "draws_per_row",
    "empty_box",
    "flip_pairing",
    "fmix_masks",
    "half_pairing",
    "make_sampler",
    "mask_lam",
    "need_spatial",
    "no_box",
    "rand_bbox",
    "rand_bbox_minmax",
    "rand_box_minmax_nd",
    "rand_box_nd",
    "rand_boxes",
    "rand_boxes_minmax",
    "rand_boxes_minmax_nd",
    "rand_boxes_nd",
    "random_pairing",
    "refuse_in_capture",
    "random_permutation",
    "roll_permutation",
    "sample_beta",
    "scatter_rows",
    "to_device",
    "upload",
    "torchvision_cutmix_box",
    "torchvision_lam",
]

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
