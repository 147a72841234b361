"""The drop-ins beyond 2-D images and class labels: ``Mixup`` on ``[B, C, T]``
and ``[B, C, D, H, W]`` batches, with label maps, returning its draws, with
multi-hot targets; torchvision-style ``CutMix`` with ``tv_tensors.Mask``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import bits

import mixup_fused
from mixup_fused.reference import mix_maps_reference, mix_reference

K = 7


def _batch(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randint(0, K, (shape[0],), generator=g)


@pytest.mark.parametrize("shape", [(8, 2, 50), (8, 3, 12, 10), (6, 2, 4, 6, 5)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_mixup_any_rank_equals_the_op_on_its_draws(shape, mode, backend):
    """``Mixup(return_params=True)`` returns the draws it used; the batch
    equals the reference on them, and the targets are the lam-weighted mix."""
    x, t = _batch(shape)
    fn = mixup_fused.Mixup(
        mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, num_classes=K, return_params=True, backend=backend
    )
    np.random.seed(3)
    x_out, y, params = fn(x.clone(), t)
    n = len(shape) - 2
    assert params.perm.dtype == torch.int64 and params.perm.shape == (shape[0],)
    assert params.lam.dtype == torch.float32 and params.lam.shape == (shape[0],)
    assert params.boxes is None or (params.boxes.dtype == torch.int64 and params.boxes.shape == (shape[0], 2 * n))
    want_x, want_y = mix_reference(
        x, t, params.perm, params.lam.double(), num_classes=K, label_smoothing=0.1, boxes=params.boxes
    )
    if mode == "batch":
        # One lam for the batch is a Python float (float64, as timm's); params.lam is its float32 rounding.
        torch.testing.assert_close(x_out, want_x)
        torch.testing.assert_close(y, want_y)
    else:
        assert torch.equal(bits(x_out), bits(want_x))
        torch.testing.assert_close(y, want_y, rtol=0, atol=1e-7)


@pytest.mark.parametrize("shape", [(64, 1, 200), (32, 2, 4, 6, 8)], ids=["1d", "3d"])
def test_cut_lam_is_the_volume_fraction(shape):
    """CutMix-only on n spatial dims: each row's lam is 1 - its box volume / total volume."""
    x, t = _batch(shape)
    fn = mixup_fused.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, mode="elem", num_classes=K, return_params=True)
    np.random.seed(0)
    _, _, params = fn(x, t)
    b = params.boxes.double()
    vol = torch.ones(shape[0], dtype=torch.float64)
    for d in range(len(shape) - 2):
        vol = vol * (b[:, 2 * d + 1] - b[:, 2 * d])
    total = float(np.prod(shape[2:]))
    cut = (params.boxes != -1).any(1) & (params.perm != torch.arange(shape[0]))
    torch.testing.assert_close(params.lam.double()[cut], (1 - vol / total)[cut].float().double())


def test_interpolated_loss_equals_the_soft_target_loss():
    """``lam * CE(out, y) + (1 - lam) * CE(out, y[perm])`` with the returned
    draws equals the soft-target cross-entropy on the returned targets."""
    x, t = _batch((16, 3, 8, 8))
    fn = mixup_fused.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", label_smoothing=0.0, num_classes=K,
                           return_params=True)  # fmt: skip
    np.random.seed(1)
    x_out, y, params = fn(x, t)
    logits = torch.randn(16, K, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    lam = params.lam.double()
    ce = F.cross_entropy(logits, t, reduction="none")
    ce_p = F.cross_entropy(logits, t[params.perm], reduction="none")
    interpolated = (lam * ce + (1 - lam) * ce_p).mean()
    soft = mixup_fused.soft_target_cross_entropy(logits, y.double())
    torch.testing.assert_close(interpolated, soft, rtol=1e-6, atol=0)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_mixup_moves_label_maps_with_the_boxes(mode, backend):
    x, t = _batch((8, 3, 16, 12))
    maps = torch.randint(0, 5, (8, 16, 12), generator=torch.Generator().manual_seed(5))
    maps[:, 0] = 255
    fn = mixup_fused.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, mode=mode, num_classes=K,
                           return_params=True, backend=backend)  # fmt: skip
    np.random.seed(7)
    m0 = maps.clone()
    x_out, y, m_out, params = fn(x.clone(), t, masks=maps)
    n = 8 if mode != "half" else 4
    assert m_out.shape[0] == n and m_out.dtype == maps.dtype
    want = mix_maps_reference(m0, params.perm, x.shape, params.boxes)
    assert torch.equal(m_out, want[:n])
    if mode != "half":
        assert m_out is maps, "in place, as the images"


def test_multi_label_targets_in_every_mode():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 10, 10, generator=g)
    multi = (torch.rand(8, K, generator=g) < 0.3).float()
    for mode in ("batch", "pair", "elem", "half"):
        fn = mixup_fused.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, num_classes=K, multi_label=True,
                               label_smoothing=0.1, return_params=True)  # fmt: skip
        np.random.seed(2)
        _, y, params = fn(x.clone(), multi)
        smooth = multi * 0.9 + 0.05  # timm's multi-label smoothing, towards 0.5
        lam = params.lam.view(-1, 1)
        want = lam * smooth + (1 - lam) * smooth[params.perm]
        torch.testing.assert_close(y, want[: y.shape[0]], rtol=0, atol=1e-6)
        assert bool(((y >= 0) & (y <= 1)).all())


def test_cutmix_on_a_batch_without_spatial_dims_is_refused():
    fn = mixup_fused.Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=K)
    with pytest.raises(ValueError, match=r"\[B, C, T\]"):
        fn(torch.randn(4, 10), torch.zeros(4, dtype=torch.int64))


# ----------------------------------------------------------------------------
# torchvision-style CutMix with tv_tensors.Mask
# ----------------------------------------------------------------------------


def _tv():
    return pytest.importorskip("torchvision.tv_tensors", reason="needs torchvision")


def test_cutmix_pastes_masks_with_the_same_box():
    tv = _tv()
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 20, 24, generator=g)
    masks = torch.randint(0, 9, (4, 20, 24), generator=g)
    labels = torch.randint(0, K, (4,), generator=g)
    torch.manual_seed(11)
    out = mixup_fused.CutMix(num_classes=K)({"image": tv.Image(images), "mask": tv.Mask(masks), "labels": labels})
    img_out, mask_out, y = out["image"], out["mask"], out["labels"]
    assert isinstance(img_out, tv.Image) and isinstance(mask_out, tv.Mask)
    # Where an image pixel came from the partner (x.roll(1, 0)), so did its label.
    from_partner = (img_out != images).any(1)
    partner = masks.roll(1, 0)
    assert torch.equal(mask_out[from_partner], partner[from_partner])
    assert torch.equal(mask_out[~from_partner & (masks != partner)], masks[~from_partner & (masks != partner)])
    assert y.shape == (4, K)


def test_cutmix_masks_without_labels():
    tv = _tv()
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 16, 16, generator=g)
    masks = torch.randint(0, 2, (4, 1, 16, 16), generator=g).bool()
    out_img, out_mask = mixup_fused.CutMix(labels_getter=None)(tv.Image(images), tv.Mask(masks))
    assert out_mask.dtype == torch.bool and isinstance(out_mask, tv.Mask) and out_mask.shape == masks.shape


def test_mixup_refuses_masks_and_points_to_the_loss():
    tv = _tv()
    images = torch.randn(4, 3, 8, 8)
    with pytest.raises(ValueError, match="mixed_segmentation_loss"):
        sample = {"image": tv.Image(images), "mask": tv.Mask(torch.zeros(4, 8, 8, dtype=torch.int64))}
        mixup_fused.MixUp(num_classes=K)({**sample, "labels": torch.zeros(4, dtype=torch.int64)})
