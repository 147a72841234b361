"""Bad input to the entry points other than ``mix``: ``mix_targets``,
``mix_features``, ``Mixup`` and its samplers, ``MixUp`` / ``CutMix`` and
``soft_target_cross_entropy`` raise TypeError or ValueError, never a wrong
result. Several cases are the fuzzer's findings (test_fuzz.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import small_batch

import mixup_fused as mf
from mixup_fused import Mixup


@pytest.mark.parametrize("case", ["lam_2", "lam_nan", "class_id_out_of_range", "num_classes_0", "target_none"])
def test_mix_targets_is_checked_like_mix(case):
    _, t, p = small_batch()
    target, lam, K = dict(
        lam_2=(t, 2.0, 5),
        lam_nan=(t, float("nan"), 5),
        class_id_out_of_range=(t, 0.5, 3),
        num_classes_0=(t, 0.5, 0),
        target_none=(None, 0.5, 5),
    )[case]
    with pytest.raises((TypeError, ValueError)):
        y = mf.mix_targets(target, p, lam, num_classes=K)
        assert bool((y >= 0).all()), f"mix_targets returned invalid targets {y.tolist()}"


@pytest.mark.parametrize("case", ["h_str", "target_int"])
def test_mix_features_checks_its_arguments(case):
    x, t, p = small_batch()
    with pytest.raises(TypeError):
        if case == "h_str":
            mf.mix_features("h", p, 0.5)
        else:
            mf.mix_features(x, p, 0.5, target=3)


def test_mix_features_needs_targets_and_num_classes_together():
    h = torch.randn(4, 6)
    perm = torch.tensor([1, 0, 3, 2])
    t = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="num_classes"):
        mf.mix_features(h, perm, 0.25, t)
    with pytest.raises(ValueError, match="num_classes"):
        mf.mix_features(h, perm, 0.25, num_classes=3)


def test_mixup_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        Mixup(mode="batchwise")
    with pytest.raises(ValueError, match="pairing"):
        Mixup(pairing="shuffle")
    with pytest.raises(TypeError, match="generator"):
        Mixup(generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match="cutmix_minmax"):
        Mixup(cutmix_minmax=(0.2, 0.5, 0.8))
    with pytest.raises(ValueError, match="mixup_alpha > 0"):
        Mixup(mixup_alpha=0.0, cutmix_alpha=0.0)(torch.randn(2, 3, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        Mixup(cutmix_alpha=1.0, num_classes=10)(torch.randn(4, 7), torch.arange(4))


@pytest.mark.parametrize("case", ["prob_0_bad_id", "batch_of_one_bad_id", "target_str", "minmax_reversed"])
def test_mixup_checks_its_arguments(case):
    x, t, p = small_batch()
    g = torch.Generator().manual_seed(0)
    with pytest.raises((TypeError, ValueError)):
        if case == "prob_0_bad_id":
            Mixup(num_classes=3, prob=0.0)(x, t)
        elif case == "batch_of_one_bad_id":
            Mixup(num_classes=3)(x[:1], torch.tensor([3]))
        elif case == "target_str":
            Mixup(num_classes=5)(x, "t")
        else:
            Mixup(num_classes=5, cutmix_minmax=(0.9, 0.1), generator=g)(x, t)


def test_device_sampler_generator_on_other_device_is_an_error():
    m = Mixup(num_classes=3, sampler="device", generator=torch.Generator(device="cpu"))
    with pytest.raises(ValueError, match="generator"):
        m.sample_params(4, None, "meta")
    with pytest.raises(ValueError, match="sampler"):
        Mixup(num_classes=3, sampler="gpu")


@pytest.mark.parametrize("case", ["int32_images_num_classes_-1", "int8_images_negative_id", "meta_labels"])
def test_transforms_check_their_arguments(case):
    x, t, _ = small_batch()
    with pytest.raises((TypeError, ValueError)):
        if case == "int32_images_num_classes_-1":
            mf.CutMix(num_classes=-1)((x * 50).int(), t)
        elif case == "int8_images_negative_id":
            mf.CutMix(num_classes=10)((x * 50).to(torch.int8), torch.tensor([-2, 1, 2, 3]))
        else:
            mf.MixUp(num_classes=5)(x, t.to("meta"))


def test_soft_target_cross_entropy_checks_shapes():
    with pytest.raises(ValueError):
        mf.soft_target_cross_entropy(torch.randn(3, 5), torch.rand(3, 6))
