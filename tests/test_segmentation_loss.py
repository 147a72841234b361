"""mixed_segmentation_loss: ``lam * CE(m) + (1 - lam) * CE(m[perm])`` per row,
checked against an explicit loop over ``F.cross_entropy``, one row at a time.

Tolerances: float64 uses ``assert_close``'s float64 defaults. In float32 the
loss sums a row's pixel losses in a different order (and accumulator) than
``F.cross_entropy`` does; each sum of n <= 120 terms (one row's pixels) is
within n * 2**-24 ~ 7e-6 of the exact one relative to the sum of its
magnitudes (all terms are positive here), so ``rtol = 2e-5`` bounds the
difference with room to spare.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mixup_fused import mixed_segmentation_loss

TOL = {torch.float64: {}, torch.float32: dict(rtol=2e-5, atol=1e-6)}
IGNORE = 255

# (B, K, *spatial): 1-D (sequences), 2-D (images), 3-D (volumes); odd, prime sizes.
SHAPES = {"1d": (5, 4, 37), "2d": (6, 3, 7, 9), "3d": (3, 5, 4, 5, 6)}


def _inputs(shape, dtype, seed=0, ignore_fraction=0.0):
    g = torch.Generator().manual_seed(seed)
    B, K, *spatial = shape
    logits = (2 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
    masks = torch.randint(0, K, (B, *spatial), generator=g)
    if ignore_fraction:
        masks[torch.rand(masks.shape, generator=g) < ignore_fraction] = IGNORE
    perm = torch.randperm(B, generator=g)
    lam = torch.rand(B, generator=g, dtype=torch.float64)
    return logits, masks, perm, lam


def loop_loss(logits, masks, perm, lam, ignore_index=-100, reduction="mean"):
    """The definition, one row at a time: a map with no labelled pixel adds 0 to its
    row; rows whose maps of nonzero weight are all unlabelled leave the mean."""
    rows, counted = [], 0
    for i in range(logits.shape[0]):
        lam_i = lam[i] if isinstance(lam, torch.Tensor) else torch.tensor(float(lam), dtype=torch.float64)
        row = logits[i : i + 1]
        loss, labelled = 0.0, False
        for weight, m in ((lam_i, masks[i : i + 1]), (1 - lam_i, masks[perm[i] : perm[i] + 1])):
            if (m != ignore_index).any():
                loss = loss + weight * F.cross_entropy(row, m, ignore_index=ignore_index)
                labelled = labelled or bool(weight > 0)
        rows.append(torch.as_tensor(loss).to(logits.dtype).reshape(()))
        counted += labelled
    rows = torch.stack(rows)
    if reduction == "none":
        return rows
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / max(counted, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("lam_kind", ["tensor", "float"])
@pytest.mark.parametrize("ignore_fraction", [0.0, 0.3])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_equals_loop(shape, ignore_fraction, lam_kind, reduction, dtype):
    logits, masks, perm, lam = _inputs(shape, dtype, ignore_fraction=ignore_fraction)
    lam = lam.to(dtype) if lam_kind == "tensor" else 0.35
    ignore_index = IGNORE if ignore_fraction else -100
    ours = mixed_segmentation_loss(logits, masks, perm, lam, ignore_index=ignore_index, reduction=reduction)
    expected = loop_loss(logits, masks, perm, lam, ignore_index, reduction)
    assert ours.dtype == dtype and ours.shape == expected.shape == ((shape[0],) if reduction == "none" else ())
    torch.testing.assert_close(ours, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_gradients_equal_loop(shape, dtype):
    logits, masks, perm, lam = _inputs(shape, dtype, seed=1, ignore_fraction=0.2)
    lam = lam.to(dtype)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    lam_a, lam_b = lam.clone().requires_grad_(), lam.clone().requires_grad_()
    mixed_segmentation_loss(a, masks, perm, lam_a, ignore_index=IGNORE).backward()
    loop_loss(b, masks, perm, lam_b, IGNORE).backward()
    torch.testing.assert_close(a.grad, b.grad, **TOL[dtype])
    torch.testing.assert_close(lam_a.grad, lam_b.grad, **TOL[dtype])


def test_gradcheck():
    logits, masks, perm, lam = _inputs((3, 4, 5, 2), torch.float64, seed=2, ignore_fraction=0.2)
    fn = lambda x, w: mixed_segmentation_loss(x, masks, perm, w, ignore_index=IGNORE, reduction="none")
    assert torch.autograd.gradcheck(fn, (logits.requires_grad_(), lam.requires_grad_()))


@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_lam_one_is_plain_cross_entropy(shape):
    logits, masks, perm, _ = _inputs(shape, torch.float64, seed=3)
    # Every row has the same number of pixels, so the mean of row means is the mean over pixels.
    torch.testing.assert_close(mixed_segmentation_loss(logits, masks, perm, 1.0), F.cross_entropy(logits, masks))
    ones = torch.ones(shape[0], dtype=torch.float64)
    torch.testing.assert_close(mixed_segmentation_loss(logits, masks, perm, ones), F.cross_entropy(logits, masks))
    torch.testing.assert_close(
        mixed_segmentation_loss(logits, masks, perm, 1.0, reduction="sum"),
        F.cross_entropy(logits, masks, reduction="none").flatten(1).mean(1).sum(),
    )
    # lam = 0 is plain cross-entropy against the partners' maps.
    torch.testing.assert_close(mixed_segmentation_loss(logits, masks, perm, 0.0), F.cross_entropy(logits, masks[perm]))


def test_ignore_label_255():
    logits, masks, perm, lam = _inputs(SHAPES["2d"], torch.float64, seed=4, ignore_fraction=0.4)
    assert (masks == IGNORE).any()
    # Per row, lam = 1 is F.cross_entropy of that row alone (rows have different labelled counts).
    each = mixed_segmentation_loss(logits, masks, perm, 1.0, ignore_index=IGNORE, reduction="none")
    for i in range(logits.shape[0]):
        torch.testing.assert_close(each[i], F.cross_entropy(logits[i : i + 1], masks[i : i + 1], ignore_index=IGNORE))
    # The ignored pixels count for nothing: changing their logits changes neither the loss nor other gradients.
    x = logits.clone().requires_grad_()
    loss = mixed_segmentation_loss(x, masks, torch.arange(logits.shape[0]), lam, ignore_index=IGNORE)
    loss.backward()
    ignored = (masks == IGNORE).unsqueeze(1).expand_as(logits)
    assert (x.grad[ignored] == 0).all()
    perturbed = torch.where(ignored, logits + 10, logits)
    torch.testing.assert_close(
        mixed_segmentation_loss(perturbed, masks, torch.arange(logits.shape[0]), lam, ignore_index=IGNORE), loss
    )


def test_rows_without_labels():
    """A map with no labelled pixel adds 0; a row with no labelled map of nonzero weight leaves the mean."""
    logits, masks, _, lam = _inputs(SHAPES["2d"], torch.float64, seed=5)
    B = logits.shape[0]
    perm = torch.tensor([0, 2, 1, 4, 3, 5])  # rows 0 and 5 are their own partners
    masks[0] = IGNORE
    x = logits.clone().requires_grad_()
    each = mixed_segmentation_loss(x, masks, perm, lam, ignore_index=IGNORE, reduction="none")
    assert each[0] == 0 and torch.isfinite(each).all()
    mean = mixed_segmentation_loss(x, masks, perm, lam, ignore_index=IGNORE)
    torch.testing.assert_close(mean, each.sum() / (B - 1))
    torch.testing.assert_close(mean, loop_loss(logits, masks, perm, lam, IGNORE))
    mean.backward()
    assert (x.grad[0] == 0).all() and torch.isfinite(x.grad).all()
    # Row 2's own map is unlabelled, its partner's is not: it counts, with (1 - lam) of the partner's CE.
    masks[2] = IGNORE
    each = mixed_segmentation_loss(logits, masks, perm, lam, ignore_index=IGNORE, reduction="none")
    partner_ce = F.cross_entropy(logits[2:3], masks[1:2], ignore_index=IGNORE)
    torch.testing.assert_close(each[2], (1 - lam[2]) * partner_ce)
    torch.testing.assert_close(
        mixed_segmentation_loss(logits, masks, perm, lam, ignore_index=IGNORE), each.sum() / (B - 1)
    )
    # ...but with lam = 1 the partner's map has no weight, and row 2 leaves the mean too.
    each = mixed_segmentation_loss(logits, masks, perm, 1.0, ignore_index=IGNORE, reduction="none")
    torch.testing.assert_close(
        mixed_segmentation_loss(logits, masks, perm, 1.0, ignore_index=IGNORE), each.sum() / (B - 2)
    )
    # No labelled pixel at all: 0, with zero (finite) gradients.
    x = logits.clone().requires_grad_()
    loss = mixed_segmentation_loss(x, torch.full_like(masks, IGNORE), perm, lam, ignore_index=IGNORE)
    loss.backward()
    assert loss == 0 and (x.grad == 0).all()


@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_masks_with_channel_dim_and_dtypes(shape):
    logits, masks, perm, lam = _inputs(shape, torch.float32, seed=6, ignore_fraction=0.2)
    expected = mixed_segmentation_loss(logits, masks, perm, lam, ignore_index=IGNORE, reduction="none")
    for m in (masks.unsqueeze(1), masks.to(torch.uint8), masks.to(torch.int32), masks.to(torch.uint8).unsqueeze(1)):
        ours = mixed_segmentation_loss(logits, m, perm, lam, ignore_index=IGNORE, reduction="none")
        torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    torch.testing.assert_close(
        mixed_segmentation_loss(logits, masks, perm.to(torch.int32), lam, ignore_index=IGNORE, reduction="none"),
        expected,
        rtol=0,
        atol=0,
    )


def test_batch_of_one():
    logits, masks, perm, _ = _inputs((1, 3, 11), torch.float64, seed=7)
    torch.testing.assert_close(mixed_segmentation_loss(logits, masks, perm, 0.6), F.cross_entropy(logits, masks))


# ----------------------------------------------------------------------------
# Errors name the argument
# ----------------------------------------------------------------------------

_B, _K, _H, _W = 4, 3, 5, 6


def _good():
    return dict(
        logits=torch.randn(_B, _K, _H, _W),
        masks=torch.randint(0, _K, (_B, _H, _W)),
        perm=torch.tensor([1, 0, 3, 2]),
        lam=torch.full((_B,), 0.5),
    )


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(masks=torch.rand(_B, _H, _W)), TypeError, "masks must be an integer label map"),
        (dict(masks=torch.randint(0, _K, (_B, _H, _W + 1))), ValueError, r"masks must have shape"),
        (dict(masks=torch.randint(0, _K, (_B + 1, _H, _W))), ValueError, r"masks must have shape"),
        (dict(masks=torch.randint(0, _K, (_B, 2, _H, _W))), ValueError, r"masks must have shape"),
        (dict(masks=torch.full((_B, _H, _W), _K)), ValueError, r"masks\[0, 0, 0\] = 3 is neither a class id"),
        (dict(masks=torch.full((_B, _H, _W), 255)), ValueError, "ignore_index = -100"),
        (dict(masks="masks"), TypeError, "masks must be a tensor"),
        (dict(perm=torch.tensor([1, 0, 3])), ValueError, r"perm must have shape \[B\] = \[4\]"),
        (dict(perm=torch.tensor([[1, 0, 3, 2]])), ValueError, "perm must have shape"),
        (dict(perm=torch.tensor([1.0, 0.0, 3.0, 2.0])), TypeError, "perm must be an int64"),
        (dict(perm=torch.tensor([1, 0, 4, 2])), ValueError, r"perm\[2\] = 4 is out of range"),
        (dict(lam=1.5), ValueError, r"lam must be in \[0, 1\]"),
        (dict(lam=-0.1), ValueError, r"lam must be in \[0, 1\]"),
        (dict(lam=float("nan")), ValueError, "lam must be in"),
        (dict(lam=True), TypeError, "lam"),
        (dict(lam=torch.tensor([0.5, 0.2, -0.1, 1.0])), ValueError, r"lam\[2\] = -0.1"),
        (dict(lam=torch.tensor([0.5, 0.2, 1.0, float("nan")])), ValueError, r"lam\[3\] = nan"),
        (dict(lam=torch.full((_B + 1,), 0.5)), ValueError, r"lam must be a float or have shape \[B\]"),
        (dict(lam=torch.ones(_B, dtype=torch.int64)), TypeError, "lam must be a float or a floating tensor"),
        (dict(logits=torch.randint(0, 3, (_B, _K, _H, _W))), TypeError, "logits"),
        (dict(logits=torch.randn(_B, _K), masks=torch.randint(0, _K, (_B,))), ValueError, "logits must have shape"),
        (dict(reduction="avg"), ValueError, "reduction"),
        (dict(ignore_index=255.0), TypeError, "ignore_index"),
    ],
)
def test_errors(change, exc, match):
    with pytest.raises(exc, match=f"^mixup_fused: .*{match}"):
        mixed_segmentation_loss(**{**_good(), **change})
