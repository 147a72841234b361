"""Normalisation in the kernel: uint8 (or floating) images in, ``(x - mean) /
std`` mixed out in the asked dtype and memory format, on every device and
backend, against the reference and against the two-step pipeline
(normalise, then mix); and the ``Mixup`` class on uint8 batches."""

from __future__ import annotations

import pytest
import torch
from conftest import (
    CPU_BACKENDS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    assert_cpu_agrees,
    assert_matches,
    assert_targets_sum_to_one,
    class_ids,
    edge_boxes,
    randn,
    random_lam,
    random_perm,
)

import mixup_fused as mf
from mixup_fused.reference import NO_BOX, mix_reference, normalize_reference

pytestmark = pytest.mark.usefixtures("poison_outputs")

MEAN, STD = IMAGENET_MEAN, IMAGENET_STD
# (layout of x, memory_format asked for)
FORMATS = [
    ("nchw", None),
    ("nhwc", None),
    ("nchw", torch.channels_last),
    ("nhwc", torch.contiguous_format),
    ("nchw", torch.contiguous_format),
    ("nhwc", torch.channels_last),
]


def _uint8(shape, gen, device="cpu", channels_last=False):
    x = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f[0]}-to-{f[1]}")
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("out_dtype", [None, torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_uint8_normalize(device, backend, out_dtype, cutmix, fmt, gen):
    layout, memory_format = fmt
    B, C, H, W = 5, 3, 19, 21
    x = _uint8((B, C, H, W), gen, device, channels_last=layout == "nhwc")
    K = 10
    target, perm, lam = class_ids(B, K, gen, device), random_perm(B, gen, device), random_lam(B, gen, device)
    boxes = edge_boxes(B, H, W, gen, device, perm) if cutmix else None
    x0 = x.clone()

    out, y = mf.mix(
        x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, backend=backend,
        mean=list(MEAN), std=torch.tensor(STD, device=device), out_dtype=out_dtype, memory_format=memory_format,
    )  # fmt: skip
    odt = out_dtype or torch.float32
    ex, ey = mix_reference(
        x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes,
        mean=torch.tensor(MEAN, device=device), std=torch.tensor(STD, device=device), out_dtype=odt,
    )  # fmt: skip

    assert torch.equal(x, x0)
    assert out.dtype == odt
    assert_matches(out, ex, what="images", backend=backend)
    assert_matches(y, ey, what="targets", backend=backend)
    assert_targets_sum_to_one(y, target, perm)
    want_cl = memory_format == torch.channels_last or (memory_format is None and layout == "nhwc")
    assert out.is_contiguous(memory_format=torch.channels_last if want_cl else torch.contiguous_format)
    assert_cpu_agrees(out, y, x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, mean=MEAN,
                      std=STD, out_dtype=odt)  # fmt: skip


def test_uint8_normalize_values(device, backend, gen):
    """Independent of the reference: lam = 1 and no box gives (x - mean) / std."""
    B, C, H, W = 3, 3, 4, 5
    x = _uint8((B, C, H, W), gen, device)
    out, _ = mf.mix(
        x, class_ids(B, 2, gen, device), random_perm(B, gen, device), 1.0, num_classes=2, mean=MEAN, std=STD,
        backend=backend,
    )  # fmt: skip
    mean, std = torch.tensor(MEAN, device=device).view(1, -1, 1, 1), torch.tensor(STD, device=device).view(1, -1, 1, 1)
    assert torch.equal(out, (x.float() - mean) / std)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_float_normalize(device, backend, dtype, gen):
    B, C, H, W = 4, 2, 3, 5
    x = randn((B, C, H, W), dtype, gen, device)
    mean, std = torch.tensor([0.5, -0.25], device=device), torch.tensor([2.0, 0.3], device=device)
    target, perm, lam = class_ids(B, 3, gen, device), random_perm(B, gen, device), random_lam(B, gen, device)
    out, y = mf.mix(x, target, perm, lam, num_classes=3, mean=mean, std=std, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=3, mean=mean, std=std)
    assert_matches(out, ex, backend=backend)
    assert_matches(y, ey, backend=backend)


def _fp64_normalize_cases():
    for b in CPU_BACKENDS:
        for xdtype in (torch.uint8, torch.float64):
            yield pytest.param(b, xdtype, id=f"{b}-{xdtype}")


@pytest.mark.parametrize("backend, xdtype", list(_fp64_normalize_cases()))
def test_normalize_to_float64(backend, xdtype, gen):
    B, C, H, W = 3, 3, 4, 5
    if xdtype == torch.uint8:
        x = _uint8((B, C, H, W), gen)
    else:
        x = randn((B, C, H, W), torch.float64, gen) * 100
    target, perm, lam = class_ids(B, 2, gen), random_perm(B, gen), random_lam(B, gen, dtype=torch.float64)
    kw = dict(num_classes=2, mean=torch.tensor(MEAN), std=torch.tensor(STD), out_dtype=torch.float64)
    out, _ = mf.mix(x, target, perm, lam, backend=backend, **kw)
    ex, _ = mix_reference(x, target, perm, lam, **kw)
    assert_matches(out, ex, backend=backend)


# ----------------------------------------------------------------------------
# Against the two-step pipeline: normalise in float32, then mix, cast once.
# The fused pass makes the same float32 operations and the same one rounding
# on store, so the two agree bit for bit (conftest's tolerances).
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cut", [False, True])
def test_uint8_normalise_and_mix_matches_two_step(device, backend, out_dtype, channels_last, cut):
    g = torch.Generator().manual_seed(5)
    B, H, W = 5, 7, 9
    x = _uint8((B, 3, H, W), g, channels_last=channels_last)
    t = torch.randint(0, 10, (B,), generator=g)
    perm = torch.randperm(B, generator=g)
    lam = torch.rand(B, generator=g)
    boxes = torch.tensor([[1, 5, 2, 7], list(NO_BOX), [0, H, 0, W], [3, 3, 0, W], [0, 2, 7, 9]]) if cut else None
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    out, y = mf.mix(
        x.to(device), t.to(device), perm.to(device), lam.to(device), num_classes=10, label_smoothing=0.1,
        boxes=None if boxes is None else boxes.to(device), mean=MEAN, std=STD, out_dtype=out_dtype, backend=backend,
    )  # fmt: skip
    xn = normalize_reference(x, mean, std)
    ref, ref_y = mix_reference(xn, t, perm, lam, num_classes=10, label_smoothing=0.1, boxes=boxes)
    assert_matches(out, ref.to(device=device, dtype=out_dtype), what="images", backend=backend)
    assert_matches(y, ref_y.to(device), what="targets", backend=backend)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_uint8_memory_format_argument():
    x = torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8)
    t, perm = torch.arange(4), torch.arange(4).flip(0)
    out, _ = mf.mix(x, t, perm, 0.3, num_classes=4, mean=MEAN, std=STD, memory_format=torch.channels_last)
    assert out.is_contiguous(memory_format=torch.channels_last) and out.dtype == torch.float32


# ----------------------------------------------------------------------------
# The Mixup class on uint8 batches
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
def test_mixup_class_uint8_path(mode):
    g = torch.Generator().manual_seed(11)
    x = _uint8((6, 3, 12, 12), g)
    t = torch.randint(0, 7, (6,), generator=g)
    m = mf.Mixup(
        mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, num_classes=7, generator=torch.Generator().manual_seed(3),
        mean=MEAN, std=STD, out_dtype=torch.bfloat16,
    )  # fmt: skip
    params = m.sample_params(6, (12, 12))
    out, y = m.apply(x, t, params)
    assert x.dtype == torch.uint8  # the uint8 batch is not written
    xn = normalize_reference(x, torch.tensor(MEAN), torch.tensor(STD))
    ref, ref_y = mix_reference(xn, t, params.perm, params.lam, num_classes=7, label_smoothing=0.1, boxes=params.boxes)
    assert_matches(out, ref.to(torch.bfloat16), what="images", backend="cpp")
    assert_matches(y, ref_y, what="targets", backend="cpp")


def test_mixup_uint8_when_nothing_mixes_still_normalises():
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    m = mf.Mixup(num_classes=3, mean=MEAN, std=STD, prob=0.0)
    out, y = m(x, torch.tensor([0, 1, 2, 0]))
    ref = normalize_reference(x, torch.tensor(MEAN), torch.tensor(STD))
    assert torch.equal(out, ref)
    assert_targets_sum_to_one(y, torch.tensor([0, 1, 2, 0]), torch.arange(4))
