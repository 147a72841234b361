"""SoftTargetCrossEntropy / soft_target_cross_entropy: timm's semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import timm_module

from mixup_fused import Mixup, SoftTargetCrossEntropy, soft_target_cross_entropy


@pytest.fixture(scope="module")
def timm_loss():
    return timm_module("loss/cross_entropy.py")


@pytest.mark.parametrize("shape", [(8, 10), (5, 3, 7), (1, 1000)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_same_as_timm(timm_loss, shape, dtype):
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(shape, generator=g)).to(dtype)
    target = torch.softmax(torch.randn(shape, generator=g), -1)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    ours = SoftTargetCrossEntropy()(a, target)
    theirs = timm_loss.SoftTargetCrossEntropy()(b, target)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
    torch.testing.assert_close(soft_target_cross_entropy(logits, target), theirs.detach(), rtol=0, atol=0)


def test_matches_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 12, generator=g, dtype=torch.float64)
    probs = torch.softmax(torch.randn(16, 12, generator=g, dtype=torch.float64), -1)
    labels = torch.randint(0, 12, (16,), generator=g)
    torch.testing.assert_close(soft_target_cross_entropy(logits, probs), F.cross_entropy(logits, probs))
    onehot = F.one_hot(labels, 12).double()
    torch.testing.assert_close(soft_target_cross_entropy(logits, onehot), F.cross_entropy(logits, labels))
    smoothed = onehot * 0.9 + 0.1 / 12
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(soft_target_cross_entropy(logits, smoothed), expected)


def test_reductions():
    logits = torch.randn(6, 5)
    target = torch.softmax(torch.randn(6, 5), -1)
    per_sample = soft_target_cross_entropy(logits, target, reduction="none")
    assert per_sample.shape == (6,)
    torch.testing.assert_close(per_sample, -(target * torch.log_softmax(logits, -1)).sum(-1))
    torch.testing.assert_close(soft_target_cross_entropy(logits, target, "sum"), per_sample.sum())
    torch.testing.assert_close(SoftTargetCrossEntropy("none")(logits, target), per_sample)
    with pytest.raises(ValueError, match="reduction"):
        soft_target_cross_entropy(logits, target, "avg")
    with pytest.raises(ValueError, match="reduction"):
        SoftTargetCrossEntropy("batchmean")


def test_with_mixup_training_step():
    """Mixup + soft-target loss: a linear model learns on mixed batches."""
    torch.manual_seed(0)
    np.random.seed(0)
    num_classes = 4
    centres = 3 * torch.randn(num_classes, 1, 4, 4)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, num_classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    mixup = Mixup(mixup_alpha=0.4, cutmix_alpha=1.0, mode="elem", num_classes=num_classes)
    loss_fn = SoftTargetCrossEntropy()
    losses = []
    for _ in range(40):
        labels = torch.randint(0, num_classes, (32,))
        x = centres[labels] + 0.3 * torch.randn(32, 1, 4, 4)
        x, y = mixup(x, labels)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
