"""mixup_fused.MixUp / CutMix as drop-ins for torchvision.transforms.v2's.

The peer is the real torchvision (``bench.peers.tv_mixup`` / ``tv_cutmix``
call ``v2.MixUp`` / ``v2.CutMix`` and read back the draws they made); these
tests run in the torch 2.14.1 environment and skip where torchvision is not
installed. With torch's global RNG seeded the same way, both draw the same lam
and box; images must agree up to rounding (float32: a few ulp; bfloat16:
torchvision rounds three times, we once) and labels within float32 rounding.
"""

from __future__ import annotations

import pytest
import torch
from conftest import ulp
from torch.nn.functional import one_hot

pytest.importorskip("torchvision.transforms.v2", reason="the real torchvision (the torch 2.14.1 environment)")

from bench.peers import tv_cutmix, tv_mixup, tv_perm  # noqa: E402
from mixup_fused import CutMix, MixUp  # noqa: E402
from mixup_fused.reference import mix_images_reference  # noqa: E402

B, C, H, W = 6, 3, 12, 10
K = 7


# ----------------------------------------------------------------------------
# Equality with torchvision
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_same_as_torchvision(alpha, dtype):
    gen = torch.Generator().manual_seed(1)
    for seed in range(5):
        images = torch.randn(B, C, H, W, generator=gen).to(dtype)
        labels = torch.randint(0, K, (B,), generator=gen)
        torch.manual_seed(seed)
        xt, yt, tv_params = tv_mixup(images, labels, alpha=alpha, num_classes=K)
        lam = tv_params["lam"]
        after_tv = torch.rand(3)
        torch.manual_seed(seed)
        xo, yo = MixUp(alpha=alpha, num_classes=K)(images, labels)
        assert torch.equal(torch.rand(3), after_tv), "torch's RNG consumed as torchvision does"
        perm = tv_perm(B, "cpu")
        exact = mix_images_reference(images.double(), perm, torch.full((B,), lam, dtype=torch.float64))
        operands = torch.maximum(images.double().abs(), images.double()[perm].abs())
        if dtype == torch.float32:
            assert ((xo.double() - xt.double()).abs() <= 4 * ulp(operands, torch.float32)).all()
        else:
            err_ours = (xo.double() - exact).abs()
            assert (err_ours <= 0.5 * ulp(exact, torch.bfloat16) + 4 * ulp(operands, torch.float32)).all()
            d = (xo.double() - xt.double()).abs() / ulp(torch.maximum(xo.abs(), xt.abs()), torch.bfloat16)
            wide = d > 1
            assert (err_ours[wide] <= (xt.double() - exact).abs()[wide]).all()
        assert xo.dtype == dtype and yo.dtype == torch.float32
        torch.testing.assert_close(yo, yt, rtol=0, atol=2**-22)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.uint8], ids=["fp32", "bf16", "uint8"])
@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_cutmix_same_as_torchvision(alpha, dtype):
    gen = torch.Generator().manual_seed(2)
    for seed in range(6):
        if dtype == torch.uint8:
            images = torch.randint(0, 256, (B, C, H, W), dtype=dtype, generator=gen)
        else:
            images = torch.randn(B, C, H, W, generator=gen).to(dtype)
        labels = torch.randint(0, K, (B,), generator=gen)
        torch.manual_seed(seed)
        xt, yt, tv_params = tv_cutmix(images, labels, alpha=alpha, num_classes=K)
        (x1, y1, x2, y2), lam = tv_params["box"], tv_params["lam_adjusted"]
        after_tv = torch.rand(2)
        cut = CutMix(alpha=alpha, num_classes=K)
        torch.manual_seed(seed)
        params = cut.make_params(images)
        assert params["box"] == (y1, y2, x1, x2) and params["lam_adjusted"] == lam
        torch.manual_seed(seed)
        xo, yo = cut(images, labels)
        assert torch.equal(torch.rand(2), after_tv), "torch's RNG consumed as torchvision does"
        assert torch.equal(xo, xt), "CutMix is a pure copy"
        torch.testing.assert_close(yo, yt, rtol=0, atol=2**-22)


def test_probability_labels():
    """2-D labels (num_classes may be None): mixed as they are, in their own dtype."""
    images = torch.randn(B, C, H, W)
    for labels in (torch.softmax(torch.randn(B, K), -1), torch.softmax(torch.randn(B, K), -1).half()):
        for cls, tv in ((MixUp, tv_mixup), (CutMix, tv_cutmix)):
            torch.manual_seed(3)
            xt, yt, _ = tv(images, labels, alpha=1.0, num_classes=None)
            torch.manual_seed(3)
            xo, yo = cls(alpha=1.0)(images, labels)
            assert yo.dtype == labels.dtype
            tol = 2**-22 if labels.dtype == torch.float32 else 2**-10
            torch.testing.assert_close(yo, yt, rtol=0, atol=tol)
            torch.testing.assert_close(xo, xt, rtol=0, atol=1e-6)
    onehot = one_hot(torch.randint(0, K, (B,)), K)  # integer 2-D labels become float32
    torch.manual_seed(4)
    _, yt, _ = tv_mixup(images, onehot, alpha=1.0, num_classes=None)
    torch.manual_seed(4)
    _, yo = MixUp()(images, onehot)
    assert yo.dtype == torch.float32
    torch.testing.assert_close(yo, yt, rtol=0, atol=2**-22)


# ----------------------------------------------------------------------------
# Call conventions
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [MixUp, CutMix])
def test_call_conventions(cls):
    images = torch.randn(B, C, H, W)
    labels = torch.randint(0, K, (B,))
    t = cls(num_classes=K)
    torch.manual_seed(0)
    xa, ya = t(images, labels)
    torch.manual_seed(0)
    xb, yb = t((images, labels))
    torch.manual_seed(0)
    out = t({"image": images, "labels": labels, "meta": "kept"})
    torch.manual_seed(0)
    xc, yc = t([images, {"class_label": labels}])
    torch.manual_seed(0)
    custom = cls(num_classes=K, labels_getter=lambda inputs: inputs["target"])({"img": images, "target": labels})
    pairs = ((xb, yb), (out["image"], out["labels"]), (xc, yc["class_label"]), (custom["img"], custom["target"]))
    for x, y in pairs:
        assert torch.equal(x, xa) and torch.equal(y, ya)
    assert out["meta"] == "kept"
    assert ya.shape == (B, K) and not torch.equal(xa, images)


def test_input_is_not_modified():
    images = torch.randn(B, C, H, W)
    before = images.clone()
    for cls in (MixUp, CutMix):
        cls(num_classes=K)(images, torch.randint(0, K, (B,)))
        assert torch.equal(images, before)


@pytest.mark.parametrize("batch_size", [1, 2, 5])
@pytest.mark.parametrize("cls", [MixUp, CutMix])
def test_small_and_odd_batches(cls, batch_size):
    images = torch.randn(batch_size, C, H, W)
    labels = torch.randint(0, K, (batch_size,))
    tv = tv_mixup if cls is MixUp else tv_cutmix
    torch.manual_seed(6)
    xt, yt, _ = tv(images, labels, alpha=1.0, num_classes=K)
    torch.manual_seed(6)
    xo, yo = cls(num_classes=K)(images, labels)
    torch.testing.assert_close(xo, xt, rtol=0, atol=1e-6)
    torch.testing.assert_close(yo, yt, rtol=0, atol=2**-22)


def test_generator_keyword():
    images = torch.randn(B, C, H, W)
    labels = torch.randint(0, K, (B,))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    outs = [CutMix(num_classes=K, generator=torch.Generator().manual_seed(5))(images, labels) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), state), "the global RNG is not touched"
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_errors_like_torchvision():
    images = torch.randn(B, C, H, W)
    labels = torch.randint(0, K, (B,))
    with pytest.raises(ValueError, match="num_classes must be passed"):
        MixUp()(images, labels)
    with pytest.raises(ValueError, match="must match num_classes"):
        MixUp(num_classes=K + 1)(images, torch.rand(B, K))
    with pytest.raises(ValueError, match="labels should be index based"):
        MixUp(num_classes=K)(images, labels.view(B, 1, 1))
    with pytest.raises(ValueError, match="4 dims"):
        CutMix(num_classes=K)(images[0], labels)
    with pytest.raises(ValueError, match="batch size"):
        MixUp(num_classes=K)(images[:-1], labels)
    with pytest.raises(ValueError, match="second item is a dictionary or a tensor"):
        MixUp(num_classes=K)(images, labels.tolist())
    with pytest.raises(ValueError, match="labels must be a tensor"):
        MixUp(num_classes=K, labels_getter=lambda inputs: inputs[1].tolist())(images, labels)
    with pytest.raises(ValueError, match="alpha"):
        MixUp(alpha=0.0)
    with pytest.raises(ValueError, match="labels_getter"):
        MixUp(labels_getter="labels")
