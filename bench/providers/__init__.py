"""Providers: one way of doing a case's work, ready to be verified and timed.

The table below lists them in the order of the report's rows. A provider is
defined in the module of its family: ``baselines`` (rooflines, the reference),
``theirs`` (the peers of ``bench/peers.py``) and ``ours`` (mixup_fused); what a
provider is and returns is in ``base``.
"""

from __future__ import annotations

import mixup_fused

from ..cases import Case
from . import baselines, ours, theirs
from .base import Prepared, Provider, Skip

__all__ = ["PROVIDERS", "TIMM_BASELINE", "Prepared", "Provider", "Skip", "availability", "providers_for"]

# The timm provider of each workload: the "speed-up vs timm" column divides by it.
TIMM_BASELINE = {
    "mixup": "timm_batch",
    "elem": "timm_elem",
    "cutmix": "timm_cutmix",
    "uint8": "timm_uint8",
    "collate": "timm_collate",
    "collate_hwc": "timm_collate",
}

MIX = ("mixup", "elem", "cutmix")
MAPS = ("seg", "classmix")  # images + label maps
ND = ("audio", "video")  # CutMix in 1-D and 3-D
COLLATE = ("collate", "collate_hwc")  # dense CHW samples, timm's ToNumpy (HWC) samples
IMG = ("mixup", "elem", "cutmix", "backward")
COMPILED = {"quick": False, "applies": theirs.compile_cases}

PROVIDERS: list[Provider] = [
    Provider("roofline_copy", "roofline: y.copy_(x)", "copy", IMG, baselines.roofline_copy, roofline=True),
    Provider(
        "roofline_inplace", "roofline: x.mul_(0.5)", "inplace", MIX + ND, baselines.roofline_inplace, roofline=True
    ),
    Provider(
        "roofline_inplace_maps",
        "roofline: x.mul_(0.5) + maps.bitwise_not_()",
        "inplace",
        ("seg",),
        baselines.roofline_inplace_maps,
        roofline=True,
    ),
    Provider(
        "roofline_inplace_maps",
        "roofline: x.mul_(0.5) + maps.bitwise_not_() + cut_mask.logical_not_()",
        "inplace",
        ("classmix",),
        baselines.roofline_inplace_maps,
        roofline=True,
    ),
    Provider(
        "roofline_convert",
        "roofline: y.copy_(x_uint8)",
        "convert",
        ("uint8",),
        baselines.roofline_convert,
        roofline=True,
    ),
    Provider(
        "roofline_collate",
        "roofline: plain uint8 collate",
        "collate",
        COLLATE,
        baselines.roofline_collate,
        roofline=True,
    ),
    Provider("reference", "mixup_fused reference", "copy", ("mixup",), baselines.reference, quick=False),
    Provider("dataset", "per-sample Dataset + DataLoader", "copy", ("elem",), theirs.dataset_mix),
    Provider("naive", "naive torch", "copy", ("mixup", "elem"), theirs.naive),
    Provider("naive", "naive torch", "convert", ("uint8",), theirs.naive_uint8),
    Provider("naive", "naive torch", "copy", ("cutmix",), theirs.naive_cutmix),
    Provider("naive_autograd", "naive torch (autograd)", "copy", ("backward",), theirs.naive_backward),
    Provider("loop", "per-sample loop (images+maps)", "inplace", MAPS, theirs.loop_maps),
    Provider("loop", "per-sample loop CutMix (slicing)", "inplace", ND, theirs.loop_cutmix),
    Provider("tv_mixup", "torchvision v2 MixUp", "copy", ("mixup",), theirs.tv_mixup),
    Provider("tv_cutmix", "torchvision v2 CutMix", "copy", ("cutmix",), theirs.tv_cutmix),
    Provider("kornia_mixup", "kornia RandomMixUpV2", "copy", ("elem",), theirs.kornia_mixup, quick=False),
    Provider("kornia_cutmix", "kornia RandomCutMixV2", "copy", ("cutmix",), theirs.kornia_cutmix, quick=False),
    Provider("timm_batch", "timm Mixup batch", "inplace", ("mixup",), theirs.timm_batch),
    Provider("timm_elem", "timm Mixup elem", "inplace", ("elem",), theirs.timm_elem),
    Provider("timm_pair", "timm Mixup pair", "inplace", ("elem",), theirs.timm_pair, quick=False),
    Provider("timm_cutmix", "timm Mixup cutmix", "inplace", ("cutmix",), theirs.timm_cutmix),
    Provider("timm_uint8", "timm path: float, normalise, Mixup, cast", "convert", ("uint8",), theirs.timm_uint8),
    Provider("timm_collate", "timm FastCollateMixup", "collate", COLLATE, theirs.timm_collate),
    Provider("compile", "torch.compile(naive)", "copy", ("mixup", "elem"), theirs.compiled_naive, **COMPILED),
    Provider("compile", "torch.compile(naive)", "convert", ("uint8",), theirs.compiled_naive, **COMPILED),
    Provider("compile", "torch.compile(naive) (autograd)", "copy", ("backward",), theirs.compiled_naive, **COMPILED),
    Provider("ours", "ours mix", "copy", MIX, ours.ours),
    Provider("ours_inplace", "ours mix in-place", "inplace", MIX + ND, ours.ours_inplace),
    Provider("ours_uint8", "ours mix uint8 (normalise+mix)", "convert", ("uint8",), ours.ours_uint8),
    Provider("ours_autograd", "ours mix (autograd)", "copy", ("backward",), ours.ours_backward),
    Provider("ours_mix_features", "ours mix_features (autograd)", "copy", ("backward",), ours.ours_features_backward),
    Provider("ours_Mixup_batch", "ours Mixup batch", "inplace", ("mixup",), ours.ours_mixup_batch),
    Provider("ours_Mixup_elem", "ours Mixup elem", "inplace", ("elem",), ours.ours_mixup_elem),
    Provider("ours_Mixup_pair", "ours Mixup pair", "inplace", ("elem",), ours.ours_mixup_pair, timm_key="timm_pair"),
    Provider("ours_Mixup_half", "ours Mixup half", "inplace", ("elem",), ours.ours_mixup_half, quick=False),
    Provider("ours_Mixup_cutmix", "ours Mixup cutmix", "inplace", ("cutmix",), ours.ours_mixup_cutmix),
    Provider("ours_MixUp", "ours MixUp (torchvision-style)", "copy", ("mixup",), ours.ours_tv_mixup),
    Provider("ours_CutMix", "ours CutMix (torchvision-style)", "copy", ("cutmix",), ours.ours_tv_cutmix),
    Provider("ours_inplace_maps", "ours mix in-place (images+maps)", "inplace", MAPS, ours.ours_inplace_maps),
    Provider("ours_Mixup_cutmix", "ours Mixup cutmix", "inplace", ND, ours.ours_mixup_cutmix_seeded),
    Provider("ours_FastCollateMixup", "ours FastCollateMixup", "collate", COLLATE, ours.ours_collate),
]


def providers_for(case: Case, *, quick: bool, only: set[str] | None = None, skip: set[str] | None = None):
    """The providers of ``case`` in this run (rooflines run whatever ``only`` says)."""
    out = []
    for p in PROVIDERS:
        if case.workload not in p.workloads:
            continue
        if quick and not p.quick:
            continue
        if p.applies is not None and not p.applies(case):
            continue
        if only and p.key not in only and not p.roofline:
            continue
        if skip and p.key in skip:
            continue
        out.append(p)
    return out


def availability() -> dict:
    """What was importable in this run (recorded in the results)."""
    out = {}
    for name, probe in (
        ("timm", theirs.timm_module),
        ("kornia", theirs.kornia_classes),
        ("torchvision", theirs.torchvision_module),
    ):
        try:
            probe()
            out[name] = True
        except Skip as s:
            out[name] = str(s)
    for name in ("Mixup", "MixUp", "CutMix", "FastCollateMixup", "mix_features", "sampling"):
        out[f"mixup_fused.{name}"] = hasattr(mixup_fused, name)
    return out
