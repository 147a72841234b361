"""mixup_fused.MixUp / CutMix follow torchvision v2's conventions, checked against
the real torchvision: tv_tensors in and out, samples as tuples, lists and
dicts, labels_getter, inside v2.Compose and v2.RandomChoice, and the errors
torchvision raises. Skips where torchvision is not installed."""

from __future__ import annotations

import pytest
import torch

v2 = pytest.importorskip("torchvision.transforms.v2", reason="the real torchvision (the torch 2.14.1 environment)")
tv_tensors = pytest.importorskip("torchvision.tv_tensors")

import mixup_fused  # noqa: E402

B, K = 6, 5
PAIRS = [(mixup_fused.MixUp, v2.MixUp), (mixup_fused.CutMix, v2.CutMix)]
IDS = ["MixUp", "CutMix"]


def _same_call(ours_cls, tv_cls, *inputs, seed=3, **kw):
    torch.manual_seed(seed)
    want = tv_cls(num_classes=K, **kw)(*inputs)
    torch.manual_seed(seed)
    got = ours_cls(num_classes=K, **kw)(*inputs)
    return got, want


def _assert_same_tree(got, want):
    flat_got, spec_got = torch.utils._pytree.tree_flatten(got)
    flat_want, spec_want = torch.utils._pytree.tree_flatten(want)
    assert spec_got == spec_want
    for g, w in zip(flat_got, flat_want, strict=True):
        assert type(g) is type(w), (type(g), type(w))
        if isinstance(w, torch.Tensor):
            assert g.shape == w.shape and g.dtype == w.dtype
            torch.testing.assert_close(g.as_subclass(torch.Tensor), w.as_subclass(torch.Tensor), rtol=0, atol=1e-6)
        else:
            assert g == w


@pytest.mark.parametrize("ours_cls, tv_cls", PAIRS, ids=IDS)
def test_image_and_video_types_come_back(ours_cls, tv_cls):
    images = tv_tensors.Image(torch.rand(B, 3, 10, 12))
    labels = torch.randint(0, K, (B,))
    got, want = _same_call(ours_cls, tv_cls, images, labels)
    assert isinstance(got[0], tv_tensors.Image)
    _assert_same_tree(got, want)
    video = tv_tensors.Video(torch.rand(B, 4, 3, 8, 8))
    got, want = _same_call(ours_cls, tv_cls, {"video": video, "labels": labels})
    assert isinstance(got["video"], tv_tensors.Video)
    _assert_same_tree(got, want)


@pytest.mark.parametrize("ours_cls, tv_cls", PAIRS, ids=IDS)
def test_sample_structures_and_labels_getter(ours_cls, tv_cls):
    images = torch.rand(B, 3, 9, 11)
    labels = torch.randint(0, K, (B,))
    for sample in ((images, labels), [images, labels], {"image": images, "label": labels, "meta": "kept"}):
        _assert_same_tree(*_same_call(ours_cls, tv_cls, sample))
    nested = {"img": images, "target": {"cls": labels}}
    got, want = _same_call(ours_cls, tv_cls, nested, labels_getter=lambda s: s["target"]["cls"])
    _assert_same_tree(got, want)


@pytest.mark.parametrize("ours_cls, tv_cls", PAIRS, ids=IDS)
def test_inside_compose_and_random_choice(ours_cls, tv_cls):
    images = tv_tensors.Image(torch.rand(B, 3, 8, 8))
    labels = torch.randint(0, K, (B,))
    for wrap in (lambda t: v2.Compose([t]), lambda t: v2.RandomChoice([t])):
        torch.manual_seed(5)
        want = wrap(tv_cls(num_classes=K))(images, labels)
        torch.manual_seed(5)
        got = wrap(ours_cls(num_classes=K))(images, labels)
        _assert_same_tree(got, want)


def _error(transform, *inputs):
    with pytest.raises(Exception) as info:
        transform(*inputs)
    return type(info.value), str(info.value)


@pytest.mark.parametrize("ours_cls, tv_cls", PAIRS, ids=IDS)
def test_the_errors_torchvision_raises(ours_cls, tv_cls):
    from PIL import Image

    images = torch.rand(B, 3, 8, 8)
    labels = torch.randint(0, K, (B,))
    # (Masks are not refused here: CutMix cuts them with the box and MixUp
    # names the segmentation loss; see tests/test_mixup_regions.py.)
    bad_inputs = [
        (images, tv_tensors.BoundingBoxes(torch.zeros(B, 4), format="XYXY", canvas_size=(8, 8)), labels),
        ({"image": Image.new("RGB", (8, 8)), "labels": labels},),
        ({"image": images, "nothing": labels},),  # no labels found
        (images[0], labels),  # not a batch
        (images, labels[:-1]),  # batch sizes differ
        (images, labels.view(2, 3, 1)),  # labels of rank 3
    ]
    for inputs in bad_inputs:
        want = _error(tv_cls(num_classes=K), *inputs)
        got = _error(ours_cls(num_classes=K), *inputs)
        assert got == want, (inputs, got, want)
