"""Providers: one way of doing a case's work, ready to be verified and timed.

A provider's ``prepare(inputs)`` returns ``Prepared(fn, check)``: ``fn()`` is
the timed call (it may draw random numbers, as its library does in a training
step), and ``check()`` runs it once with known or recoverable draws and compares
the result with the reference (``verify.py``). A provider that does not apply
raises ``Skip`` with the reason.

``kind`` names the roofline a provider is held against: ``copy`` (out of place:
``y.copy_(x)`` into a preallocated ``y``), ``inplace`` (``x.mul_(0.5)``) or
``convert`` (uint8 in, float out: ``y.copy_(x_uint8)``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import mixup_fused
from mixup_fused.reference import mix_reference, naive_mix

from . import peers
from .cases import Case, Inputs
from .verify import check_backward, check_mix, check_mix_inferred, check_targets


class Skip(Exception):
    """The provider does not apply here (missing package, unsupported input)."""


@dataclass
class Prepared:
    fn: Callable[[], object]
    check: Callable[[], dict]
    note: str = ""


@dataclass
class Provider:
    key: str
    label: str
    kind: str  # copy | inplace | convert
    workloads: tuple[str, ...]
    prepare: Callable[[Inputs], Prepared]
    quick: bool = True
    timm_key: str | None = None  # the timm provider this one is compared with (default: the case's)
    roofline: bool = False
    applies: Callable[[Case], bool] | None = None  # a subset of the workload's cases (to bound the run time)


TIMM_BASELINE = {"mixup": "timm_batch", "elem": "timm_elem", "cutmix": "timm_cutmix", "uint8": "timm_uint8"}

# ---------------------------------------------------------------------------
# Optional peers and optional parts of our own package, detected once
# ---------------------------------------------------------------------------

_timm = None
_timm_error: str | None = None
_kornia = None
_kornia_error: str | None = None


def timm_module():
    global _timm, _timm_error
    if _timm is None and _timm_error is None:
        try:
            _timm = peers.load_timm_mixup()
        except Exception as err:  # ImportError, or an incompatible timm
            _timm_error = f"{type(err).__name__}: {err}"
    if _timm is None:
        raise Skip(f"timm unavailable ({_timm_error})")
    return _timm


def kornia_classes():
    global _kornia, _kornia_error
    if _kornia is None and _kornia_error is None:
        try:
            _kornia = peers.load_kornia()
        except Exception as err:
            _kornia_error = f"{type(err).__name__}: {err}"
    if _kornia is None:
        raise Skip(f"kornia unavailable ({_kornia_error})")
    return _kornia


def ours_attr(name: str):
    obj = getattr(mixup_fused, name, None)
    if obj is None:
        raise Skip(f"mixup_fused.{name} is not in this build")
    return obj


def availability() -> dict:
    """What was importable in this run (recorded in the results)."""
    out = {}
    for name, probe in (("timm", timm_module), ("kornia", kornia_classes)):
        try:
            probe()
            out[name] = True
        except Skip as s:
            out[name] = str(s)
    for name in ("Mixup", "MixUp", "CutMix", "mix_features", "sampling"):
        out[f"mixup_fused.{name}"] = hasattr(mixup_fused, name)
    return out


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _seed_everything(seed: int = 1234) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def _mean_std_4d(inp: Inputs):
    return inp.mean.view(1, -1, 1, 1), inp.std.view(1, -1, 1, 1)


def _lam_tensor(inp: Inputs) -> torch.Tensor:
    return torch.tensor(inp.lam, dtype=torch.float32, device=inp.x.device)


def _require_images(inp: Inputs, who: str) -> None:
    if inp.x.dim() != 4:
        raise Skip(f"{who} takes [B, C, H, W] images")


def _timm_lam_atol(inp: Inputs) -> float:
    """timm's per-sample modes build lam as a tensor of x's dtype before mixing
    the targets (``torch.tensor(lam_batch, dtype=x.dtype)``), so in bf16/fp16 its
    targets weigh the pair with lam and 1 - lam each rounded to that dtype: they
    differ from the lam of its images, and need not sum to 1, by up to one eps."""
    dt = inp.case.out_dtype
    return float(torch.finfo(dt).eps) if dt in (torch.bfloat16, torch.float16) else 1e-5


# ---------------------------------------------------------------------------
# Rooflines
# ---------------------------------------------------------------------------


def roofline_copy(inp: Inputs) -> Prepared:
    x = inp.x if inp.case.workload != "backward" else inp.x.clone()
    y = torch.empty_like(x)
    return Prepared(lambda: y.copy_(x), lambda: {"roofline": "y.copy_(x)"})


def roofline_inplace(inp: Inputs) -> Prepared:
    x = inp.x.clone()
    # Alternate 0.5 and 2.0 so that repeated calls neither underflow to denormals nor change the cost.
    state = {"k": 0}

    def fn():
        state["k"] ^= 1
        return x.mul_(0.5 if state["k"] else 2.0)

    return Prepared(fn, lambda: {"roofline": "x.mul_(0.5)"})


def roofline_convert(inp: Inputs) -> Prepared:
    y = torch.empty(inp.x.shape, dtype=inp.case.out_dtype, device=inp.x.device)
    return Prepared(lambda: y.copy_(inp.x), lambda: {"roofline": f"y_{inp.case.out_dtype}.copy_(x_uint8)"})


# ---------------------------------------------------------------------------
# Reference, naive torch, torch.compile
# ---------------------------------------------------------------------------


def reference(inp: Inputs) -> Prepared:
    c = inp.case
    lam = inp.lam_vec if c.workload == "elem" else torch.full_like(inp.lam_vec, inp.lam)

    def fn():
        ls = c.label_smoothing
        return mix_reference(inp.x, inp.target, inp.perm, lam, num_classes=c.num_classes, label_smoothing=ls)

    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, lam))


def naive(inp: Inputs) -> Prepared:
    c = inp.case
    if c.workload == "elem":
        fn = lambda: peers.naive_mix_per_sample(
            inp.x, inp.target, inp.perm, inp.lam_vec, c.num_classes, c.label_smoothing
        )
        return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam_vec))
    fn = lambda: naive_mix(inp.x, inp.target, inp.perm, inp.lam, c.num_classes, c.label_smoothing)
    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam))


def naive_cutmix(inp: Inputs) -> Prepared:
    c = inp.case
    y0, y1, x0, x1 = (int(v) for v in inp.boxes[0])

    def fn():
        out = inp.x.clone()
        out[:, :, y0:y1, x0:x1] = inp.x[inp.perm][:, :, y0:y1, x0:x1]
        y = torch.nn.functional.one_hot(inp.target, c.num_classes).float()
        y = y * (1.0 - c.label_smoothing) + c.label_smoothing / c.num_classes
        return out, inp.box_lam * y + (1 - inp.box_lam) * y[inp.perm]

    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.box_lam, boxes=inp.boxes))


def naive_uint8(inp: Inputs) -> Prepared:
    c = inp.case
    mean, std = _mean_std_4d(inp)
    fn = lambda: peers.naive_normalize_mix(
        inp.x, inp.target, inp.perm, inp.lam, mean, std, c.out_dtype, c.num_classes, c.label_smoothing
    )
    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam))


def naive_backward(inp: Inputs) -> Prepared:
    h = inp.x.clone().requires_grad_(True)
    lam = _lam_tensor(inp).to(h.dtype)

    def fn():
        h.grad = None
        out = peers.naive_features(h, inp.perm, lam)
        out.backward(inp.grad)
        return out

    def check():
        out = fn()
        return check_backward(inp, out, h.grad, inp.perm, float(lam))

    return Prepared(fn, check)


def _compiled(fn):
    return torch.compile(fn, dynamic=False)


def compiled_naive(inp: Inputs) -> Prepared:
    """torch.compile of the naive function; perm and lam are passed in as
    tensors (a Python float lam recompiles on every new value)."""
    c = inp.case
    if c.workload == "elem":
        f = _compiled(peers.naive_mix_per_sample)
        fn = lambda: f(inp.x, inp.target, inp.perm, inp.lam_vec, c.num_classes, c.label_smoothing)
        return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam_vec))
    if c.workload == "uint8":
        mean, std = _mean_std_4d(inp)
        f = _compiled(peers.naive_normalize_mix)
        lam = _lam_tensor(inp)
        fn = lambda: f(inp.x, inp.target, inp.perm, lam, mean, std, c.out_dtype, c.num_classes, c.label_smoothing)
        return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam))
    if c.workload == "backward":
        f = _compiled(peers.naive_features)
        h = inp.x.clone().requires_grad_(True)
        lam = _lam_tensor(inp).to(h.dtype)

        def fn():
            h.grad = None
            out = f(h, inp.perm, lam)
            out.backward(inp.grad)
            return out

        return Prepared(fn, lambda: check_backward(inp, fn(), h.grad, inp.perm, float(lam)))
    f = _compiled(naive_mix)
    lam = _lam_tensor(inp)
    fn = lambda: f(inp.x, inp.target, inp.perm, lam, c.num_classes, c.label_smoothing)
    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, inp.lam))


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
    timm = timm_module()
    c = inp.case
    return timm.Mixup(label_smoothing=c.label_smoothing, num_classes=c.num_classes, **kw)


def _timm_like(inp: Inputs, mixer, *, cutmix: bool, lam_atol: float = 1e-5, rows=None) -> Prepared:
    """A timm-style in-place ``mixer(x, target) -> (x, y)`` on a private copy of x."""
    y_atol = max(2e-6, lam_atol)
    x = inp.x.clone()

    def check():
        _seed_everything()
        xin = inp.x.clone()
        out, y = mixer(xin, inp.target)
        return check_mix_inferred(inp, out, y, inp.perm, cutmix=cutmix, lam_atol=lam_atol, y_atol=y_atol, rows=rows)

    return Prepared(lambda: mixer(x, inp.target), check)


def timm_batch(inp: Inputs) -> Prepared:
    return _timm_like(inp, _timm_mixer(inp, mixup_alpha=1.0, cutmix_alpha=0.0, mode="batch"), cutmix=False)


def timm_elem(inp: Inputs) -> Prepared:
    mixer = _timm_mixer(inp, mixup_alpha=1.0, cutmix_alpha=0.0, mode="elem")
    return _timm_like(inp, mixer, cutmix=False, lam_atol=_timm_lam_atol(inp))


def timm_pair(inp: Inputs) -> Prepared:
    mixer = _timm_mixer(inp, mixup_alpha=1.0, cutmix_alpha=0.0, mode="pair")
    return _timm_like(inp, mixer, cutmix=False, lam_atol=_timm_lam_atol(inp))


def timm_cutmix(inp: Inputs) -> Prepared:
    _require_images(inp, "CutMix")
    return _timm_like(inp, _timm_mixer(inp, mixup_alpha=0.0, cutmix_alpha=1.0, mode="batch"), cutmix=True)


def timm_uint8(inp: Inputs) -> Prepared:
    mixer = _timm_mixer(inp, mixup_alpha=1.0, cutmix_alpha=0.0, mode="batch")
    mean, std = _mean_std_4d(inp)
    run = peers.timm_uint8_path(mixer, mean, std, inp.case.out_dtype)

    def check():
        _seed_everything()
        out, y = run(inp.x, inp.target)
        return check_mix_inferred(inp, out, y, inp.perm, cutmix=False)

    return Prepared(lambda: run(inp.x, inp.target), check, note="x.float().sub_(mean).div_(std), Mixup fp32, cast")


# ---------------------------------------------------------------------------
# torchvision v2 op sequence
# ---------------------------------------------------------------------------


def tv_mixup(inp: Inputs) -> Prepared:
    _require_images(inp, "torchvision's MixUp")
    c = inp.case
    op = peers.TorchvisionMixUp(1.0, c.num_classes)

    def check():
        out, y = peers.tv_mixup_apply(inp.x, inp.target, inp.lam, c.num_classes)
        return check_mix(inp, out, y, peers.tv_perm(c.batch, inp.x.device), inp.lam, label_smoothing=0.0)

    return Prepared(lambda: op(inp.x, inp.target), check, note="roll(1, 0) pairing, no smoothing")


def tv_cutmix(inp: Inputs) -> Prepared:
    _require_images(inp, "torchvision's CutMix")
    c = inp.case
    op = peers.TorchvisionCutMix(1.0, c.num_classes)
    y0, y1, x0, x1 = (int(v) for v in inp.boxes[0])

    def check():
        out, y = peers.tv_cutmix_apply(inp.x, inp.target, (x0, y0, x1, y1), inp.box_lam, c.num_classes)
        perm = peers.tv_perm(c.batch, inp.x.device)
        return check_mix(inp, out, y, perm, inp.box_lam, boxes=inp.boxes, label_smoothing=0.0)

    return Prepared(lambda: op(inp.x, inp.target), check, note="roll(1, 0) pairing, no smoothing")


# ---------------------------------------------------------------------------
# kornia
# ---------------------------------------------------------------------------


def _kornia_call(aug, x, target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return aug(x, target)


def kornia_mixup(inp: Inputs) -> Prepared:
    _require_images(inp, "kornia")
    RandomMixUpV2, _ = kornia_classes()
    c = inp.case
    aug = RandomMixUpV2(p=1.0, data_keys=["input", "class"])

    def check():
        out, labels = _kornia_call(aug, inp.x, inp.target)
        perm = aug._params["mixup_pairs"].to(inp.x.device)
        lam = 1.0 - aug._params["mixup_lambdas"].to(inp.x.device).double()
        result = check_mix(inp, out, None, perm, lam, label_smoothing=0.0)
        y = peers.kornia_dense_targets(labels, c.num_classes)
        result["max_abs_err_y"] = check_targets(inp, y, perm, lam, 0.0)
        return result

    return Prepared(
        lambda: _kornia_call(aug, inp.x, inp.target),
        check,
        note="per-sample lam, random pairing; targets as (label, label, weight) triples",
    )


def kornia_cutmix(inp: Inputs) -> Prepared:
    _require_images(inp, "kornia")
    _, RandomCutMixV2 = kornia_classes()
    c = inp.case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aug = RandomCutMixV2(p=1.0, data_keys=["input", "class"])

    def check():
        out, labels = _kornia_call(aug, inp.x, inp.target)
        perm = aug._params["mix_pairs"][0].to(inp.x.device)
        boxes = peers.kornia_boxes(aug._params["crop_src"][0]).to(inp.x.device)
        H, W = c.shape[-2:]
        area = ((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).double()
        lam = 1.0 - area / (H * W)
        result = check_mix(inp, out, None, perm, lam, boxes=boxes, label_smoothing=0.0)
        y = peers.kornia_dense_targets(labels[0], c.num_classes)
        result["max_abs_err_y"] = check_targets(inp, y, perm, lam, 0.0)
        return result

    return Prepared(
        lambda: _kornia_call(aug, inp.x, inp.target),
        check,
        note="per-sample boxes, random pairing; targets as (label, label, weight) triples",
    )


# ---------------------------------------------------------------------------
# Ours: the functional op
# ---------------------------------------------------------------------------


def _ours_args(inp: Inputs):
    c = inp.case
    kw = {"num_classes": c.num_classes, "label_smoothing": c.label_smoothing}
    if c.workload == "elem":
        return inp.lam_vec, kw
    if c.workload == "cutmix":
        kw["boxes"] = inp.boxes
        return inp.box_lam, kw
    return inp.lam, kw


def ours(inp: Inputs) -> Prepared:
    lam, kw = _ours_args(inp)
    fn = lambda: mixup_fused.mix(inp.x, inp.target, inp.perm, lam, **kw)
    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, lam, boxes=kw.get("boxes")))


def ours_inplace(inp: Inputs) -> Prepared:
    lam, kw = _ours_args(inp)
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


def ours_backward(inp: Inputs) -> Prepared:
    c = inp.case
    h = inp.x.clone().requires_grad_(True)

    def fn():
        h.grad = None
        out, _ = mixup_fused.mix(h, inp.target, inp.perm, inp.lam, num_classes=c.num_classes)
        out.backward(inp.grad)
        return out

    return Prepared(fn, lambda: check_backward(inp, fn(), h.grad, inp.perm, inp.lam))


def ours_features_backward(inp: Inputs) -> Prepared:
    mix_features = ours_attr("mix_features")
    h = inp.x.clone().requires_grad_(True)
    lam = inp.lam

    def fn():
        h.grad = None
        out = mix_features(h, inp.perm, lam)
        out = out[0] if isinstance(out, tuple) else out
        out.backward(inp.grad)
        return out

    return Prepared(fn, lambda: check_backward(inp, fn(), h.grad, inp.perm, lam))


# ---------------------------------------------------------------------------
# Ours: the drop-in classes (mixup_fused.Mixup, MixUp, CutMix), when present
# ---------------------------------------------------------------------------


def _ours_mixup_class(inp: Inputs, mode: str, *, cutmix: bool, rows=None) -> Prepared:
    Mixup = ours_attr("Mixup")
    c = inp.case
    kw = {"mixup_alpha": 0.0, "cutmix_alpha": 1.0} if cutmix else {"mixup_alpha": 1.0, "cutmix_alpha": 0.0}
    try:
        mixer = Mixup(mode=mode, label_smoothing=c.label_smoothing, num_classes=c.num_classes, **kw)
    except (TypeError, ValueError) as err:
        raise Skip(f"mixup_fused.Mixup(mode={mode!r}) refused: {err}") from err
    return _timm_like(inp, mixer, cutmix=cutmix, rows=rows)


def ours_mixup_batch(inp: Inputs) -> Prepared:
    return _ours_mixup_class(inp, "batch", cutmix=False)


def ours_mixup_elem(inp: Inputs) -> Prepared:
    return _ours_mixup_class(inp, "elem", cutmix=False)


def ours_mixup_pair(inp: Inputs) -> Prepared:
    return _ours_mixup_class(inp, "pair", cutmix=False)


def ours_mixup_cutmix(inp: Inputs) -> Prepared:
    _require_images(inp, "CutMix")
    return _ours_mixup_class(inp, "batch", cutmix=True)


def ours_mixup_half(inp: Inputs) -> Prepared:
    """timm FastCollateMixup's 'half' mode: sample k of the first half is mixed
    with sample B - 1 - k (one draw per sample); only the first half is returned."""
    B = inp.case.batch
    return _ours_mixup_class(inp, "half", cutmix=False, rows=B - B // 2)


def _ours_tv(inp: Inputs, name: str, cutmix: bool) -> Prepared:
    """Our torchvision-style transform ``name`` ('MixUp' or 'CutMix'), checked from its output."""
    _require_images(inp, name)
    op = ours_attr(name)(alpha=1.0, num_classes=inp.case.num_classes)
    perm = peers.tv_perm(inp.case.batch, inp.x.device)

    def check():
        _seed_everything()
        out, y = op(inp.x, inp.target)
        return check_mix_inferred(inp, out, y, perm, cutmix=cutmix, label_smoothing=0.0)

    return Prepared(lambda: op(inp.x, inp.target), check)


def ours_tv_mixup(inp: Inputs) -> Prepared:
    return _ours_tv(inp, "MixUp", cutmix=False)


def ours_tv_cutmix(inp: Inputs) -> Prepared:
    return _ours_tv(inp, "CutMix", cutmix=True)


# ---------------------------------------------------------------------------
# The registry, in table order
# ---------------------------------------------------------------------------


def _compile_cases(case: Case) -> bool:
    """torch.compile compiles once per shape and dtype (tens of seconds on a cold
    cache): fp32 everywhere, other dtypes only at the ImageNet shapes."""
    if case.workload in ("backward", "uint8"):
        return case.shape[-1] >= 224 or case.workload == "backward"
    if case.workload == "elem":
        return case.dtype == torch.float32 and case.shape[-1] >= 224
    return case.dtype == torch.float32 or case.shape[-1] == 224


MIX = ("mixup", "elem", "cutmix")
IMG = ("mixup", "elem", "cutmix", "backward")

PROVIDERS: list[Provider] = [
    Provider("roofline_copy", "roofline: y.copy_(x)", "copy", IMG, roofline_copy, roofline=True),
    Provider("roofline_inplace", "roofline: x.mul_(0.5)", "inplace", MIX, roofline_inplace, roofline=True),
    Provider("roofline_convert", "roofline: y.copy_(x_uint8)", "convert", ("uint8",), roofline_convert, roofline=True),
    Provider("reference", "mixup_fused reference", "copy", ("mixup",), reference, quick=False),
    Provider("dataset", "per-sample Dataset + DataLoader", "copy", ("elem",), dataset_mix),
    Provider("naive", "naive torch", "copy", ("mixup", "elem"), naive),
    Provider("naive", "naive torch", "convert", ("uint8",), naive_uint8),
    Provider("naive", "naive torch", "copy", ("cutmix",), naive_cutmix),
    Provider("naive_autograd", "naive torch (autograd)", "copy", ("backward",), naive_backward),
    Provider("tv_mixup", "torchvision v2 MixUp ops", "copy", ("mixup",), tv_mixup),
    Provider("tv_cutmix", "torchvision v2 CutMix ops", "copy", ("cutmix",), tv_cutmix),
    Provider("kornia_mixup", "kornia RandomMixUpV2", "copy", ("elem",), kornia_mixup, quick=False),
    Provider("kornia_cutmix", "kornia RandomCutMixV2", "copy", ("cutmix",), kornia_cutmix, quick=False),
    Provider("timm_batch", "timm Mixup batch", "inplace", ("mixup",), timm_batch),
    Provider("timm_elem", "timm Mixup elem", "inplace", ("elem",), timm_elem),
    Provider("timm_pair", "timm Mixup pair", "inplace", ("elem",), timm_pair, quick=False),
    Provider("timm_cutmix", "timm Mixup cutmix", "inplace", ("cutmix",), timm_cutmix),
    Provider("timm_uint8", "timm path: float, normalise, Mixup, cast", "convert", ("uint8",), timm_uint8),
    Provider(
        "compile", "torch.compile(naive)", "copy", ("mixup", "elem"), compiled_naive, False, applies=_compile_cases
    ),
    Provider("compile", "torch.compile(naive)", "convert", ("uint8",), compiled_naive, False, applies=_compile_cases),
    Provider(
        "compile",
        "torch.compile(naive) (autograd)",
        "copy",
        ("backward",),
        compiled_naive,
        False,
        applies=_compile_cases,
    ),
    Provider("ours", "ours mix", "copy", MIX, ours),
    Provider("ours_inplace", "ours mix in-place", "inplace", MIX, ours_inplace),
    Provider("ours_uint8", "ours mix uint8 (normalise+mix)", "convert", ("uint8",), ours_uint8),
    Provider("ours_autograd", "ours mix (autograd)", "copy", ("backward",), ours_backward),
    Provider("ours_mix_features", "ours mix_features (autograd)", "copy", ("backward",), ours_features_backward),
    Provider("ours_Mixup_batch", "ours Mixup batch", "inplace", ("mixup",), ours_mixup_batch),
    Provider("ours_Mixup_elem", "ours Mixup elem", "inplace", ("elem",), ours_mixup_elem),
    Provider("ours_Mixup_pair", "ours Mixup pair", "inplace", ("elem",), ours_mixup_pair, timm_key="timm_pair"),
    Provider("ours_Mixup_half", "ours Mixup half", "inplace", ("elem",), ours_mixup_half, quick=False),
    Provider("ours_Mixup_cutmix", "ours Mixup cutmix", "inplace", ("cutmix",), ours_mixup_cutmix),
    Provider("ours_MixUp", "ours MixUp (torchvision-style)", "copy", ("mixup",), ours_tv_mixup),
    Provider("ours_CutMix", "ours CutMix (torchvision-style)", "copy", ("cutmix",), ours_tv_cutmix),
]


def providers_for(case: Case, *, quick: bool, only: set[str] | None = None, skip: set[str] | None = None):
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
