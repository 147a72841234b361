"""mixup_fused.sampling: timm's box functions draw for draw, the Beta draws
and the torch samplers' distributions, pairings. (The device path's "no host
reads" is in test_device_sampling.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import timm_module
from scipy import stats

from mixup_fused import Mixup, sampling
from mixup_fused.sampling import NO_BOX, MixupConfig, NumpySampler, TorchSampler


@pytest.fixture(scope="module")
def timm_mixup():
    return timm_module("data/mixup.py")


def _same_draws(ours, theirs, seed, *args, **kwargs):
    np.random.seed(seed)
    a = ours(*args, **kwargs)
    after_a = np.random.random()
    np.random.seed(seed)
    b = theirs(*args, **kwargs)
    assert np.random.random() == after_a, "numpy's RNG consumed differently"
    return a, b


# ----------------------------------------------------------------------------
# timm's functions, draw for draw
# ----------------------------------------------------------------------------

LAMS = [0.0, 0.13, 0.5, 0.731, 0.999, np.float32(0.3), np.float32(0.77777), np.float32(0.0417)]
SHAPES = [(3, 16, 16), (8, 3, 17, 31), (224, 224), (3, 7, 5)]


@pytest.mark.parametrize("shape", SHAPES)
def test_rand_bbox_same_as_timm(timm_mixup, shape):
    for seed, lam in enumerate(LAMS):
        for margin in (0.0, 0.25):
            a, b = _same_draws(sampling.rand_bbox, timm_mixup.rand_bbox, seed, shape, lam, margin)
            assert [int(v) for v in a] == [int(v) for v in b]
        a, b = _same_draws(sampling.rand_bbox, timm_mixup.rand_bbox, seed, shape, lam, count=5)
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("minmax", [(0.2, 0.8), (0.4, 0.6)])
def test_rand_bbox_minmax_same_as_timm(timm_mixup, shape, minmax):
    for seed in range(5):
        for count in (None, 6):
            a, b = _same_draws(sampling.rand_bbox_minmax, timm_mixup.rand_bbox_minmax, seed, shape, minmax, count)
            for u, v in zip(a, b, strict=True):
                np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("correct_lam", [True, False])
@pytest.mark.parametrize("minmax", [None, (0.25, 0.75)])
def test_cutmix_bbox_and_lam_same_as_timm(timm_mixup, correct_lam, minmax):
    for seed, lam in enumerate(LAMS):
        (box_a, lam_a), (box_b, lam_b) = _same_draws(
            sampling.cutmix_bbox_and_lam,
            timm_mixup.cutmix_bbox_and_lam,
            seed,
            (3, 20, 12),
            lam,
            minmax,
            correct_lam,
        )
        assert [int(v) for v in box_a] == [int(v) for v in box_b]
        assert lam_a == lam_b and type(lam_a) is type(lam_b)


# ----------------------------------------------------------------------------
# Beta draws
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.1, 0.4, 1.0, 2.5])
def test_sample_beta_distribution(alpha):
    n = 20000
    lam = sampling.sample_beta(alpha, n, generator=torch.Generator().manual_seed(int(alpha * 100)))
    assert lam.dtype == torch.float64 and lam.shape == (n,)
    assert torch.isfinite(lam).all() and (lam >= 0).all() and (lam <= 1).all()
    var = 1.0 / (4.0 * (2.0 * alpha + 1.0))
    assert abs(lam.mean().item() - 0.5) < 5 * math.sqrt(var / n)
    assert abs(lam.var().item() - var) < 0.05 * var
    assert stats.kstest(lam.numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    # A biased sampler fails the same test.
    biased = lam.clamp(0.05, 0.95)
    assert stats.kstest(biased.numpy(), stats.beta(alpha, alpha).cdf).pvalue < 1e-3 or alpha > 2


def test_sample_beta_generator_and_errors():
    a = sampling.sample_beta(0.5, 10, generator=torch.Generator().manual_seed(1))
    b = sampling.sample_beta(0.5, 10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="alpha"):
        sampling.sample_beta(0.0, 3)


@pytest.mark.parametrize("alpha", [0.2, 0.4, 1.0, 2.0, 8.0])
def test_beta_sampler_moments_and_ks(alpha):
    """200k draws: mean, variance (within 5 standard errors of each) and a KS
    test. A biased sampler (e.g. Johnk's method without its rejection step) fails."""
    n = 200_000
    lam = sampling.sample_beta(alpha, n, generator=torch.Generator().manual_seed(1234)).numpy()
    assert lam.min() >= 0.0 and lam.max() <= 1.0
    var = 1.0 / (4.0 * (2.0 * alpha + 1.0))
    se_mean = np.sqrt(var / n)
    assert abs(lam.mean() - 0.5) < 5 * se_mean
    # Variance of the sample variance: (mu4 - var^2) / n, with mu4 of Beta(a, a).
    mu4 = 3.0 * (2 * alpha + 1) * var**2 * ((alpha + 1) / (2 * alpha + 3)) * 1.0
    assert abs(lam.var() - var) < 5 * np.sqrt(max(mu4 - var**2, 1e-12) / n) + 1e-4
    ks = stats.kstest(lam[:50_000], stats.beta(alpha, alpha).cdf)
    assert ks.pvalue > 1e-3, ks


def test_device_sampler_draws_are_beta_distributed():
    m = Mixup(mixup_alpha=0.4, mode="elem", num_classes=2, sampler="device")
    torch.manual_seed(0)
    lams = torch.cat([m.sample_params(4096, None, "cpu").lam for _ in range(5)]).double().numpy()
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 1e-3


def test_torchvision_lam_is_torchvisions_draw():
    for alpha in (0.2, 1.0):
        torch.manual_seed(4)
        expected = float(torch.distributions.Beta(torch.tensor([alpha]), torch.tensor([alpha])).sample(()))
        after = torch.rand(1)
        torch.manual_seed(4)
        assert sampling.torchvision_lam(alpha) == expected
        assert torch.equal(torch.rand(1), after)


def test_torchvision_cutmix_box():
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        lam = float(torch.rand(1, generator=g))
        (y0, y1, x0, x1), lam_adj = sampling.torchvision_cutmix_box(13, 9, lam, generator=g)
        assert 0 <= y0 <= y1 <= 13 and 0 <= x0 <= x1 <= 9
        assert lam_adj == 1.0 - (y1 - y0) * (x1 - x0) / (13 * 9)
        r = 0.5 * math.sqrt(1.0 - lam)
        assert y1 - y0 <= 2 * int(r * 13) and x1 - x0 <= 2 * int(r * 9)


# ----------------------------------------------------------------------------
# Vectorised torch boxes: timm's distributions
# ----------------------------------------------------------------------------


def test_rand_boxes_match_timm_distribution():
    n, Hh, Ww, lam = 40000, 24, 17, 0.6
    g = torch.Generator().manual_seed(0)
    ours = sampling.rand_boxes(Hh, Ww, torch.full((n,), lam, dtype=torch.float64), generator=g)
    assert ours.dtype == torch.int64 and ours.shape == (n, 4)
    assert ((ours[:, 0] >= 0) & (ours[:, 0] <= ours[:, 1]) & (ours[:, 1] <= Hh)).all()
    assert ((ours[:, 2] >= 0) & (ours[:, 2] <= ours[:, 3]) & (ours[:, 3] <= Ww)).all()
    cut_h, cut_w = int(Hh * math.sqrt(1 - lam)), int(Ww * math.sqrt(1 - lam))
    assert (ours[:, 1] - ours[:, 0]).max() == cut_h and (ours[:, 3] - ours[:, 2]).max() == cut_w
    np.random.seed(0)
    theirs = np.stack(sampling.rand_bbox((Hh, Ww), lam, count=n), axis=1)
    for j in range(4):
        a, b = ours[:, j].double(), torch.from_numpy(theirs[:, j]).double()
        assert abs(a.mean() - b.mean()) < 5 * (a.std() + b.std()) / math.sqrt(n) + 1e-9


def test_rand_boxes_minmax_match_timm_distribution():
    n, Hh, Ww, minmax = 40000, 30, 20, (0.2, 0.8)
    ours = sampling.rand_boxes_minmax(Hh, Ww, minmax, n, generator=torch.Generator().manual_seed(1))
    hs, ws = ours[:, 1] - ours[:, 0], ours[:, 3] - ours[:, 2]
    assert hs.min() == int(Hh * 0.2) and hs.max() == int(Hh * 0.8) - 1
    assert ws.min() == int(Ww * 0.2) and ws.max() == int(Ww * 0.8) - 1
    assert (ours[:, 0] >= 0).all() and (ours[:, 1] <= Hh).all() and (ours[:, 2] >= 0).all() and (ours[:, 3] <= Ww).all()
    np.random.seed(1)
    theirs = np.stack(sampling.rand_bbox_minmax((Hh, Ww), minmax, count=n), axis=1)
    for j in range(4):
        a, b = ours[:, j].double(), torch.from_numpy(theirs[:, j]).double()
        assert abs(a.mean() - b.mean()) < 5 * (a.std() + b.std()) / math.sqrt(n)
    # The placement is uniform: every top row from 0 to H - cut is used for the smallest boxes.
    small = ours[hs == int(Hh * 0.2)]
    assert set(small[:, 0].tolist()) == set(range(Hh - int(Hh * 0.2) + 1))


@pytest.mark.parametrize("correct_lam", [True, False])
@pytest.mark.parametrize("minmax", [None, (0.3, 0.7)])
def test_cutmix_boxes_and_lam(correct_lam, minmax):
    lam = sampling.sample_beta(1.0, 500, generator=torch.Generator().manual_seed(2))
    boxes, lam_c = sampling.cutmix_boxes_and_lam(
        10, 14, lam, minmax, correct_lam, generator=torch.Generator().manual_seed(3)
    )
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    if correct_lam or minmax is not None:
        torch.testing.assert_close(lam_c, 1 - area.double() / 140, rtol=0, atol=0)
    else:
        assert torch.equal(lam_c, lam)


# ----------------------------------------------------------------------------
# Pairings
# ----------------------------------------------------------------------------


def _check_pairing(p: sampling.Pairing, batch_size: int):
    perm = p.perm
    assert torch.equal(perm[perm], torch.arange(batch_size)), "an involution"
    assert p.first.shape == p.second.shape == (batch_size // 2,)
    assert torch.equal(perm[p.first], p.second) and torch.equal(perm[p.second], p.first)
    assert int((perm == torch.arange(batch_size)).sum()) == batch_size % 2
    assert int(p.paired().sum()) == 2 * (batch_size // 2)


@pytest.mark.parametrize("batch_size", [0, 1, 2, 3, 8, 9])
def test_pairings(batch_size):
    flip = sampling.flip_pairing(batch_size)
    assert flip.perm.tolist() == list(range(batch_size - 1, -1, -1))
    _check_pairing(flip, batch_size)
    _check_pairing(sampling.random_pairing(batch_size, generator=torch.Generator().manual_seed(0)), batch_size)
    half = sampling.half_pairing(batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    _check_pairing(half, batch_size)
    assert torch.equal(half.first, torch.arange(batch_size // 2))
    assert (half.second >= batch_size - batch_size // 2).all()
    x = torch.arange(batch_size)
    assert torch.equal(x[sampling.roll_permutation(batch_size)], x.roll(1, 0))
    perm = sampling.random_permutation(batch_size, generator=torch.Generator().manual_seed(0))
    assert sorted(perm.tolist()) == list(range(batch_size))


def test_random_pairing_is_uniform():
    """The 3 perfect matchings of 4 samples are equally likely."""
    g = torch.Generator().manual_seed(5)
    counts: dict[tuple, int] = {}
    for _ in range(3000):
        key = tuple(sampling.random_pairing(4, generator=g).perm.tolist())
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 3
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


# ----------------------------------------------------------------------------
# Whole-batch samplers
# ----------------------------------------------------------------------------

CFG = MixupConfig(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.7, switch_prob=0.4)


@pytest.mark.parametrize("sampler", ["numpy", "torch"])
def test_sampler_statistics(sampler):
    """Per-sample draws follow timm's distributions: P(not mixed) = 1 - prob,
    P(cut | mixed) = switch_prob, lam ~ Beta for the blended samples."""
    n = 20000
    if sampler == "numpy":
        np.random.seed(0)
        params = NumpySampler().sample(CFG, "elem", n, (16, 16))
    else:
        params = TorchSampler(torch.Generator().manual_seed(0)).sample(CFG, "elem", n, (16, 16))
    lam = params.lam
    rows = params.boxes
    blended = (rows == torch.tensor(NO_BOX)).all(1)
    unchanged = (rows == 0).all(1)
    cut = ~blended & ~unchanged
    # An odd sample of this even batch has no fixed point: every row is drawn.
    assert abs(unchanged.double().mean().item() - 0.3) < 0.02
    assert abs(cut.double().mean().item() - 0.7 * 0.4) < 0.02
    assert stats.kstest(lam[blended].numpy(), stats.beta(0.8, 0.8).cdf).pvalue > 1e-4
    area = (rows[cut, 1] - rows[cut, 0]) * (rows[cut, 3] - rows[cut, 2])
    torch.testing.assert_close(lam[cut], 1 - area.double() / 256, rtol=0, atol=1e-7)


def test_mix_params_to():
    params = TorchSampler(torch.Generator().manual_seed(0)).sample(CFG, "elem", 8, (16, 16))
    moved = params.to("cpu", torch.float32)
    assert moved.lam.dtype == torch.float32 and torch.equal(moved.lam, params.lam.float())
    assert moved.perm is params.perm


@pytest.mark.parametrize("mode", ["elem", "pair", "batch"])
def test_nan_prob_mixes_nothing_like_timm(timm_mixup, mode):
    """timm draws ``rand < prob``: with prob = NaN no sample is mixed (the draws still happen)."""
    cfg = MixupConfig(mixup_alpha=1.0, prob=math.nan)
    np.random.seed(3)
    params = NumpySampler().sample(cfg, mode, 6)
    state = np.random.get_state()[1].copy()
    assert torch.all(params.lam == 1.0) and params.mixes is False
    np.random.seed(3)
    m = timm_mixup.Mixup(mixup_alpha=1.0, prob=math.nan, mode=mode, num_classes=4)
    m._params_per_elem(3 if mode == "pair" else 6) if mode != "batch" else m._params_per_batch()
    assert np.array_equal(np.random.get_state()[1], state)
