"""CutMix boxes of any spatial rank (``[B, C, T]``, ``[B, C, H, W]``,
``[B, C, D, H, W]``): bounds and half-open sides, lam corrected to the volume
fraction, the side-ratio law, minmax sizes, timm's draw order generalised,
the host and device samplers alike in distribution, the per-sample rows of
width ``2n``, and 2-D unchanged (timm's, bit for bit)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import timm_module
from scipy import stats

from mixup_fused import sampling
from mixup_fused.sampling import MixupConfig, NumpySampler, TorchSampler

SHAPES_ND = [(37,), (1,), (2,), (5, 7, 11), (16, 16, 16), (1, 3, 2)]
LAMS = [0.0, 0.13, 0.42, 0.731, 0.95, 1.0]


def _ratio(lam: float, n: int) -> float:
    """The side ratio law, written out: ``(1 - lam) ** (1 / n)``."""
    return math.sqrt(1.0 - lam) if n == 2 else (1.0 - lam) ** (1.0 / n)


def _host_boxes(shape, lam, count, seed=0) -> torch.Tensor:
    np.random.seed(seed)
    return torch.from_numpy(np.stack(np.broadcast_arrays(*sampling.rand_box_nd(shape, lam, count=count)), axis=1))


def _device_boxes(shape, lam, count, seed=0) -> torch.Tensor:
    lam_t = torch.full((count,), lam, dtype=torch.float64)
    return sampling.rand_boxes_nd(shape, lam_t, generator=torch.Generator().manual_seed(seed))


BOX_SOURCES = {"host": _host_boxes, "device": _device_boxes}


def _widths(boxes: torch.Tensor) -> torch.Tensor:
    return boxes[:, 1::2] - boxes[:, 0::2]


def _check_in_bounds(boxes: torch.Tensor, shape) -> None:
    assert boxes.dtype == torch.int64 and boxes.shape[1] == 2 * len(shape)
    for d, size in enumerate(shape):
        lo, hi = boxes[:, 2 * d], boxes[:, 2 * d + 1]
        assert ((lo >= 0) & (lo <= hi) & (hi <= size)).all(), (d, size)


# ----------------------------------------------------------------------------
# Boxes: bounds, half-open sides, the side ratio
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("source", BOX_SOURCES)
@pytest.mark.parametrize("shape", SHAPES_ND)
def test_boxes_in_bounds_and_half_open(source, shape):
    """Every box lies in the image; a box that is not clipped is exactly
    ``int(size * ratio)`` long per dim (half-open: a closed box would be one
    longer), and with enough centres that length is reached in every dim."""
    n = len(shape)
    for lam in LAMS:
        boxes = BOX_SOURCES[source](shape, lam, 4000, seed=int(lam * 100))
        _check_in_bounds(boxes, shape)
        widths = _widths(boxes)
        for d, size in enumerate(shape):
            cut = int(size * _ratio(lam, n))
            lo, hi = boxes[:, 2 * d], boxes[:, 2 * d + 1]
            inside = (lo > 0) & (hi < size)
            assert (widths[inside, d] == cut).all()
            assert (widths[:, d] <= cut).all() and int(widths[:, d].max()) == cut, (lam, d)
        # A box cuts a region of prod(widths) pixels: the slices it names.
        for row in boxes[:5].tolist():
            region = torch.zeros(shape, dtype=torch.bool)
            region[tuple(slice(row[2 * d], row[2 * d + 1]) for d in range(n))] = True
            assert int(region.sum()) == math.prod(row[2 * d + 1] - row[2 * d] for d in range(n))


@pytest.mark.parametrize("source", BOX_SOURCES)
@pytest.mark.parametrize("shape", [(29,), (40,), (9, 10, 13), (6, 6, 6)])
@pytest.mark.parametrize("lam", [0.2, 0.5, 0.81])
def test_side_ratio_law(source, shape, lam):
    """Unclipped, the cut is ``1 - lam`` of the volume up to the truncation of
    each side to whole pixels. Clipped, the mean cut fraction over many draws
    matches its exact expectation (every centre of every dim enumerated, the
    dims independent) within 5 standard errors."""
    n, volume, count = len(shape), math.prod(shape), 20000
    cuts = [int(size * _ratio(lam, n)) for size in shape]
    assert abs(math.prod(cuts) / volume - (1.0 - lam)) <= sum(1.0 / s for s in shape)
    expected = 1.0
    for size, cut in zip(shape, cuts, strict=True):
        lengths = [min(c + (cut + 1) // 2, size) - max(c - cut // 2, 0) for c in range(size)]
        expected *= sum(lengths) / (size * size)
    boxes = BOX_SOURCES[source](shape, lam, count, seed=7)
    fraction = _widths(boxes).prod(1).double() / volume
    se = float(fraction.std()) / math.sqrt(count)
    assert abs(float(fraction.mean()) - expected) < 5 * se + 1e-12


@pytest.mark.parametrize("shape", SHAPES_ND + [(12, 20)])
def test_corrected_lam_is_the_volume_fraction(shape):
    """``correct_lam`` (and minmax) give ``lam = 1 - cut volume / total volume`` exactly."""
    volume = math.prod(shape)
    minmaxes = [None] if min(shape) < 5 else [None, (0.3, 0.8)]
    for minmax in minmaxes:
        for seed, lam in enumerate(LAMS[:-1]):
            np.random.seed(seed)
            box, lam_c = sampling.cutmix_box_and_lam_nd(shape, lam, minmax, True)
            assert len(box) == 2 * len(shape)
            cut = math.prod(int(box[2 * d + 1] - box[2 * d]) for d in range(len(shape)))
            assert lam_c == 1.0 - cut / float(volume)
            np.random.seed(seed)
            box_u, lam_u = sampling.cutmix_box_and_lam_nd(shape, lam, minmax, False)
            assert [int(v) for v in box_u] == [int(v) for v in box]
            assert lam_u == (lam if minmax is None else lam_c)
        lam_t = sampling.sample_beta(1.0, 500, generator=torch.Generator().manual_seed(2))
        for correct in (True, False):
            g = torch.Generator().manual_seed(3)
            boxes, lam_c = sampling.cutmix_boxes_and_lam_nd(shape, lam_t, minmax, correct, generator=g)
            _check_in_bounds(boxes, shape)
            if correct or minmax is not None:
                torch.testing.assert_close(lam_c, 1.0 - _widths(boxes).prod(1).double() / volume, rtol=0, atol=0)
            else:
                assert torch.equal(lam_c, lam_t)


@pytest.mark.parametrize("shape", [(40,), (10, 12, 20)])
@pytest.mark.parametrize("source", ["host", "device"])
def test_minmax_sizes_in_range(shape, source):
    """Sides uniform in ``[int(size * min), int(size * max))``, each end reached;
    the box placed anywhere in the image (every low used for the smallest side)."""
    minmax, count = (0.2, 0.8), 40000
    if source == "host":
        np.random.seed(1)
        boxes = torch.from_numpy(np.stack(sampling.rand_box_minmax_nd(shape, minmax, count=count), axis=1))
    else:
        boxes = sampling.rand_boxes_minmax_nd(shape, minmax, count, generator=torch.Generator().manual_seed(1))
    _check_in_bounds(boxes, shape)
    widths = _widths(boxes)
    for d, size in enumerate(shape):
        lo_cut, hi_cut = int(size * minmax[0]), int(size * minmax[1])
        assert int(widths[:, d].min()) == lo_cut and int(widths[:, d].max()) == hi_cut - 1
        smallest = boxes[widths[:, d] == lo_cut, 2 * d]
        assert set(smallest.tolist()) == set(range(size - lo_cut + 1))


@pytest.mark.parametrize("shape", [(37,), (5, 7, 11), (8, 9)])
def test_host_draw_order_generalises_timm(shape):
    """One ``np.random.randint`` per dim, in dim order: the centres (timm: y
    then x), or all cut sizes and then all lows with minmax."""
    for seed, lam in enumerate([0.3, np.float32(0.61), 0.9]):
        np.random.seed(seed)
        box = sampling.rand_box_nd(shape, lam, count=3)
        np.random.seed(seed)
        ratio = (1 - lam) ** (1 / len(shape)) if len(shape) != 2 else np.sqrt(1 - lam)
        expected = []
        centres = [np.random.randint(0, size, size=3) for size in shape]
        for size, c in zip(shape, centres, strict=True):
            cut = int(size * ratio)
            expected += [np.clip(c - cut // 2, 0, size), np.clip(c + (cut + 1) // 2, 0, size)]
        for u, v in zip(box, expected, strict=True):
            np.testing.assert_array_equal(u, v)
    minmax = (0.25, 0.75)
    np.random.seed(5)
    box = sampling.rand_box_minmax_nd(shape, minmax, count=4)
    np.random.seed(5)
    cuts = [np.random.randint(int(s * minmax[0]), int(s * minmax[1]), size=4) for s in shape]
    lows = [np.random.randint(0, s - c + 1, size=4) for s, c in zip(shape, cuts, strict=True)]
    for d in range(len(shape)):
        np.testing.assert_array_equal(box[2 * d], lows[d])
        np.testing.assert_array_equal(box[2 * d + 1], lows[d] + cuts[d])


# ----------------------------------------------------------------------------
# Whole-batch samplers in 1-D and 3-D
# ----------------------------------------------------------------------------

CFG = MixupConfig(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.7, switch_prob=0.4)


def _rows(params, n):
    boxes = params.boxes
    assert boxes.shape == (params.lam.shape[0], 2 * n) and boxes.dtype == torch.int64
    blended = (boxes == torch.tensor(sampling.no_box(n))).all(1)
    unchanged = (boxes == torch.tensor(sampling.empty_box(n))).all(1)
    return blended, unchanged, ~blended & ~unchanged


@pytest.mark.parametrize("shape", [(23,), (6, 9, 11)])
@pytest.mark.parametrize("sampler", ["numpy", "torch"])
def test_sampler_rows_nd(shape, sampler):
    """Rows ``2n`` wide: blended rows all -1, untouched rows empty, cut rows
    with lam = 1 - volume fraction; the rates are timm's."""
    count, n, volume = 20000, len(shape), math.prod(shape)
    if sampler == "numpy":
        np.random.seed(0)
        params = NumpySampler().sample(CFG, "elem", count, shape)
    else:
        params = TorchSampler(torch.Generator().manual_seed(0)).sample(CFG, "elem", count, shape)
    blended, unchanged, cut = _rows(params, n)
    assert params.mixes is True
    assert abs(unchanged.double().mean().item() - 0.3) < 0.02
    assert abs(cut.double().mean().item() - 0.7 * 0.4) < 0.02
    assert stats.kstest(params.lam[blended].numpy(), stats.beta(0.8, 0.8).cdf).pvalue > 1e-4
    _check_in_bounds(params.boxes[cut], shape)
    vol = _widths(params.boxes[cut]).prod(1).double()
    torch.testing.assert_close(params.lam[cut], 1 - vol / volume, rtol=0, atol=1e-7)


@pytest.mark.parametrize("mode", sampling.MODES)
@pytest.mark.parametrize("shape", [(19,), (4, 5, 6)])
def test_scatter_rows_nd(mode, shape):
    """Every mode gives ``[B, 2n]`` rows; a pair shares its row; the unpaired
    sample (odd B) and mode 'half''s second half are empty."""
    B, n = 9, len(shape)
    for sampler in (NumpySampler(), TorchSampler(torch.Generator().manual_seed(4))):
        np.random.seed(4)
        params = sampler.sample(MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0), mode, B, shape)
        assert params.boxes.shape == (B, 2 * n)
        perm = params.perm
        if mode in ("pair", "batch"):
            assert torch.equal(params.boxes, params.boxes[perm])
        empty = torch.tensor(sampling.empty_box(n))
        assert torch.equal(params.boxes[B // 2], empty)  # the flip's fixed point
        if mode == "half":
            assert (params.boxes[B - B // 2 :] == empty).all()


def test_host_hints_nd():
    """Nothing cut: no box tensor; nothing mixed: ``mixes=False``."""
    params = NumpySampler().sample(MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0, prob=0.0), "elem", 6, (5, 6, 7))
    assert params.boxes is None and params.mixes is False
    g = torch.Generator().manual_seed(0)
    params = TorchSampler(g).sample(MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0, prob=0.0), "elem", 6, (11,))
    assert params.boxes is None and params.mixes is False
    params = TorchSampler(g).sample(MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0), "elem", 6, (11,))
    assert params.boxes.shape == (6, 2) and params.mixes is True


@pytest.mark.parametrize("shape", [(29,), (6, 9, 11)])
@pytest.mark.parametrize("minmax", [None, (0.3, 0.7)])
def test_host_and_device_samplers_agree_in_distribution(shape, minmax):
    """Same law, different draws: per box column and for the corrected lam of
    the cut rows, a two-sample KS test and the means within 5 standard errors.
    (The host keeps timm's float32 lam: both are compared in float32, else the
    same atom would sit at two values.)"""
    count = 20000
    cfg = MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0, cutmix_minmax=minmax)
    np.random.seed(11)
    host = NumpySampler().sample(cfg, "elem", count, shape)
    device = TorchSampler(torch.Generator().manual_seed(11)).sample(cfg, "elem", count, shape)
    cut_h, cut_d = _rows(host, len(shape))[2], _rows(device, len(shape))[2]
    columns = [(host.boxes[cut_h, j], device.boxes[cut_d, j]) for j in range(2 * len(shape))]
    for a, b in columns + [(host.lam[cut_h].float(), device.lam[cut_d].float())]:
        a, b = a.double(), b.double()
        assert stats.ks_2samp(a.numpy(), b.numpy()).pvalue > 1e-4
        se = math.sqrt(float(a.var()) / a.numel() + float(b.var()) / b.numel())
        assert abs(float(a.mean()) - float(b.mean())) < 5 * se + 1e-12


HOST_READS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero")


@pytest.mark.parametrize("shape", [(16,), (4, 8, 8)])
def test_device_sampler_nd_reads_nothing_back(monkeypatch, shape):
    def forbidden(*args, **kwargs):
        raise AssertionError("host read of a device value")

    sampler = TorchSampler(torch.Generator().manual_seed(0), host_hints=False)
    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    for cfg in (CFG, MixupConfig(cutmix_minmax=(0.2, 0.8))):
        for mode in sampling.MODES:
            params = sampler.sample(cfg, mode, 7, shape, pairing="random")
            assert params.mixes is None and params.boxes.shape == (7, 2 * len(shape))
    monkeypatch.undo()


@pytest.mark.parametrize("img_size", [None, (), (2, 3, 4, 5), (1, 2, 3, 4, 5)])
def test_cutmix_needs_one_to_three_spatial_dims(img_size):
    cfg = MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0)
    for sampler in (NumpySampler(), TorchSampler(torch.Generator())):
        with pytest.raises(ValueError, match=r"mixup_fused: CutMix needs x of shape \[B, C, T\], \[B, C, H, W\]"):
            sampler.sample(cfg, "elem", 4, img_size)


def test_bad_spatial_sizes():
    cfg = MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0)
    with pytest.raises(ValueError, match="mixup_fused: img_size must hold sizes >= 1"):
        TorchSampler(torch.Generator()).sample(cfg, "elem", 4, (0, 5))
    with pytest.raises(TypeError, match="mixup_fused: img_size must be a sequence of ints"):
        NumpySampler().sample(cfg, "elem", 4, (2.5, 4))
    with pytest.raises(ValueError, match="mixup_fused: spatial_shape must have 1, 2 or 3 sizes"):
        sampling.rand_boxes_nd((2, 3, 4, 5), torch.ones(3))
    assert sampling.need_spatial(torch.Size([3, 4])) == (3, 4)


# ----------------------------------------------------------------------------
# 2-D unchanged
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def timm_mixup():
    return timm_module("data/mixup.py")


@pytest.mark.parametrize("shape", [(16, 16), (17, 31), (7, 5)])
def test_2d_is_timm_bit_for_bit(timm_mixup, shape):
    for seed, lam in enumerate([0.0, 0.13, 0.5, 0.999, np.float32(0.3), np.float32(0.0417)]):
        for minmax in (None, (0.25, 0.75)):
            for correct_lam in (True, False):
                np.random.seed(seed)
                box_a, lam_a = sampling.cutmix_box_and_lam_nd(shape, lam, minmax, correct_lam)
                after = np.random.random()
                np.random.seed(seed)
                box_b, lam_b = timm_mixup.cutmix_bbox_and_lam(shape, lam, minmax, correct_lam)
                assert np.random.random() == after
                assert [int(v) for v in box_a] == [int(v) for v in box_b]
                assert lam_a == lam_b and type(lam_a) is type(lam_b)
        np.random.seed(seed)
        a = sampling.rand_box_nd(shape, lam, 0.25, count=5)
        np.random.seed(seed)
        b = timm_mixup.rand_bbox(shape, lam, 0.25, count=5)
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)


def test_2d_device_boxes_unchanged():
    """The torch 2-D draws are the former ones, draw for draw (written out here)."""
    H, W, n = 24, 17, 300
    lam = sampling.sample_beta(1.0, n, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    ratio = torch.sqrt((1.0 - lam).clamp_min(0.0))
    cut_h, cut_w = (H * ratio).long(), (W * ratio).long()
    cy, cx = torch.randint(0, H, (n,), generator=g), torch.randint(0, W, (n,), generator=g)
    expected = torch.stack(
        [
            (cy - cut_h // 2).clamp(0, H),
            (cy + (cut_h + 1) // 2).clamp(0, H),
            (cx - cut_w // 2).clamp(0, W),
            (cx + (cut_w + 1) // 2).clamp(0, W),
        ],
        dim=1,
    )
    assert torch.equal(sampling.rand_boxes_nd((H, W), lam, generator=torch.Generator().manual_seed(1)), expected)
    assert torch.equal(sampling.rand_boxes(H, W, lam, generator=torch.Generator().manual_seed(1)), expected)
    g = torch.Generator().manual_seed(2)
    ch = torch.randint(int(H * 0.2), int(H * 0.8), (n,), generator=g)
    cw = torch.randint(int(W * 0.2), int(W * 0.8), (n,), generator=g)
    u = torch.rand((2, n), dtype=torch.float64, generator=g)
    y0 = (u[0] * (H - ch + 1)).long().clamp_max(H - ch)
    x0 = (u[1] * (W - cw + 1)).long().clamp_max(W - cw)
    expected = torch.stack((y0, y0 + ch, x0, x0 + cw), dim=1)
    got = sampling.rand_boxes_minmax_nd((H, W), (0.2, 0.8), n, generator=torch.Generator().manual_seed(2))
    assert torch.equal(got, expected)
    assert sampling.no_box(2) == sampling.NO_BOX and sampling.empty_box(2) == sampling.EMPTY_BOX


@pytest.mark.parametrize("shape", [(50,), (16, 16), (17, 31), (5, 9, 9), (4, 4, 4)])
@pytest.mark.parametrize("minmax", [None, (0.2, 0.8)])
@pytest.mark.parametrize("correct_lam", [True, False])
def test_boxes_per_row_are_the_per_sample_calls(shape, minmax, correct_lam):
    """The sampler's all-rows box draws equal timm's per-sample loop of
    ``cutmix_box_and_lam_nd`` calls: the same boxes, the same lam (float32 lam
    in, as timm's per-sample arrays) and the same numpy stream afterwards."""
    lam = np.random.default_rng(0).beta(1.0, 1.0, size=37).astype(np.float32)
    lam[:3] = [0.0, 0.5, np.float32(0.999)]
    np.random.seed(11)
    boxes, lam_rows = sampling.cutmix_boxes_per_row(shape, lam, minmax, correct_lam)
    after = np.random.random()
    np.random.seed(11)
    loop = [sampling.cutmix_box_and_lam_nd(shape, v, minmax, correct_lam) for v in lam]
    assert np.random.random() == after
    np.testing.assert_array_equal(boxes, np.array([[int(b) for b in box] for box, _ in loop]))
    assert boxes.dtype == np.int64 and boxes.shape == (37, 2 * len(shape))
    np.testing.assert_array_equal(lam_rows, np.array([float(v) for _, v in loop]))


def _batch_rows_per_row_path(cfg, B, shape, pairing):
    """Batch mode through the per-row path (``cutmix_boxes_per_row`` and
    ``scatter_rows``), which the sampler's batch mode shortens."""
    from mixup_fused.sampling.timm import _params_per_batch, cutmix_boxes_per_row

    lam_b, use_cut_b = _params_per_batch(cfg)
    lam_n = np.array([lam_b], dtype=np.float64)
    use_cut_n = np.array([use_cut_b and lam_b != 1.0])
    box_n = None
    if use_cut_n[0]:
        box_n = np.zeros((1, 2 * len(shape)), dtype=np.int64)
        box_n[:], lam_n[:] = cutmix_boxes_per_row(shape, lam_n, cfg.cutmix_minmax, cfg.correct_lam)
    pair = NumpySampler._pairing("batch", B, pairing)
    return sampling.scatter_rows("batch", pair, lam_n, use_cut_n, box_n, host_hints=True)


@pytest.mark.parametrize("pairing", ["flip", "random"])
@pytest.mark.parametrize("B", [1, 2, 7, 64])
@pytest.mark.parametrize("shape", [(37,), (224, 224), (12, 20), (5, 7, 11), (16, 16, 16)])
def test_batch_mode_rows_equal_the_per_row_path(shape, B, pairing):
    """The sampler's batch mode (one box in Python scalars, the rows filled
    directly) gives what the general per-row path gives for the same numpy
    seed: lam, boxes, pairing, the ``mixes`` hint, and the same draws consumed."""
    configs = [
        MixupConfig(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.8, switch_prob=0.5),
        MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0),
        MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False),
        MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0, cutmix_minmax=(0.2, 0.8)),
        MixupConfig(mixup_alpha=0.0, cutmix_alpha=0.05),  # lam near 1: empty boxes
    ]
    for k, cfg in enumerate(configs):
        for seed in range(12):
            np.random.seed(100 * k + seed)
            got = NumpySampler().sample(cfg, "batch", B, shape, pairing)
            after_got = np.random.rand()
            np.random.seed(100 * k + seed)
            want = _batch_rows_per_row_path(cfg, B, shape, pairing)
            after_want = np.random.rand()
            assert after_got == after_want, "a different number of draws"
            assert torch.equal(got.perm, want.perm)
            assert got.lam.dtype == want.lam.dtype == torch.float64
            assert torch.equal(got.lam, want.lam), (cfg, seed)
            assert (got.boxes is None) == (want.boxes is None)
            if got.boxes is not None:
                assert got.boxes.dtype == torch.int64 and torch.equal(got.boxes, want.boxes), (cfg, seed)
            assert got.mixes == want.mixes


@pytest.mark.parametrize("pairing", ["flip", "random"])
@pytest.mark.parametrize("B", [1, 2, 7, 16])
@pytest.mark.parametrize("mode", sampling.MODES)
def test_scatter_rows_host_equals_torch(mode, B, pairing):
    """``scatter_rows`` on numpy draws (the host path, which skips the masks
    where every sample has a partner) and on the same draws as tensors (the
    device path) give the same rows."""
    rng = np.random.default_rng(B)
    n = sampling.draws_per_row(mode, B)
    if pairing == "flip":
        pair = sampling.flip_pairing(B) if mode != "half" else sampling.half_pairing(B)
    else:
        pair = sampling.half_pairing(B, shuffle=True) if mode == "half" else sampling.random_pairing(B)
    for trial in range(20):
        lam_n = np.where(rng.random(n) < 0.3, 1.0, rng.random(n))
        use_cut_n = (rng.random(n) < 0.5) & (lam_n != 1.0)
        box_n = None
        if trial % 3:
            box_n = rng.integers(0, 9, (n, 4))
            box_n[:, 1::2] += box_n[:, 0::2]
        host = sampling.scatter_rows(mode, pair, lam_n, use_cut_n, box_n, host_hints=True)
        dev = sampling.scatter_rows(
            mode,
            pair,
            torch.from_numpy(lam_n),
            torch.from_numpy(use_cut_n),
            None if box_n is None else torch.from_numpy(box_n),
        )
        assert torch.equal(host.lam, dev.lam), (mode, B, trial)
        if host.boxes is None:
            assert box_n is None or not use_cut_n.any()
        else:
            assert torch.equal(host.boxes, dev.boxes), (mode, B, trial)
        mixed = bool((dev.lam != 1).any())
        if dev.boxes is not None:
            cut = (dev.boxes != -1).any(1) & (dev.boxes[:, 1::2] > dev.boxes[:, 0::2]).all(1)
            mixed = mixed or bool(cut.any())
        assert host.mixes == mixed
