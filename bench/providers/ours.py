"""Providers of mixup_fused: the functional op (out of place, in place, uint8,
autograd) and the drop-in classes ``Mixup``, ``MixUp``, ``CutMix``, each when
present in the build."""

from __future__ import annotations

import mixup_fused

from .. import peers
from ..cases import Inputs
from ..verify import COLLATE_MIX, check_backward, check_collate, check_mix, check_mix_inferred
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
    if c.workload == "cutmix":
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
