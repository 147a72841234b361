"""BinaryCrossEntropy: timm's semantics, checked against the real timm loss.

Ours builds the targets and calls ``F.binary_cross_entropy_with_logits`` with
the same operations, in the same order and dtype, as timm does, so loss and
gradients are compared bit for bit (``rtol=0, atol=0``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import timm_module

import mixup_fused
from mixup_fused import BinaryCrossEntropy

B, K = 7, 5
EXACT = dict(rtol=0, atol=0)


@pytest.fixture(scope="module")
def timm_bce():
    """timm's class, imported from the installed timm (the test skips, saying why, without it)."""
    return timm_module("loss/binary_cross_entropy.py").BinaryCrossEntropy


def _logits(dtype, shape=(B, K), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def _target(kind, dtype, shape=(B, K), seed=1):
    g = torch.Generator().manual_seed(seed)
    if kind == "index":
        return torch.randint(0, shape[-1], shape[:1], generator=g)
    if kind == "soft":  # e.g. mixed, smoothed targets
        return torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64), -1).to(dtype)
    if kind == "multi_hot":
        return (torch.rand(shape, generator=g) < 0.4).to(dtype)
    raise AssertionError(kind)


# Per-class weight [K], and pos_weight as a tensor [K] or as a number (timm makes it a tensor).
WEIGHTS = {
    "none": dict(),
    "weight": dict(weight=torch.linspace(0.5, 2.0, K)),
    "pos_weight": dict(pos_weight=torch.linspace(3.0, 0.5, K)),
    "pos_weight_float": dict(pos_weight=2.5),
    "both": dict(weight=torch.linspace(2.0, 0.25, K), pos_weight=torch.linspace(0.5, 3.0, K)),
}


def _cast(kwargs, dtype):
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def assert_same_as_timm(timm_cls, x, target, **kwargs):
    ours_fn, theirs_fn = BinaryCrossEntropy(**kwargs), timm_cls(**kwargs)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, theirs = ours_fn(a, target), theirs_fn(b, target)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, **EXACT)
    g = torch.randn(ours.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(ours.dtype)
    ours.backward(g)
    theirs.backward(g)
    torch.testing.assert_close(a.grad, b.grad, **EXACT)
    return ours


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sum_classes", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weights", list(WEIGHTS))
@pytest.mark.parametrize("target_threshold", [None, 0.2])
@pytest.mark.parametrize("kind", ["index", "soft", "multi_hot"])
def test_same_as_timm(timm_bce, kind, target_threshold, weights, reduction, sum_classes, dtype):
    kwargs = _cast(WEIGHTS[weights], dtype)
    assert_same_as_timm(
        timm_bce,
        _logits(dtype),
        _target(kind, dtype),
        target_threshold=target_threshold,
        reduction=reduction,
        sum_classes=sum_classes,
        **kwargs,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("shape", [(B, K), (1, 1000), (4, 4), (6, 1)])
def test_same_as_timm_index_shapes_and_smoothing(timm_bce, shape, smoothing, dtype):
    x = _logits(dtype, shape)
    assert_same_as_timm(timm_bce, x, _target("index", dtype, shape), smoothing=smoothing)
    assert_same_as_timm(timm_bce, x, _target("index", dtype, shape), smoothing=smoothing, reduction="none")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("target_threshold", [None, 0.6])
def test_same_as_timm_smooth_dense(timm_bce, target_threshold, dtype):
    for kind in ("soft", "multi_hot", "index"):
        assert_same_as_timm(
            timm_bce,
            _logits(dtype),
            _target(kind, dtype),
            smoothing=0.2,
            smooth_dense=True,
            target_threshold=target_threshold,
        )


def test_dense_targets_of_any_shape(timm_bce):
    """Dense targets of x's shape need not be [B, K] (timm passes them through)."""
    shape = (3, 4, 6)
    assert_same_as_timm(timm_bce, _logits(torch.float64, shape), _target("soft", torch.float64, shape))


def test_smoothed_one_hot_values():
    """Class ids become off = eps / K, on = 1 - eps + eps / K in x's dtype."""
    eps = 0.3
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = _logits(dtype)
        t = _target("index", dtype)
        expected_target = torch.full((B, K), eps / K, dtype=dtype)
        expected_target[torch.arange(B), t] = 1 - eps + eps / K
        expected = F.binary_cross_entropy_with_logits(x, expected_target, reduction="none")
        torch.testing.assert_close(BinaryCrossEntropy(eps, reduction="none")(x, t), expected, **EXACT)


def test_integer_multi_hot_targets_are_cast(timm_bce):
    """Integer / bool multi-hot rows (which timm's torch call refuses) equal the same rows as floats."""
    x = _logits(torch.float32)
    hot = _target("multi_hot", torch.int64)
    expected = timm_bce()(x, hot.float())
    for t in (hot, hot.bool(), hot.to(torch.uint8)):
        torch.testing.assert_close(BinaryCrossEntropy()(x, t), expected, **EXACT)
        torch.testing.assert_close(
            BinaryCrossEntropy(target_threshold=0.5)(x, t), timm_bce(target_threshold=0.5)(x, hot.float()), **EXACT
        )


def test_reductions_and_sum_classes():
    x = _logits(torch.float64)
    t = _target("soft", torch.float64)
    each = BinaryCrossEntropy(reduction="none")(x, t)
    assert each.shape == (B, K)
    torch.testing.assert_close(each, F.binary_cross_entropy_with_logits(x, t, reduction="none"), **EXACT)
    torch.testing.assert_close(BinaryCrossEntropy()(x, t), each.mean())
    torch.testing.assert_close(BinaryCrossEntropy(reduction="sum")(x, t), each.sum())
    # sum_classes overrides reduction, as timm.
    for reduction in ("mean", "sum", "none"):
        torch.testing.assert_close(BinaryCrossEntropy(reduction=reduction, sum_classes=True)(x, t), each.sum(-1).mean())


def test_buffers_like_timm(timm_bce):
    kwargs = dict(weight=torch.rand(K), pos_weight=torch.rand(K))
    ours, theirs = BinaryCrossEntropy(**kwargs), timm_bce(**kwargs)
    assert ours.state_dict().keys() == theirs.state_dict().keys() == {"weight", "pos_weight"}
    assert dict(ours.named_buffers()).keys() == {"weight", "pos_weight"}
    ours.load_state_dict(theirs.state_dict())
    ours = ours.to(torch.float64)
    assert ours.weight.dtype == ours.pos_weight.dtype == torch.float64
    none = BinaryCrossEntropy()
    assert none.weight is None and none.pos_weight is None
    assert BinaryCrossEntropy(pos_weight=2).pos_weight.dtype == torch.float32


def test_with_mixup_targets(timm_bce):
    """The mixed, smoothed targets of ``mixup_fused.Mixup`` go straight in (dense [B, K] rows) and give timm's loss."""
    np.random.seed(0)
    num_classes = 10
    g = torch.Generator().manual_seed(3)
    images = torch.randn(8, 3, 16, 16, generator=g)
    labels = torch.randint(0, num_classes, (8,), generator=g)
    mixer = mixup_fused.Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=num_classes)
    for _ in range(4):  # Mixup and CutMix batches both
        _, y = mixer(images.clone(), labels)
        assert y.shape == (8, num_classes) and y.dtype == torch.float32
        torch.testing.assert_close(y.sum(-1), torch.ones(8))
        for dtype in (torch.float32, torch.float64):
            logits = _logits(dtype, (8, num_classes))
            for kwargs in (dict(), dict(target_threshold=0.2), dict(sum_classes=True, pos_weight=1.5)):
                assert_same_as_timm(timm_bce, logits, y, **kwargs)


# ----------------------------------------------------------------------------
# Errors name the argument
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(reduction="avg"), ValueError, "reduction"),
        (dict(reduction=None), ValueError, "reduction"),
        (dict(smoothing=1.0), ValueError, r"smoothing must be in \[0, 1\)"),
        (dict(smoothing=-0.1), ValueError, "smoothing"),
        (dict(smoothing="0.1"), TypeError, "smoothing"),
        (dict(target_threshold="0.2"), TypeError, "target_threshold"),
        (dict(weight=[1.0] * K), TypeError, "weight"),
        (dict(pos_weight="2"), TypeError, "pos_weight"),
    ],
)
def test_constructor_errors(kwargs, exc, match):
    with pytest.raises(exc, match=f"^mixup_fused: .*{match}"):
        BinaryCrossEntropy(**kwargs)


@pytest.mark.parametrize(
    "x, target, kwargs, exc, match",
    [
        (torch.randn(B, K), torch.rand(B, K + 1), {}, ValueError, "target"),
        (torch.randn(B, K), torch.rand(B + 1, K), {}, ValueError, "target"),
        (torch.randn(B, K), torch.randint(0, K, (B + 1,)), {}, ValueError, r"class ids of shape \[B\]"),
        (torch.randn(B, K, 2), torch.randint(0, K, (B,)), {}, ValueError, r"logits x of shape \[B, K\]"),
        (torch.randn(B, K), torch.tensor([0, 1, 5, 2, 0, 1, 3]), {}, ValueError, r"target\[2\] = 5"),
        (torch.randn(B, K), torch.tensor([0, 1, 2, 2, -1, 1, 3]), {}, ValueError, r"target\[4\] = -1"),
        (torch.randn(B, K), torch.zeros(B), {}, TypeError, "integer class ids"),
        (torch.randn(B, K), torch.zeros(B, dtype=torch.bool), {}, TypeError, "integer class ids"),
        (torch.randint(0, 3, (B, K)), torch.zeros(B, K), {}, TypeError, "x"),
        (torch.randn(B, K), torch.rand(B, K), dict(weight=torch.ones(K + 1)), ValueError, "weight"),
        (torch.randn(B, K), torch.rand(B, K), dict(pos_weight=torch.ones(2, K)), ValueError, "pos_weight"),
        (torch.randn(B, K), "labels", {}, TypeError, "target"),
    ],
)
def test_forward_errors(x, target, kwargs, exc, match):
    with pytest.raises(exc, match=f"^mixup_fused: .*{match}"):
        BinaryCrossEntropy(**kwargs)(x, target)
