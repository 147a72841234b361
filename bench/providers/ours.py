"""Providers of mixup_fused: the functional op (out of place, in place, uint8,
autograd) and the drop-in classes ``Mixup``, ``MixUp``, ``CutMix``, each when
present in the build."""

from __future__ import annotations

import numpy as np

import mixup_fused

from .. import peers
from ..cases import SEEDED_CUT_WORKLOADS, Inputs
from ..verify import COLLATE_MIX, check_backward, check_collate, check_maps, check_mix, check_mix_inferred
from .base import Prepared, Skip, inferred_mixer, require_images, seed_everything


def ours_attr(name: str):
    obj = getattr(mixup_fused, name, None)
    if obj is None:
        raise Skip(f"mixup_fused.{name} is not in this build")
    return obj


# ---------------------------------------------------------------------------
# The functional op
# ---------------------------------------------------------------------------


def _mix_args(inp: Inputs):
    c = inp.case
    kw = {"num_classes": c.num_classes, "label_smoothing": c.label_smoothing}
    if c.workload == "elem":
        return inp.lam_vec, kw
    if c.workload in ("cutmix", *SEEDED_CUT_WORKLOADS):
        kw["boxes"] = inp.boxes
        return inp.box_lam, kw
    return inp.lam, kw


def ours(inp: Inputs) -> Prepared:
    lam, kw = _mix_args(inp)
    fn = lambda: mixup_fused.mix(inp.x, inp.target, inp.perm, lam, **kw)
    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, lam, boxes=kw.get("boxes")))


def ours_inplace(inp: Inputs) -> Prepared:
    lam, kw = _mix_args(inp)
    x = inp.x.clone()

    def check():
        xin = inp.x.clone()
        out, y = mixup_fused.mix(xin, inp.target, inp.perm, lam, inplace=True, **kw)
        if out.data_ptr() != xin.data_ptr():
            raise AssertionError("inplace=True did not return x itself")
        return check_mix(inp, out, y, inp.perm, lam, boxes=kw.get("boxes"))

    return Prepared(lambda: mixup_fused.mix(x, inp.target, inp.perm, lam, inplace=True, **kw), check)


def _cut_lam(inp: Inputs):
    """The label weight of the cut (it weights no targets here: the maps carry the labels)."""
    if inp.cut_mask is not None:
        return mixup_fused.sampling.mask_lam(inp.cut_mask)
    return inp.box_lam


def ours_inplace_maps(inp: Inputs) -> Prepared:
    """``mix(x, None, perm, lam, boxes= | cut_mask=, masks=maps, inplace=True)``:
    images and label maps cut in place in one call, no class targets."""
    cut = {"cut_mask": inp.cut_mask} if inp.cut_mask is not None else {"boxes": inp.boxes}
    lam = _cut_lam(inp)
    x, maps = inp.x.clone(), inp.maps.clone()

    def check():
        xin, min_ = inp.x.clone(), inp.maps.clone()
        out, y, maps_out = mixup_fused.mix(xin, None, inp.perm, lam, masks=min_, inplace=True, **cut)
        if out.data_ptr() != xin.data_ptr() or maps_out.data_ptr() != min_.data_ptr():
            raise AssertionError("inplace=True did not return x and masks themselves")
        if y is not None:
            raise AssertionError("target=None returned targets")
        return check_maps(inp, out, maps_out, inp.perm, lam, inplace=True, **cut)

    return Prepared(lambda: mixup_fused.mix(x, None, inp.perm, lam, masks=maps, inplace=True, **cut), check)


def ours_mixup_cutmix_seeded(inp: Inputs) -> Prepared:
    """``Mixup(mixup_alpha=0, cutmix_alpha=1)`` in place, host sampler, with
    ``np.random.seed(cut_seed)`` before every call: every call draws the same
    box (about half the volume), as the per-sample loop it is compared with."""
    Mixup = ours_attr("Mixup")
    c = inp.case
    mixer = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=c.label_smoothing, num_classes=c.num_classes)
    seed = inp.extra["cut_seed"]
    x = inp.x.clone()

    def fn():
        np.random.seed(seed)
        return mixer(x, inp.target)

    def check():
        xin = inp.x.clone()
        np.random.seed(seed)
        out, y = mixer(xin, inp.target)
        if out.data_ptr() != xin.data_ptr():
            raise AssertionError("Mixup did not mix x in place")
        return check_mix_inferred(inp, out, y, inp.perm, cutmix=True)

    return Prepared(fn, check, note=f"np.random.seed({seed}) before every call (the same box every call)")


def ours_uint8(inp: Inputs) -> Prepared:
    c = inp.case
    kw = {
        "num_classes": c.num_classes,
        "label_smoothing": c.label_smoothing,
        "mean": inp.mean,
        "std": inp.std,
        "out_dtype": c.out_dtype,
    }
    fn = lambda: mixup_fused.mix(inp.x, inp.target, inp.perm, inp.lam, **kw)
    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam))


def _backward(inp: Inputs, forward) -> Prepared:
    """``forward(h)`` then backward of the incoming gradient, lam a Python float."""
    h = inp.x.clone().requires_grad_(True)

    def fn():
        h.grad = None
        out = forward(h)
        out.backward(inp.grad)
        return out

    return Prepared(fn, lambda: check_backward(inp, fn(), h.grad, inp.perm, inp.lam))


def ours_backward(inp: Inputs) -> Prepared:
    num_classes = inp.case.num_classes
    return _backward(inp, lambda h: mixup_fused.mix(h, inp.target, inp.perm, inp.lam, num_classes=num_classes)[0])


def ours_features_backward(inp: Inputs) -> Prepared:
    mix_features = ours_attr("mix_features")

    def forward(h):
        out = mix_features(h, inp.perm, inp.lam)
        return out[0] if isinstance(out, tuple) else out

    return _backward(inp, forward)


# ---------------------------------------------------------------------------
# The drop-in classes
# ---------------------------------------------------------------------------


def _mixup_class(inp: Inputs, mode: str, *, cutmix: bool, rows=None) -> Prepared:
    Mixup = ours_attr("Mixup")
    c = inp.case
    kw = {"mixup_alpha": 0.0, "cutmix_alpha": 1.0} if cutmix else {"mixup_alpha": 1.0, "cutmix_alpha": 0.0}
    try:
        mixer = Mixup(mode=mode, label_smoothing=c.label_smoothing, num_classes=c.num_classes, **kw)
    except (TypeError, ValueError) as err:
        raise Skip(f"mixup_fused.Mixup(mode={mode!r}) refused: {err}") from err
    return inferred_mixer(inp, mixer, cutmix=cutmix, rows=rows)


def ours_mixup_batch(inp: Inputs) -> Prepared:
    return _mixup_class(inp, "batch", cutmix=False)


def ours_mixup_elem(inp: Inputs) -> Prepared:
    return _mixup_class(inp, "elem", cutmix=False)


def ours_mixup_pair(inp: Inputs) -> Prepared:
    return _mixup_class(inp, "pair", cutmix=False)


def ours_mixup_cutmix(inp: Inputs) -> Prepared:
    require_images(inp, "CutMix")
    return _mixup_class(inp, "batch", cutmix=True)


def ours_mixup_half(inp: Inputs) -> Prepared:
    """timm FastCollateMixup's 'half' mode: sample k of the first half is mixed
    with sample B - 1 - k (one draw per sample); only the first half is returned."""
    B = inp.case.batch
    return _mixup_class(inp, "half", cutmix=False, rows=B - B // 2)


def _tv_class(inp: Inputs, name: str, cutmix: bool) -> Prepared:
    """Our torchvision-style transform ``name`` ('MixUp' or 'CutMix'), checked from its output."""
    require_images(inp, name)
    op = ours_attr(name)(alpha=1.0, num_classes=inp.case.num_classes)
    perm = peers.tv_perm(inp.case.batch, inp.x.device)

    def check():
        seed_everything()
        out, y = op(inp.x, inp.target)
        return check_mix_inferred(inp, out, y, perm, cutmix=cutmix, label_smoothing=0.0)

    return Prepared(lambda: op(inp.x, inp.target), check)


def ours_tv_mixup(inp: Inputs) -> Prepared:
    return _tv_class(inp, "MixUp", cutmix=False)


def ours_tv_cutmix(inp: Inputs) -> Prepared:
    return _tv_class(inp, "CutMix", cutmix=True)


def ours_collate(inp: Inputs) -> Prepared:
    """``mixup_fused.FastCollateMixup`` as the DataLoader's ``collate_fn``."""
    c = inp.case
    mixer = ours_attr("FastCollateMixup")(num_classes=c.num_classes, label_smoothing=c.label_smoothing, **COLLATE_MIX)
    return Prepared(lambda: mixer(inp.samples), lambda: check_collate(inp, mixer))
