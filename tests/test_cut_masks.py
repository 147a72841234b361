"""Free-form cut masks (mixup_fused.sampling.masks): FMix's exact areas and
power-law spectrum, ClassMix's class selection, generators, devices, errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats

from mixup_fused.sampling import classmix_masks, fmix_masks, mask_lam
from mixup_fused.sampling.masks import _low_freq_field

HAS_CUDA = torch.cuda.is_available()
SHAPES = [(1,), (37,), (64,), (7, 9), (16, 16), (1, 5), (3, 5, 7), (8, 8, 8)]


def _expected_counts(lam, shape) -> list[int]:
    """``round((1 - lam) * N)`` per row, in Python (round half to even)."""
    n = math.prod(shape)
    return [round((1.0 - float(v)) * n) for v in lam]


# ----------------------------------------------------------------------------
# FMix
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_fmix_area_is_exact(shape):
    n = math.prod(shape)
    g = torch.Generator().manual_seed(sum(shape))
    # 0, 1, halves of a pixel (round half to even), and random values.
    lams = [v for v in (0.0, 1.0, 0.5, 1.0 / 3.0, 1.0 - 2.5 / n, 1.0 - 0.5 / n, 1.0 - (n - 0.5) / n) if 0 <= v <= 1]
    lam = torch.tensor(lams + torch.rand(9, generator=g, dtype=torch.float64).tolist(), dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        lam_d = lam.to(dtype)
        masks = fmix_masks(lam.shape[0], shape, lam_d, generator=g)
        assert masks.dtype == torch.bool and masks.shape == (lam.shape[0], *shape)
        counts = masks.flatten(1).sum(1).tolist()
        assert counts == _expected_counts(lam_d, shape)
        expected_lam = torch.tensor([1.0 - c / float(n) for c in counts], dtype=torch.float64)
        assert torch.equal(mask_lam(masks), expected_lam)
    # A float lam: every row cut alike.
    masks = fmix_masks(5, shape, 0.3, generator=g)
    assert masks.flatten(1).sum(1).tolist() == [round(0.7 * n)] * 5


def _energy_fraction(masks: torch.Tensor, cutoff: float) -> tuple[float, float]:
    """Mean over rows of the share of the (mean-free) energy at ``0 < |f| <= cutoff``,
    and the share a white-noise image puts there (the share of those frequencies)."""
    dims = tuple(range(1, masks.dim()))
    spatial = masks.shape[1:]
    power = torch.fft.fftn(masks.double(), dim=dims).abs().square()
    grid = torch.meshgrid(*[torch.fft.fftfreq(s) for s in spatial], indexing="ij")
    freq = torch.sqrt(sum(f * f for f in grid))
    low = (freq > 0) & (freq <= cutoff)
    nonzero = freq > 0
    share = power[:, low].sum(1) / power[:, nonzero].sum(1).clamp_min(1e-30)
    return float(share.mean()), float(low.sum()) / float(nonzero.sum())


@pytest.mark.parametrize("shape", [(256,), (32, 32), (12, 12, 12)])
def test_fmix_masks_are_low_frequency(shape):
    """Low frequencies dominate the mask: the energy share of the lowest
    frequencies far exceeds white noise's (and a random mask of the same
    area), and grows with ``decay_power``."""
    g = torch.Generator().manual_seed(0)
    cutoff = 2.5 / max(shape)
    shares = {}
    for decay in (1.0, 3.0, 5.0):
        shares[decay], white = _energy_fraction(fmix_masks(64, shape, 0.5, decay_power=decay, generator=g), cutoff)
    scrambled = torch.rand((64, *shape), generator=g).flatten(1).argsort(1).argsort(1) < math.prod(shape) // 2
    random_share, _ = _energy_fraction(scrambled.view(64, *shape), cutoff)
    assert abs(random_share - white) < 0.5 * white + 0.01
    assert shares[3.0] > 5 * white and shares[3.0] > 0.3
    assert shares[1.0] < shares[3.0] < shares[5.0]
    assert fmix_masks(4, shape, 0.5, decay_power=0.0, generator=g).shape == (4, *shape)


@pytest.mark.parametrize("decay", [1.0, 2.0, 3.0])
def test_fmix_source_spectrum_is_a_power_law(decay):
    """The source's mean power at frequency f falls as ``f ** (-2 * decay_power)``
    (the log-log slope, fitted over the interior of the rfft grid)."""
    shape = (48, 48)
    field = _low_freq_field(400, shape, decay, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert field.shape == (400, *shape)
    power = torch.fft.rfftn(field.double(), dim=(1, 2)).abs().square().mean(0)
    fy = torch.fft.fftfreq(shape[0]).unsqueeze(1)
    fx = torch.fft.rfftfreq(shape[1]).unsqueeze(0)
    freq = torch.sqrt(fy * fy + fx * fx)
    # The self-conjugate columns (fx = 0 and Nyquist) lose the imaginary part in irfftn: left out.
    keep = (freq > 1.0 / max(shape)) & (fx > 0) & (fx < 0.5)
    slope = stats.linregress(freq[keep].log().numpy(), power[keep].log().numpy()).slope
    assert abs(slope + 2 * decay) < 0.1, slope


def test_fmix_reproducible_and_shaped():
    a = fmix_masks(6, (10, 12), 0.4, generator=torch.Generator().manual_seed(3))
    b = fmix_masks(6, (10, 12), 0.4, generator=torch.Generator().manual_seed(3))
    c = fmix_masks(6, (10, 12), 0.4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1]), "one mask per row"
    torch.manual_seed(9)
    d = fmix_masks(3, (20,), 0.4)
    torch.manual_seed(9)
    assert torch.equal(d, fmix_masks(3, (20,), 0.4))
    assert fmix_masks(0, (4, 4, 4), 0.5).shape == (0, 4, 4, 4)
    lam = torch.tensor(0.25)  # a 0-dim tensor: every row
    assert fmix_masks(3, (8,), lam).sum(1).tolist() == [6, 6, 6]
    # A steep decay stays finite in float32: still exactly the area asked for.
    assert fmix_masks(3, (64, 64), 0.3, decay_power=25.0).flatten(1).sum(1).tolist() == [round(0.7 * 4096)] * 3


def test_fmix_device_argument():
    assert fmix_masks(2, (6, 6), 0.5, device="cpu").device == torch.device("cpu")
    assert fmix_masks(2, (6, 6), 0.5, generator=torch.Generator()).device == torch.device("cpu")
    with pytest.raises(ValueError, match="mixup_fused: generator is on cpu but device is meta"):
        fmix_masks(2, (6, 6), 0.5, generator=torch.Generator(), device="meta")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_fmix_on_cuda():
    lam = torch.rand(16, dtype=torch.float64, device="cuda")
    masks = fmix_masks(16, (31, 17), lam, device="cuda")
    assert masks.device.type == "cuda"
    assert masks.flatten(1).sum(1).tolist() == _expected_counts(lam.cpu(), (31, 17))
    g = torch.Generator(device="cuda").manual_seed(0)
    assert fmix_masks(4, (9, 9, 9), 0.3, generator=g).device.type == "cuda"


def test_fmix_errors():
    with pytest.raises(ValueError, match="mixup_fused: lam must lie in"):
        fmix_masks(2, (4, 4), 1.5)
    with pytest.raises(ValueError, match="mixup_fused: lam must lie in"):
        fmix_masks(2, (4, 4), torch.tensor([0.5, math.nan]))
    with pytest.raises(ValueError, match=r"mixup_fused: lam must be a float or a tensor of shape \[2\]"):
        fmix_masks(2, (4, 4), torch.rand(3))
    with pytest.raises(TypeError, match="mixup_fused: lam must be a float"):
        fmix_masks(2, (4, 4), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="mixup_fused: lam must be a float"):
        fmix_masks(2, (4, 4), "0.5")
    with pytest.raises(ValueError, match="mixup_fused: batch_size"):
        fmix_masks(-1, (4, 4), 0.5)
    with pytest.raises(ValueError, match="mixup_fused: spatial_shape must have 1, 2 or 3 sizes"):
        fmix_masks(2, (2, 3, 4, 5), 0.5)
    with pytest.raises(ValueError, match="mixup_fused: spatial_shape must hold sizes >= 1"):
        fmix_masks(2, (0, 3), 0.5)
    with pytest.raises(ValueError, match="mixup_fused: max_soft must be 0.0"):
        fmix_masks(2, (4, 4), 0.5, max_soft=0.1)
    with pytest.raises(ValueError, match="mixup_fused: decay_power"):
        fmix_masks(2, (4, 4), 0.5, decay_power=-1.0)
    with pytest.raises(TypeError, match="mixup_fused: generator must be a torch.Generator"):
        fmix_masks(2, (4, 4), 0.5, generator=0)
    with pytest.raises(TypeError, match="mixup_fused: cut_mask must be a bool tensor"):
        mask_lam(torch.zeros(2, 3))


# ----------------------------------------------------------------------------
# ClassMix
# ----------------------------------------------------------------------------


def _label_maps(batch_size, shape, generator, ignore_index=None, max_classes=7):
    """Each row: a random set of 1..max_classes labels out of 0..11 (each
    present at least once), plus ``ignore_index`` pixels in every other row."""
    rows = []
    n = math.prod(shape)
    for i in range(batch_size):
        k = int(torch.randint(1, max_classes + 1, (1,), generator=generator))
        labels = torch.randperm(12, generator=generator)[:k]
        if ignore_index is not None and i % 2 == 0:
            labels = torch.cat([labels, torch.tensor([ignore_index])])
        row = labels[torch.randint(0, labels.numel(), (n,), generator=generator)]
        row[: labels.numel()] = labels[: min(labels.numel(), n)]
        rows.append(row[torch.randperm(n, generator=generator)].view(shape))
    return torch.stack(rows)


def _check_classmix(labels, perm, cut, ignore_index=None):
    """Row i: floor(n / 2) of the partner's n classes (ignore_index not
    counted, never selected), and the mask is isin(partner's map, them)."""
    assert cut.dtype == torch.bool and cut.shape == labels.shape
    for i in range(labels.shape[0]):
        partner = labels[perm[i]]
        present = set(torch.unique(partner).tolist()) - {ignore_index}
        chosen = set(torch.unique(partner[cut[i]]).tolist())
        assert len(chosen) == len(present) // 2, (i, present, chosen)
        assert chosen <= present and ignore_index not in chosen
        assert torch.equal(cut[i], torch.isin(partner, torch.tensor(sorted(chosen), dtype=partner.dtype)))


@pytest.mark.parametrize("shape", [(50,), (9, 11), (4, 5, 6)])
@pytest.mark.parametrize("ignore_index", [None, 255])
def test_classmix_selects_half_of_the_partners_classes(shape, ignore_index):
    g = torch.Generator().manual_seed(len(shape))
    labels = _label_maps(24, shape, g, ignore_index)
    perm = torch.randperm(24, generator=g)
    cut = classmix_masks(labels, perm, ignore_index=ignore_index, generator=g)
    _check_classmix(labels, perm, cut, ignore_index)
    # A channel dim of size 1 is dropped.
    cut_c = classmix_masks(labels.unsqueeze(1), perm, ignore_index=ignore_index, generator=g)
    assert cut_c.shape == labels.shape
    _check_classmix(labels, perm, cut_c, ignore_index)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_classmix_label_dtypes_and_negative_ignore(dtype):
    g = torch.Generator().manual_seed(1)
    labels = _label_maps(10, (6, 7), g)
    if dtype != torch.uint8:
        labels = torch.where(labels == 3, -1, labels)  # -1 as the ignore label
    labels = labels.to(dtype)
    perm = torch.arange(9, -1, -1)
    ignore = None if dtype == torch.uint8 else -1
    _check_classmix(labels, perm, classmix_masks(labels, perm, ignore_index=ignore, generator=g), ignore)


def test_classmix_subsets_are_uniform():
    """4 classes in every map: each of the 6 pairs is picked equally often."""
    B = 6000
    base = torch.tensor([[0, 1], [2, 3]]).repeat(3, 3)
    labels = base.expand(B, *base.shape).contiguous()
    cut = classmix_masks(labels, torch.arange(B).roll(1), generator=torch.Generator().manual_seed(2))
    pairs = [tuple(sorted(set(labels[i][cut[i]].tolist()))) for i in range(B)]
    counts = {p: pairs.count(p) for p in itertools.combinations(range(4), 2)}
    assert sum(counts.values()) == B
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


def test_classmix_edge_cases():
    g = torch.Generator().manual_seed(0)
    one_class = torch.full((3, 4, 4), 7)
    assert not classmix_masks(one_class, torch.tensor([1, 2, 0]), generator=g).any()
    only_ignored = torch.full((2, 5), 255)
    assert not classmix_masks(only_ignored, torch.tensor([1, 0]), ignore_index=255).any()
    assert classmix_masks(torch.zeros((0, 3, 3), dtype=torch.long), torch.zeros(0, dtype=torch.long)).shape == (0, 3, 3)
    # Itself as partner: its own classes.
    labels = _label_maps(5, (8, 8), g)
    _check_classmix(labels, torch.arange(5), classmix_masks(labels, torch.arange(5), generator=g))


def test_classmix_reproducible():
    labels = _label_maps(12, (10, 10), torch.Generator().manual_seed(5))
    perm = torch.arange(12).flip(0)
    a = classmix_masks(labels, perm, generator=torch.Generator().manual_seed(1))
    b = classmix_masks(labels, perm, generator=torch.Generator().manual_seed(1))
    c = classmix_masks(labels, perm, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_classmix_on_cuda():
    labels = _label_maps(16, (12, 12), torch.Generator().manual_seed(0), 255)
    perm = torch.randperm(16)
    cut = classmix_masks(labels.cuda(), perm.cuda(), ignore_index=255)
    assert cut.device.type == "cuda"
    _check_classmix(labels, perm, cut.cpu(), 255)


def test_classmix_errors():
    labels = torch.randint(0, 4, (4, 6, 6))
    perm = torch.arange(4)
    with pytest.raises(TypeError, match="mixup_fused: masks must be an integer label map, got dtype torch.float32"):
        classmix_masks(labels.float(), perm)
    with pytest.raises(TypeError, match="mixup_fused: masks must be an integer label map"):
        classmix_masks(labels > 1, perm)
    with pytest.raises(TypeError, match="mixup_fused: masks must be an integer tensor"):
        classmix_masks(labels.tolist(), perm)
    with pytest.raises(ValueError, match=r"mixup_fused: masks must be \[B, \*spatial\]"):
        classmix_masks(torch.zeros(4, dtype=torch.long), perm)
    with pytest.raises(ValueError, match=r"mixup_fused: masks must be \[B, \*spatial\]"):
        classmix_masks(torch.zeros((4, 2, 3, 3, 3), dtype=torch.long), perm)
    with pytest.raises(ValueError, match=r"mixup_fused: perm must have shape \[4\]"):
        classmix_masks(labels, torch.arange(3))
    with pytest.raises(ValueError, match=r"mixup_fused: perm must have shape \[4\]"):
        classmix_masks(labels, perm.view(2, 2))
    with pytest.raises(TypeError, match="mixup_fused: perm must be an integer tensor"):
        classmix_masks(labels, perm.float())
    with pytest.raises(ValueError, match=r"mixup_fused: perm must hold indices in \[0, 4\)"):
        classmix_masks(labels, torch.tensor([0, 1, 2, 4]))
    with pytest.raises(TypeError, match="mixup_fused: ignore_index must be an int"):
        classmix_masks(labels, perm, ignore_index=1.5)
    with pytest.raises(TypeError, match="mixup_fused: generator must be a torch.Generator"):
        classmix_masks(labels, perm, generator=1)
