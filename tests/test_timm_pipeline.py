"""timm's own training pipeline with our drop-ins: a real ``timm.data.create_loader``
over an ImageFolder written here, a ``timm.create_model`` model, a few
optimiser steps, and the same losses as with timm's own mixers.

Needs the full timm (which needs torchvision): it runs in the torch 2.14.1
environment of ``make test`` and skips in the lighter one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm", reason="the full timm needs torchvision (the torch 2.14.1 environment)")
timm_data = pytest.importorskip("timm.data")
timm_loss = pytest.importorskip("timm.loss")

import mixup_fused  # noqa: E402

K = 4
SIZE = 32
MIX_ARGS = dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, label_smoothing=0.1, num_classes=K)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c in range(K):
        (root / f"class_{c}").mkdir()
        for i in range(6):
            pixels = rng.integers(0, 256, (SIZE + 8, SIZE + 4, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class_{c}" / f"{i}.png")
    return str(root)


def _train(image_folder, *, prefetcher: bool, collate_fn=None, mixup_fn=None, steps: int = 3):
    """A few steps of timm's train loop (train.py's structure, on the CPU); returns the losses."""
    torch.manual_seed(0)
    np.random.seed(0)
    dataset = timm_data.create_dataset("", root=image_folder, split="train", is_training=True)
    loader = timm_data.create_loader(
        dataset,
        input_size=(3, SIZE, SIZE),
        batch_size=8,
        is_training=True,
        no_aug=True,
        use_prefetcher=prefetcher,
        collate_fn=collate_fn,
        num_workers=0,
        device=torch.device("cpu"),
        persistent_workers=False,
    )
    model = timm.create_model("test_resnet", pretrained=False, num_classes=K)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    criterion = timm_loss.SoftTargetCrossEntropy()
    losses = []
    for x, y in loader:
        if mixup_fn is not None:
            x, y = mixup_fn(x, y)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if len(losses) == steps:
            break
    return losses


@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
def test_prefetcher_path_with_fast_collate_mixup(image_folder, mode):
    """timm's default path: FastCollateMixup as the loader's collate_fn, uint8 batches, the prefetcher normalises."""
    theirs = _train(image_folder, prefetcher=True, collate_fn=timm_data.FastCollateMixup(mode=mode, **MIX_ARGS))
    ours = _train(image_folder, prefetcher=True, collate_fn=mixup_fused.FastCollateMixup(mode=mode, **MIX_ARGS))
    assert len(ours) == 3
    assert ours == theirs  # the same uint8 batches and targets: the same losses, bit for bit


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_no_prefetcher_path_with_mixup(image_folder, mode):
    """``train.py --no-prefetcher``: float batches, Mixup called in the loop."""
    theirs = _train(image_folder, prefetcher=False, mixup_fn=timm_data.Mixup(mode=mode, **MIX_ARGS))
    ours = _train(image_folder, prefetcher=False, mixup_fn=mixup_fused.Mixup(mode=mode, **MIX_ARGS))
    assert len(ours) == 3
    # Images are computed in float32 and rounded once, as timm's float32 ops: equal up to the last bits.
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=0)
