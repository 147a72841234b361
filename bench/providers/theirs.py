"""Providers of the peers in ``bench/peers.py``: naive torch, torch.compile, the
per-sample Dataset, timm, the torchvision op sequence and kornia."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .. import peers
from ..cases import Case, Inputs
from ..verify import (
    COLLATE_MIX,
    check_backward,
    check_collate,
    check_maps,
    check_mix,
    check_mix_inferred,
    check_targets,
)
from .base import Prepared, Skip, inferred_mixer, lam_tensor, mean_std_4d, require_images, seed_everything

# ---------------------------------------------------------------------------
# Optional peers, imported once per run
# ---------------------------------------------------------------------------

_loaded: dict[str, object] = {}
_load_errors: dict[str, str] = {}


def _optional(name: str, load):
    if name not in _loaded and name not in _load_errors:
        try:
            _loaded[name] = load()
        except Exception as err:  # ImportError, or an incompatible version
            _load_errors[name] = f"{type(err).__name__}: {err}"
    if name not in _loaded:
        raise Skip(f"{name} unavailable ({_load_errors[name]})")
    return _loaded[name]


def timm_module():
    """timm's ``data/mixup.py``, or Skip."""
    return _optional("timm", peers.load_timm)


def torchvision_module():
    """``torchvision.transforms.v2``, or Skip."""
    return _optional("torchvision", peers.torchvision_v2)


def kornia_classes():
    """kornia's ``(RandomMixUpV2, RandomCutMixV2)``, or Skip."""
    return _optional("kornia", peers.load_kornia)


# ---------------------------------------------------------------------------
# Naive torch and torch.compile
# ---------------------------------------------------------------------------


def naive(inp: Inputs) -> Prepared:
    c = inp.case
    if c.workload == "elem":
        fn = lambda: peers.naive_mix_per_sample(
            inp.x, inp.target, inp.perm, inp.lam_vec, c.num_classes, c.label_smoothing
        )
        return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam_vec))
    fn = lambda: peers.naive_mix(inp.x, inp.target, inp.perm, inp.lam, c.num_classes, c.label_smoothing)
    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam))


def naive_cutmix(inp: Inputs) -> Prepared:
    c = inp.case
    box = tuple(int(v) for v in inp.boxes[0])
    fn = lambda: peers.naive_cutmix(inp.x, inp.target, inp.perm, box, inp.box_lam, c.num_classes, c.label_smoothing)
    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.box_lam, boxes=inp.boxes))


def naive_uint8(inp: Inputs) -> Prepared:
    c = inp.case
    mean, std = mean_std_4d(inp)
    fn = lambda: peers.naive_normalize_mix(
        inp.x, inp.target, inp.perm, inp.lam, mean, std, c.out_dtype, c.num_classes, c.label_smoothing
    )
    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam))


def _features_backward(inp: Inputs, features) -> Prepared:
    """``features(h, perm, lam)`` forward, then backward of the incoming gradient."""
    h = inp.x.clone().requires_grad_(True)
    lam = lam_tensor(inp).to(h.dtype)

    def fn():
        h.grad = None
        out = features(h, inp.perm, lam)
        out.backward(inp.grad)
        return out

    return Prepared(fn, lambda: check_backward(inp, fn(), h.grad, inp.perm, float(lam)))


def naive_backward(inp: Inputs) -> Prepared:
    return _features_backward(inp, peers.naive_features)


def _compiled(fn):
    return torch.compile(fn, dynamic=False)


def compiled_naive(inp: Inputs) -> Prepared:
    """torch.compile of the naive function, perm and lam passed in as tensors."""
    c = inp.case
    if c.workload == "elem":
        f = _compiled(peers.naive_mix_per_sample)
        fn = lambda: f(inp.x, inp.target, inp.perm, inp.lam_vec, c.num_classes, c.label_smoothing)
        return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam_vec))
    if c.workload == "uint8":
        mean, std = mean_std_4d(inp)
        f = _compiled(peers.naive_normalize_mix)
        lam = lam_tensor(inp)
        fn = lambda: f(inp.x, inp.target, inp.perm, lam, mean, std, c.out_dtype, c.num_classes, c.label_smoothing)
        return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam))
    if c.workload == "backward":
        return _features_backward(inp, _compiled(peers.naive_features))
    f = _compiled(peers.naive_mix)
    lam = lam_tensor(inp)
    fn = lambda: f(inp.x, inp.target, inp.perm, lam, c.num_classes, c.label_smoothing)
    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam))


def compile_cases(case: Case) -> bool:
    """torch.compile compiles once per shape and dtype (tens of seconds on a cold
    cache): fp32 everywhere, other dtypes only at the ImageNet shapes."""
    if case.workload in ("backward", "uint8"):
        return case.shape[-1] >= 224 or case.workload == "backward"
    if case.workload == "elem":
        return case.dtype == torch.float32 and case.shape[-1] >= 224
    return case.dtype == torch.float32 or case.shape[-1] == 224


# ---------------------------------------------------------------------------
# Per-sample loops (segmentation, audio, video): out of place, on clones
# ---------------------------------------------------------------------------

LOOP_NOTE = "out of place (clones); held against the case's in-place roofline"


def loop_maps(inp: Inputs) -> Prepared:
    """CutMix-Seg (boxes, slicing) or ClassMix (``torch.where`` per sample) of
    the images and the label maps, one Python iteration per sample."""
    partners = inp.perm.tolist()
    if inp.cut_mask is not None:
        fn = lambda: peers.loop_classmix(inp.x, inp.maps, partners, inp.cut_mask)
        cut = {"cut_mask": inp.cut_mask}
        lam = 1.0
    else:
        boxes = [tuple(b) for b in inp.boxes.tolist()]
        fn = lambda: peers.loop_cut_boxes(inp.x, partners, boxes, inp.maps)
        cut = {"boxes": inp.boxes}
        lam = inp.box_lam

    def check():
        x_out, maps_out = fn()
        return check_maps(inp, x_out, maps_out, inp.perm, lam, **cut)

    return Prepared(fn, check, note=LOOP_NOTE)


def loop_cutmix(inp: Inputs) -> Prepared:
    """1-D / 3-D CutMix by slicing, one Python iteration per sample, and the
    mixed targets; the box drawn from ``np.random`` after ``np.random.seed(cut_seed)``
    before every call, as our ``Mixup`` draws it."""
    c = inp.case
    partners = inp.perm.tolist()
    seed = inp.extra["cut_seed"]

    def fn():
        np.random.seed(seed)
        box, lam = peers.cutmix_draw_nd(c.spatial)
        return peers.loop_cutmix(inp.x, inp.target, partners, box, lam, c.num_classes, c.label_smoothing)

    def check():
        x_out, y_out = fn()
        return check_mix_inferred(inp, x_out, y_out, inp.perm, cutmix=True)

    return Prepared(fn, check, note=f"np.random.seed({seed}) before every call; " + LOOP_NOTE)


# ---------------------------------------------------------------------------
# The article-style Dataset + DataLoader
# ---------------------------------------------------------------------------


def dataset_mix(inp: Inputs) -> Prepared:
    c = inp.case
    ds = peers.MixupDataset(inp.x, inp.target, c.num_classes)
    loader = peers.dataset_loader(ds)

    def check():
        ds.fixed_lams = inp.lam_vec.cpu().numpy()
        try:
            x_out, y_out = peers.next_batch(loader)
        finally:
            ds.fixed_lams = None
        perm = peers.dataset_perm(c.batch, inp.x.device)
        return check_mix(inp, x_out, y_out, perm, inp.lam_vec, label_smoothing=0.0)

    return Prepared(lambda: peers.next_batch(loader), check, note="one lam per sample, pairs i with i+1, no smoothing")


# ---------------------------------------------------------------------------
# timm
# ---------------------------------------------------------------------------


def _timm_mixer(inp: Inputs, **kw):
    c = inp.case
    return timm_module().Mixup(label_smoothing=c.label_smoothing, num_classes=c.num_classes, **kw)


def _timm_lam_atol(inp: Inputs) -> float:
    """timm's per-sample modes build lam as a tensor of x's dtype before mixing
    the targets (``torch.tensor(lam_batch, dtype=x.dtype)``), so in bf16/fp16 its
    targets weigh the pair with lam and 1 - lam each rounded to that dtype: they
    differ from the lam of its images, and need not sum to 1, by up to one eps."""
    dt = inp.case.out_dtype
    return float(torch.finfo(dt).eps) if dt in (torch.bfloat16, torch.float16) else 1e-5


def timm_batch(inp: Inputs) -> Prepared:
    return inferred_mixer(inp, _timm_mixer(inp, mixup_alpha=1.0, cutmix_alpha=0.0, mode="batch"), cutmix=False)


def timm_elem(inp: Inputs) -> Prepared:
    mixer = _timm_mixer(inp, mixup_alpha=1.0, cutmix_alpha=0.0, mode="elem")
    return inferred_mixer(inp, mixer, cutmix=False, lam_atol=_timm_lam_atol(inp))


def timm_pair(inp: Inputs) -> Prepared:
    mixer = _timm_mixer(inp, mixup_alpha=1.0, cutmix_alpha=0.0, mode="pair")
    return inferred_mixer(inp, mixer, cutmix=False, lam_atol=_timm_lam_atol(inp))


def timm_cutmix(inp: Inputs) -> Prepared:
    require_images(inp, "CutMix")
    return inferred_mixer(inp, _timm_mixer(inp, mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch"), cutmix=True)


def timm_uint8(inp: Inputs) -> Prepared:
    mixer = _timm_mixer(inp, mixup_alpha=1.0, cutmix_alpha=0.0, mode="batch")
    mean, std = mean_std_4d(inp)
    fn = lambda: peers.timm_uint8_mix(mixer, inp.x, inp.target, mean, std, inp.case.out_dtype)

    def check():
        seed_everything()
        out, y = fn()
        return check_mix_inferred(inp, out, y, inp.perm, cutmix=False)

    return Prepared(fn, check, note="x.float().sub_(mean).div_(std), Mixup fp32, cast")


# ---------------------------------------------------------------------------
# torchvision v2 (the real transforms)
# ---------------------------------------------------------------------------


def _tv(inp: Inputs, name: str, run, expected) -> Prepared:
    """torchvision's v2 ``name`` transform, checked on its own draws: ``run``
    is the peer's call that returns them, ``expected(params)`` the lam and
    boxes that ``check_mix`` compares with."""
    require_images(inp, f"torchvision's {name}")
    transform = getattr(torchvision_module(), name)(alpha=1.0, num_classes=inp.case.num_classes)
    c = inp.case

    def check():
        torch.manual_seed(1234)
        out, y, params = run(inp.x, inp.target, num_classes=c.num_classes, transform=transform)
        lam, boxes = expected(params)
        perm = peers.tv_perm(c.batch, inp.x.device)
        return check_mix(inp, out, y, perm, lam, boxes=boxes, label_smoothing=0.0)

    return Prepared(lambda: transform(inp.x, inp.target), check, note="roll(1, 0) pairing, no smoothing")


def tv_mixup(inp: Inputs) -> Prepared:
    return _tv(inp, "MixUp", peers.tv_mixup, lambda params: (params["lam"], None))


def tv_cutmix(inp: Inputs) -> Prepared:
    def expected(params):
        x1, y1, x2, y2 = params["box"]
        boxes = torch.tensor([[y1, y2, x1, x2]] * inp.case.batch, dtype=torch.int64, device=inp.x.device)
        return params["lam_adjusted"], boxes

    return _tv(inp, "CutMix", peers.tv_cutmix, expected)


# ---------------------------------------------------------------------------
# kornia
# ---------------------------------------------------------------------------


def _kornia_call(aug, x, target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return aug(x, target)


def _kornia(inp: Inputs, aug, draws, note: str) -> Prepared:
    """``draws(aug, labels) -> (perm, lam, boxes, class triples)``, read from the
    parameters kornia recorded in its last call."""
    c = inp.case

    def check():
        out, labels = _kornia_call(aug, inp.x, inp.target)
        perm, lam, boxes, triples = draws(aug, labels)
        result = check_mix(inp, out, None, perm, lam, boxes=boxes, label_smoothing=0.0)
        y = peers.kornia_dense_targets(triples, c.num_classes)
        result["max_abs_err_y"] = check_targets(inp, y, perm, lam, 0.0)
        return result

    return Prepared(lambda: _kornia_call(aug, inp.x, inp.target), check, note=note)


def kornia_mixup(inp: Inputs) -> Prepared:
    require_images(inp, "kornia")
    RandomMixUpV2, _ = kornia_classes()
    device = inp.x.device

    def draws(aug, labels):
        lam = 1.0 - aug._params["mixup_lambdas"].to(device).double()
        return aug._params["mixup_pairs"].to(device), lam, None, labels

    aug = RandomMixUpV2(p=1.0, data_keys=["input", "class"])
    return _kornia(inp, aug, draws, "per-sample lam, random pairing; targets as (label, label, weight) triples")


def kornia_cutmix(inp: Inputs) -> Prepared:
    require_images(inp, "kornia")
    _, RandomCutMixV2 = kornia_classes()
    device = inp.x.device
    H, W = inp.case.shape[-2:]

    def draws(aug, labels):
        boxes = peers.kornia_boxes(aug._params["crop_src"][0]).to(device)
        area = ((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).double()
        return aug._params["mix_pairs"][0].to(device), 1.0 - area / (H * W), boxes, labels[0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aug = RandomCutMixV2(p=1.0, data_keys=["input", "class"])
    return _kornia(inp, aug, draws, "per-sample boxes, random pairing; targets as (label, label, weight) triples")


def timm_collate(inp: Inputs) -> Prepared:
    """timm's ``FastCollateMixup`` as the DataLoader's ``collate_fn``."""
    c = inp.case
    mixer = timm_module().FastCollateMixup(num_classes=c.num_classes, label_smoothing=c.label_smoothing, **COLLATE_MIX)
    # (timm writes into the samples in its 'half' and 'pair' modes, not in 'elem': the samples are reused.)
    return Prepared(lambda: mixer(inp.samples), lambda: check_collate(inp, mixer))
