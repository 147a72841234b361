"""mixup_fused.Mixup as a drop-in for timm's Mixup / FastCollateMixup, draw for draw.

timm is loaded as ``bench.peers.load_timm`` loads it (by file path where
``import timm`` would need torchvision).

With numpy's global RNG seeded the same way, both must draw the same lam,
boxes and pairing, consume the RNG identically, and give the same images and
targets up to rounding:

* float32 images: a few ulp (of the operands' magnitude);
* bfloat16 images: we compute in float32 and round once, timm rounds each of
  its 2-3 bf16 operations. Where we differ from timm by more than 1 bf16 ulp,
  we must be the closer of the two to the float64 result; everywhere we must
  be within half a bf16 ulp (plus float32 noise) of it;
* targets: float32 rounding of timm's targets computed with the float32 lam.
  timm's 'elem' / 'pair' modes round lam to x.dtype for the targets
  (``torch.tensor(lam_batch, dtype=x.dtype)``); we keep the float32 lam that
  the images use, so with bf16 images we differ from timm by at most that
  rounding of lam.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
import torch
from conftest import MIXUP_CONFIGS as CONFIGS
from conftest import timm_module, ulp

from mixup_fused import Mixup, sampling
from mixup_fused.reference import NO_BOX, mix_images_reference

B, C, H, W = 10, 3, 16, 16
K = 10
SEEDS = range(4)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# ----------------------------------------------------------------------------
# timm, loaded by path, with its draws recorded
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timm_mixup():
    return timm_module("data/mixup.py")


class Recorder:
    """Runs a timm mixer and records what it drew: per-row params and each box."""

    def __init__(self, tm, mixer):
        self.tm, self.mixer = tm, mixer
        self.params, self.boxes = [], []

    def __call__(self, *args):
        tm, m = self.tm, self.mixer
        per_elem, per_batch, cut = m._params_per_elem, m._params_per_batch, tm.cutmix_bbox_and_lam

        def rec_elem(n):
            lam, use = per_elem(n)
            self.params.append((lam.copy(), np.array(use, dtype=bool).copy()))
            return lam, use

        def rec_batch():
            lam, use = per_batch()
            self.params.append((lam, bool(use)))
            return lam, use

        def rec_cut(*a, **k):
            box, lam = cut(*a, **k)
            self.boxes.append((tuple(int(v) for v in box), lam))
            return box, lam

        m._params_per_elem, m._params_per_batch, tm.cutmix_bbox_and_lam = rec_elem, rec_batch, rec_cut
        try:
            return m(*args)
        finally:
            del m._params_per_elem, m._params_per_batch
            tm.cutmix_bbox_and_lam = cut

    def rows(self, mode: str, batch_size: int):
        """timm's draws as per-sample rows: (lam float64 [B], box per sample or None)."""
        (lam_n, use_n) = self.params[0]
        boxes = iter(self.boxes)
        if mode == "batch":
            lam, box = float(lam_n), None
            if lam != 1.0 and use_n:
                box, lam = next(boxes)
            lam_rows, box_rows = np.full(batch_size, float(lam)), [box] * batch_size
        else:
            lam_n = lam_n.copy()
            box_n = [None] * len(lam_n)
            for k in range(len(lam_n)):
                if lam_n[k] != 1.0 and use_n[k]:
                    box_n[k], lam_k = next(boxes)
                    lam_n[k] = lam_k  # timm stores it in its float32 array
            lam_rows, box_rows = np.ones(batch_size), [None] * batch_size
            for k in range(len(lam_n)):
                for i in (k, batch_size - 1 - k) if mode == "pair" else (k,):
                    lam_rows[i], box_rows[i] = lam_n[k], box_n[k]
        assert next(boxes, None) is None, "timm drew more boxes than the recorded rows use"
        return lam_rows, box_rows


# ----------------------------------------------------------------------------
# Comparison helpers
# ----------------------------------------------------------------------------


def assert_same_draws(params: sampling.MixParams, rec: Recorder, mode: str, batch_size: int):
    lam_rows, box_rows = rec.rows(mode, batch_size)
    assert params.perm.tolist() == list(range(batch_size - 1, -1, -1)), "pairing differs from timm's flip"
    np.testing.assert_array_equal(params.lam.numpy(), lam_rows, err_msg="lam differs from timm's")
    for i, box in enumerate(box_rows):
        if box is None:
            assert params.boxes is None or tuple(params.boxes[i].tolist()) in (NO_BOX, (0, 0, 0, 0))
        else:
            assert params.boxes is not None and tuple(params.boxes[i].tolist()) == box, f"box of sample {i}"


def image_errors(ours, theirs, x, params):
    """Check images; return (max |ours - timm| in ulp, max |ours - exact| in ulp)."""
    dtype = x.dtype
    exact = mix_images_reference(x.double(), params.perm, params.lam.double(), params.boxes)
    o, t = ours.double(), theirs.double()
    operands = torch.maximum(x.double().abs(), x.double()[params.perm].abs())
    fp32_noise = 4 * ulp(operands, torch.float32)
    if dtype == torch.float32:
        d = (o - t).abs() / ulp(operands, torch.float32)
        assert d.max() <= 4, f"float32 images differ from timm by {d.max():.1f} ulp"
        return float(d.max()), float(((o - exact).abs() / ulp(operands, torch.float32)).max())
    # bfloat16: we round once, so we are within half an ulp of the exact result (plus fp32 noise).
    err_ours = (o - exact).abs()
    assert (err_ours <= 0.5 * ulp(exact, dtype) + fp32_noise).all(), "bf16 images are not correctly rounded"
    d = (o - t).abs() / ulp(torch.maximum(o.abs(), t.abs()), dtype)
    wide = d > 1
    # Where we differ from timm by more than 1 ulp, timm's extra roundings are the cause: we are closer.
    assert (err_ours[wide] <= (t - exact).abs()[wide]).all(), "differs from timm by > 1 bf16 ulp and is not closer"
    return float(d.max()), float((err_ours / ulp(exact, dtype)).max())


def timm_targets_f32_lam(tm, target, lam_rows, smoothing):
    lam = torch.tensor(lam_rows, dtype=torch.float32).unsqueeze(1)
    return tm.mixup_target(target, K, lam, smoothing)


def check_targets(tm, ours, theirs, target, lam_rows, smoothing, mode, dtype):
    expected = timm_targets_f32_lam(tm, target, lam_rows, smoothing) if mode != "batch" else theirs
    torch.testing.assert_close(ours, expected, rtol=0, atol=2**-22)
    if mode != "batch" and dtype != torch.float32:
        # timm rounds lam, then 1 - lam, to x.dtype for the targets: the gap is at most those roundings.
        lam32 = torch.tensor(lam_rows, dtype=torch.float32)
        lam_low = lam32.to(dtype)
        gap = (lam32 - lam_low.float()).abs() + ((1 - lam32) - (1 - lam_low).float()).abs()
        gap = gap.unsqueeze(1)
        bad = (ours - theirs).abs() > gap + 2**-22
        assert not bad.any(), ((ours - theirs).abs()[bad], gap.expand_as(bad)[bad], bad.nonzero())
    else:
        torch.testing.assert_close(ours, theirs, rtol=0, atol=2**-22)


def run_both(tm, kw, mode, x, target, seed):
    np.random.seed(seed)
    rec = Recorder(tm, tm.Mixup(mode=mode, num_classes=K, **kw))
    x_timm = x.clone()
    xt, yt = rec(x_timm, target)
    after_timm = np.random.random(4)

    ours = Mixup(mode=mode, num_classes=K, **kw)
    np.random.seed(seed)
    params = ours.sample_params(x.shape[0], x.shape[-2:])
    x_ours = x.clone()
    xo, yo = ours.apply(x_ours, target, params)
    after_ours = np.random.random(4)
    np.testing.assert_array_equal(after_ours, after_timm, err_msg="numpy's RNG was consumed differently")
    assert xo is x_ours and xt is x_timm, "both mix in place"
    return rec, params, (xt, yt), (xo, yo)


# ----------------------------------------------------------------------------
# The drop-in proof
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("cfg", CONFIGS.keys())
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_same_as_timm(timm_mixup, mode, cfg, smoothing, dtype):
    kw = dict(CONFIGS[cfg], label_smoothing=smoothing)
    gen = torch.Generator().manual_seed(zlib.crc32(f"{mode}-{cfg}".encode()))
    for seed in SEEDS:
        x = torch.randn(B, C, H, W, generator=gen).to(dtype)
        target = torch.randint(0, K, (B,), generator=gen)
        rec, params, (xt, yt), (xo, yo) = run_both(timm_mixup, kw, mode, x, target, seed)
        assert_same_draws(params, rec, mode, B)
        image_errors(xo, xt, x, params)
        lam_rows, _ = rec.rows(mode, B)
        check_targets(timm_mixup, yo, yt, target, lam_rows, smoothing, mode, dtype)
        assert yo.dtype == torch.float32 and yo.shape == (B, K)


def test_same_as_timm_224(timm_mixup):
    """One ImageNet-sized case: per-sample Mixup and CutMix in the same batch."""
    gen = torch.Generator().manual_seed(224)
    x = torch.randn(4, 3, 224, 224, generator=gen)
    target = torch.randint(0, 1000, (4,), generator=gen)
    kw = dict(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=1000, label_smoothing=0.1)
    for seed in (3, 4):
        np.random.seed(seed)
        rec = Recorder(timm_mixup, timm_mixup.Mixup(mode="elem", **kw))
        xt, yt = rec(x.clone(), target)
        np.random.seed(seed)
        ours = Mixup(mode="elem", **kw)
        params = ours.sample_params(4, (224, 224))
        xo, yo = ours.apply(x.clone(), target, params)
        assert_same_draws(params, rec, "elem", 4)
        assert image_errors(xo, xt, x, params)[0] <= 4
        torch.testing.assert_close(yo, yt, rtol=0, atol=2**-22)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_call_is_sample_then_apply(timm_mixup, mode):
    """``__call__`` draws exactly what ``sample_params`` draws; and equals timm's ``__call__``."""
    x = torch.randn(B, C, H, W)
    target = torch.randint(0, K, (B,))
    kw = dict(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K)
    assert_calls_match(timm_mixup, dict(mode=mode, **kw), x, target, seed=11)


def assert_calls_match(timm_mixup, kw, x, target, seed):
    """Ours and timm's ``Mixup(**kw)(x, target)`` from the same numpy seed agree."""
    np.random.seed(seed)
    xo, yo = Mixup(**kw)(x.clone(), target)
    np.random.seed(seed)
    xt, yt = timm_mixup.Mixup(**kw)(x.clone(), target)
    torch.testing.assert_close(xo, xt, rtol=0, atol=1e-6)
    torch.testing.assert_close(yo, yt, rtol=0, atol=2**-22)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_mixing_disabled_like_timm(timm_mixup, mode):
    x = torch.randn(B, C, H, W)
    target = torch.randint(0, K, (B,))
    ours, theirs = Mixup(mode=mode, num_classes=K), timm_mixup.Mixup(mode=mode, num_classes=K)
    ours.mixup_enabled = theirs.mixup_enabled = False
    np.random.seed(0)
    xo, yo = ours(x.clone(), target)
    a = np.random.random()
    np.random.seed(0)
    xt, yt = theirs(x.clone(), target)
    assert a == np.random.random()
    assert torch.equal(xo, x) and torch.equal(xt, x)
    torch.testing.assert_close(yo, yt, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_settings_changed_between_calls_like_timm(timm_mixup, mode):
    """timm reads its attributes at every call (training loops switch mixing
    off near the end): each change, also an in-place edit of cutmix_minmax,
    applies from the next call on."""
    x = torch.randn(B, C, H, W)
    target = torch.randint(0, K, (B,))

    def make(cls):
        return cls(mode=mode, num_classes=K, cutmix_alpha=1.0, cutmix_minmax=[0.3, 0.6])

    ours, theirs = make(Mixup), make(timm_mixup.Mixup)
    changes = [
        lambda m: None,
        lambda m: setattr(m, "mixup_enabled", False),
        lambda m: setattr(m, "mixup_enabled", True),
        lambda m: m.cutmix_minmax.__setitem__(1, 0.9),
        lambda m: setattr(m, "cutmix_minmax", None),
        lambda m: setattr(m, "switch_prob", 1.0),
        lambda m: setattr(m, "correct_lam", False),
        lambda m: setattr(m, "switch_prob", 0.0),
        lambda m: setattr(m, "mixup_alpha", 0.3),
        lambda m: setattr(m, "mix_prob", 0.0),
        lambda m: setattr(m, "mix_prob", 0.5),
        lambda m: setattr(m, "mix_prob", np.array(1.0)),
        lambda m: m.mix_prob.__setitem__((), 0.0),  # a 0-d array changed in place
    ]
    for seed, change in enumerate(changes):
        change(ours)
        change(theirs)
        np.random.seed(seed)
        xo, yo = ours(x.clone(), target)
        np.random.seed(seed)
        xt, yt = theirs(x.clone(), target)
        torch.testing.assert_close(xo, xt, rtol=0, atol=1e-6, msg=f"change {seed}")
        torch.testing.assert_close(yo, yt, rtol=0, atol=2**-22, msg=f"change {seed}")


@pytest.mark.parametrize("mode", ["pair", "elem"])
def test_draws_of_one_leave_samples_bitwise_like_timm(timm_mixup, mode):
    """A small alpha often draws lam = 1 in float32; timm then leaves those
    samples alone. So do we, bit for bit, -0.0, inf and NaN included, whether
    every draw of the batch is 1 or only some are."""
    kw = dict(mixup_alpha=0.1, cutmix_alpha=0.0, mode=mode, num_classes=3)
    x4 = torch.randn(4, 1, 2, 2)
    x4[0, 0, 0] = torch.tensor([-0.0, float("inf")])
    x4[1, 0, 1] = torch.tensor([float("nan"), -0.0])
    x4[3, 0, 0] = torch.tensor([-float("inf"), -0.0])
    seen = {"all": 0, "some": 0}
    for B, seed in itertools.product((2, 4), range(300)):
        x, target = x4[:B], torch.tensor([0, 2, 1, 2])[:B]
        np.random.seed(seed)
        ones = Mixup(**kw).sample_params(B).lam == 1
        if not bool(ones.any()):
            continue
        seen["all" if bool(ones.all()) else "some"] += 1
        np.random.seed(seed)
        xo, yo = Mixup(**kw)(x.clone(), target)
        np.random.seed(seed)
        xt, yt = timm_mixup.Mixup(**kw)(x.clone(), target)
        assert torch.equal(xo[ones].view(torch.int32), x[ones].view(torch.int32)), f"seed {seed}"
        assert torch.equal(xt[ones].view(torch.int32), x[ones].view(torch.int32))
        torch.testing.assert_close(xo, xt, rtol=0, atol=1e-6, equal_nan=True)
        torch.testing.assert_close(yo, yt, rtol=0, atol=2**-22)
    assert seen["all"] > 0 and seen["some"] > 0, seen


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_multi_label_like_timm(timm_mixup, mode):
    x = torch.randn(B, C, H, W)
    target = (torch.rand(B, K) < 0.3).float()
    kw = dict(mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=K, multi_label=True)
    assert_calls_match(timm_mixup, dict(mode=mode, **kw), x, target, seed=5)


# ----------------------------------------------------------------------------
# 'half': timm's FastCollateMixup
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("cfg", ["mixup", "cutmix", "switch_prob", "switch_minmax", "cutmix_nocorrect"])
def test_half_same_as_fast_collate(timm_mixup, cfg, dtype):
    """FastCollateMixup(mode='half') on a list of uint8 samples vs our Mixup(mode='half') on the collated batch.

    timm rounds its mixed images to uint8; we round ours the same way and must
    agree everywhere within 1 (a different float32 / bf16 rounding can move a
    value across .5) and exactly in the cut boxes."""
    kw = dict(CONFIGS[cfg], label_smoothing=0.1, num_classes=K)
    gen = torch.Generator().manual_seed(7)
    h = B // 2
    for seed in SEEDS:
        imgs = torch.randint(0, 256, (B, C, H, W), dtype=torch.uint8, generator=gen)
        target = torch.randint(0, K, (B,), generator=gen)
        batch = [(imgs[i].clone(), int(target[i])) for i in range(B)]
        np.random.seed(seed)
        rec = Recorder(timm_mixup, timm_mixup.FastCollateMixup(mode="half", **kw))
        xt, yt = rec(batch)
        after_timm = np.random.random(2)

        ours = Mixup(mode="half", **kw)
        np.random.seed(seed)
        params = ours.sample_params(B, (H, W))
        x = imgs.to(dtype)
        xo, yo = ours.apply(x, target, params)
        np.testing.assert_array_equal(np.random.random(2), after_timm)
        assert_same_draws(params, rec, "half", B)
        assert xo.shape == (h, C, H, W) and yo.shape == (h, K)
        assert xo.data_ptr() == x.data_ptr(), "half mode returns a view of the mixed-in-place batch"
        assert torch.equal(x[h:], imgs[h:].to(dtype)), "the second half is left unchanged"
        rounded = xo.float().round().clamp(0, 255).to(torch.uint8)
        diff = (rounded.int() - xt.int()).abs()
        assert diff.max() <= 1
        if dtype == torch.float32:
            assert (diff > 0).float().mean() < 0.01
        exact = mix_images_reference(imgs.double(), params.perm, params.lam.double(), params.boxes)[:h]
        assert ((xo.double() - exact).abs() <= 0.5 * ulp(exact, dtype) + 2**-14).all()
        for k in range(h):
            if params.boxes is not None and tuple(params.boxes[k].tolist()) != NO_BOX:
                assert torch.equal(rounded[k], xt[k]), "cut samples are pure copies"
        torch.testing.assert_close(yo, yt, rtol=0, atol=2**-22)
