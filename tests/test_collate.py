"""Collate-time mixing: ``mixup_fused.FastCollateMixup`` against timm's, the
``collate_mix`` op against the reference, and its argument errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import poisoned_allocations

from mixup_fused import FastCollateMixup
from mixup_fused.reference import NO_BOX, collate_mix_reference

CONFIGS = {
    "mixup": dict(mixup_alpha=1.0),
    "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
    "switch": dict(mixup_alpha=0.8, cutmix_alpha=1.0),
    "switch_prob": dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.6, switch_prob=0.3),
    "minmax": dict(mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8)),
    "nocorrect": dict(mixup_alpha=0.5, cutmix_alpha=1.0, correct_lam=False),
}


@pytest.fixture(scope="module")
def timm_collate():
    from bench.peers import load_timm

    try:
        return load_timm("data/mixup.py").FastCollateMixup
    except ImportError as err:
        pytest.skip(str(err))


def _samples(B, C, H, W, K, seed, as_numpy=True, multi_label=False):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (C, H, W), dtype=np.uint8) for _ in range(B)]
    if multi_label:
        labels = [torch.from_numpy(rng.integers(0, 2, K).astype(np.float32)) for _ in range(B)]
    else:
        labels = [int(v) for v in rng.integers(0, K, B)]
    return [(im if as_numpy else torch.from_numpy(im), lab) for im, lab in zip(images, labels, strict=True)]


def _copy(batch):
    return [(im.copy() if isinstance(im, np.ndarray) else im.clone(), lab) for im, lab in batch]


@pytest.mark.parametrize("cfg", CONFIGS.keys())
@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
@pytest.mark.parametrize("as_numpy", [True, False], ids=["numpy", "tensor"])
def test_same_batch_and_targets_as_timm_bit_for_bit(timm_collate, mode, cfg, as_numpy):
    """Same numpy seed, same samples: the same uint8 batch and float32 targets, bit for bit."""
    B, C, H, W, K = 10, 3, 12, 17, 7
    for seed in range(8):
        batch = _samples(B, C, H, W, K, seed, as_numpy)
        np.random.seed(seed)
        want_x, want_y = timm_collate(mode=mode, num_classes=K, label_smoothing=0.1, **CONFIGS[cfg])(_copy(batch))
        np.random.seed(seed)
        with poisoned_allocations():
            got_x, got_y = FastCollateMixup(mode=mode, num_classes=K, label_smoothing=0.1, **CONFIGS[cfg])(batch)
        assert got_x.dtype == torch.uint8 and got_y.dtype == torch.float32
        assert torch.equal(got_x, want_x), f"images differ (seed {seed})"
        assert torch.equal(got_y, want_y), f"targets differ (seed {seed})"


@pytest.mark.parametrize("cfg", ["switch", "minmax"])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_timms_tonumpy_samples_bit_for_bit(timm_collate, mode, cfg):
    """timm's loader gives FastCollateMixup ToNumpy's output: HWC images viewed as
    CHW by np.rollaxis, not contiguous. The same batch and targets as timm's."""
    B, C, H, W, K = 10, 3, 13, 35, 11
    for seed in range(4):
        rng = np.random.default_rng(seed)
        batch = [
            (np.rollaxis(rng.integers(0, 256, (H, W, C), dtype=np.uint8), 2), int(k)) for k in rng.integers(0, K, B)
        ]
        assert not batch[0][0].flags.c_contiguous
        np.random.seed(seed)
        want_x, want_y = timm_collate(mode=mode, num_classes=K, label_smoothing=0.1, **CONFIGS[cfg])(_copy(batch))
        np.random.seed(seed)
        with poisoned_allocations():
            got_x, got_y = FastCollateMixup(mode=mode, num_classes=K, label_smoothing=0.1, **CONFIGS[cfg])(batch)
        assert torch.equal(got_x, want_x), f"images differ (seed {seed})"
        assert torch.equal(got_y, want_y), f"targets differ (seed {seed})"


@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_same_numpy_stream_as_timm(timm_collate, mode):
    """After a call the global numpy RNG is where timm leaves it, so a training run's later draws agree too."""
    batch = _samples(8, 3, 9, 9, 5, 1)
    states = []
    for cls in (timm_collate, FastCollateMixup):
        np.random.seed(4)
        cls(mode=mode, num_classes=5, mixup_alpha=0.8, cutmix_alpha=1.0)(_copy(batch))
        states.append(np.random.get_state()[1].copy())
    assert np.array_equal(*states)


def test_multi_label_like_timm(timm_collate):
    B, K = 8, 6
    batch = _samples(B, 3, 8, 8, K, 2, multi_label=True)
    for mode in ("batch", "elem", "pair", "half"):
        np.random.seed(5)
        want = timm_collate(mode=mode, num_classes=K, multi_label=True, cutmix_alpha=1.0)(_copy(batch))
        np.random.seed(5)
        got = FastCollateMixup(mode=mode, num_classes=K, multi_label=True, cutmix_alpha=1.0)(batch)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), mode


@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_inputs_are_not_written(mode):
    """timm's 'half' and 'pair' modes write into the samples; ours never does."""
    batch = _samples(8, 3, 10, 10, 4, 3, as_numpy=False)
    before = [im.clone() for im, _ in batch]
    np.random.seed(0)
    FastCollateMixup(mode=mode, num_classes=4, cutmix_alpha=1.0, mixup_alpha=0.5)(batch)
    assert all(torch.equal(a, im) for a, (im, _) in zip(before, batch, strict=True))


@pytest.mark.parametrize("B", [1, 3, 7])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_odd_batches_keep_the_middle_sample(mode, B):
    """timm asserts an even batch; an odd one pairs its middle sample with itself and keeps it."""
    batch = _samples(B, 2, 6, 5, 3, B)
    np.random.seed(1)
    m = FastCollateMixup(mode=mode, num_classes=3, label_smoothing=0.0, cutmix_alpha=1.0)
    x, y = m(batch)
    rows = B - B // 2 if mode == "half" else B
    assert x.shape == (rows, 2, 6, 5) and y.shape == (rows, 3)
    mid = B // 2
    if mid < rows:
        assert torch.equal(x[mid], torch.from_numpy(batch[mid][0]))
        assert torch.equal(y[mid], torch.nn.functional.one_hot(torch.tensor(batch[mid][1]), 3).float())


def test_mixing_disabled_collates_plainly():
    batch = _samples(6, 3, 4, 4, 5, 0)
    m = FastCollateMixup(num_classes=5, label_smoothing=0.0)
    m.mixup_enabled = False
    x, y = m(batch)
    assert torch.equal(x, torch.stack([torch.from_numpy(im) for im, _ in batch]))
    assert torch.equal(y.argmax(1), torch.tensor([lab for _, lab in batch]))


# ----------------------------------------------------------------------------
# The op against the reference
# ----------------------------------------------------------------------------


def _pairing(B, kind, g):
    """``random``: any permutation; ``flip``: timm's k <-> B - 1 - k; ``swaps``: random
    disjoint pairs and fixed points (the kernel writes both rows of a pair at once)."""
    if kind == "random":
        return torch.randperm(B, generator=g)
    if kind == "flip":
        return torch.arange(B - 1, -1, -1)
    order, perm = torch.randperm(B, generator=g), torch.arange(B)
    for k in range(0, B - 1 - B % 3, 2):  # leaves a few fixed points
        a, b = order[k], order[k + 1]
        perm[a], perm[b] = b, a
    return perm


def _laid_out(samples, layout):
    """``'chw'``: dense [C, H, W]; ``'hwc'``: [H, W, C] buffers viewed as [C, H, W]
    (timm's ToNumpy); ``'mixed'``: alternately; ``'strided'``: every other line."""
    if layout == "chw":
        return samples
    hwc = [s.permute(1, 2, 0).contiguous().permute(2, 0, 1) for s in samples]
    if layout == "hwc":
        return hwc
    if layout == "mixed":
        return [h if i % 2 else s for i, (s, h) in enumerate(zip(samples, hwc, strict=True))]
    return [s.repeat_interleave(2, dim=1)[:, ::2] for s in samples]


def _op_inputs(B, C, H, W, seed, with_boxes, pairing="random", layout="chw"):
    g = torch.Generator().manual_seed(seed)
    samples = [torch.randint(0, 256, (C, H, W), generator=g, dtype=torch.uint8) for _ in range(B)]
    samples = _laid_out(samples, layout)
    perm = _pairing(B, pairing, g)
    lam = torch.rand(B, generator=g, dtype=torch.float64)
    lam[: B // 3] = torch.tensor([0.0, 1.0, 0.5])[: B // 3]
    boxes = None
    if with_boxes:
        rows = []
        for i in range(B):  # blended, empty, random, whole lines (one copy), whole columns, random
            kind = i % 6
            y0, y1 = sorted(torch.randint(0, H + 1, (2,), generator=g).tolist())
            x0, x1 = sorted(torch.randint(0, W + 1, (2,), generator=g).tolist())
            if kind == 0:
                rows.append(NO_BOX)
            elif kind == 1:
                rows.append((0, 0, 0, 0))
            elif kind == 3:
                rows.append((y0, y1, 0, W))
            elif kind == 4:
                rows.append((0, H, x0, x1))
            else:
                rows.append((y0, y1, x0, x1))
        boxes = torch.tensor(rows, dtype=torch.int64)
    return samples, perm, lam, boxes


LAYOUTS = ["chw", "hwc", "mixed", "strided"]
SHAPES = [(1, 1, 1, 1), (5, 3, 7, 9), (8, 3, 31, 67), (3, 4, 2, 1031), (6, 2, 70, 300), (4, 3, 5, 33), (3, 1, 4, 19)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pairing", ["random", "flip", "swaps"])
@pytest.mark.parametrize("with_boxes", [False, True], ids=["blend", "cut"])
@pytest.mark.parametrize("shape", SHAPES)
def test_collate_mix_matches_reference(shape, with_boxes, pairing, layout, isa):
    """Every row, whether written alone or with its partner (pairs of rows that are
    each other's partner, one of them past ``rows`` or not), over several chunks of
    lines; samples dense, interleaved (split into planes by the kernel), a mix of
    both, or strided (made dense first)."""
    B, C, H, W = shape
    K = 7
    for seed in range(3):
        samples, perm, lam, boxes = _op_inputs(B, C, H, W, seed, with_boxes, pairing, layout)
        g = torch.Generator().manual_seed(seed)
        ids, soft = torch.randint(0, K, (B,), generator=g), torch.rand(B, K, generator=g)
        for rows in sorted({B, B - B // 2, 0}):
            for target, eps in ((ids, 0.1), (ids, 0.0), (soft, 0.2)):
                args = (samples, perm, lam, boxes, rows, target, K, eps)
                with poisoned_allocations():
                    got_x, got_y = torch.ops.mixup_fused.collate_mix(*args)
                want_x, want_y = collate_mix_reference(*args)
                assert torch.equal(got_x, want_x)
                assert got_y.dtype == torch.float32 and torch.equal(got_y, want_y)


def _op(samples, perm, lam, boxes=None):
    """The op's images, with two class ids as targets."""
    return torch.ops.mixup_fused.collate_mix(samples, perm, lam, boxes, len(samples), perm, len(samples), 0.0)[0]


def test_collate_mix_rounds_ties_to_even(isa):
    """Exact halves round to the even neighbour, as numpy's rint and torch.round."""
    values = torch.arange(256, dtype=torch.uint8).view(1, 16, 16)
    partner = torch.flip(values, [2])
    samples = [values, partner]
    perm = torch.tensor([1, 0])
    half = torch.full((2,), 0.5)
    got = _op(samples, perm, half)
    want = torch.round(values.float() * 0.5 + partner.float() * 0.5).to(torch.uint8)
    assert torch.equal(got[0], want)
    assert (values.float() * 0.5 + partner.float() * 0.5).frac().eq(0.5).any()  # ties occur


def test_collate_mix_keeps_255_at_every_lam(isa):
    """White stays white: the weights, each rounded to float32, may sum past 1,
    and the result saturates at 255 instead of wrapping."""
    lam = torch.linspace(0, 1, 1001, dtype=torch.float64)
    white = torch.full((1, 1, 40), 255, dtype=torch.uint8)
    samples = [white] * lam.numel()
    perm = torch.arange(lam.numel()).flip(0)
    got = _op(samples, perm, lam)
    assert torch.equal(got, torch.full_like(got, 255))
    assert torch.equal(got, collate_mix_reference(samples, perm, lam, None, lam.numel(), perm, lam.numel())[0])


def test_opcheck_collate_mix():
    samples, perm, lam, boxes = _op_inputs(6, 3, 5, 7, 0, True)
    target = torch.tensor([0, 3, 1, 3, 2, 0])
    torch.library.opcheck(torch.ops.mixup_fused.collate_mix.default, (samples, perm, lam, boxes, 4, target, 4, 0.1))


# ----------------------------------------------------------------------------
# Bad input: a clear error naming the argument, never a wrong batch
# ----------------------------------------------------------------------------


def _bad(batch, match, exc=ValueError, **kwargs):
    m = FastCollateMixup(num_classes=5, **kwargs)
    with pytest.raises(exc, match=match):
        m(batch)


def test_collate_errors_name_the_argument():
    good = _samples(4, 3, 6, 6, 5, 0)
    _bad([], "batch must be a non-empty list")
    _bad([(im, 7 if i == 2 else lab) for i, (im, lab) in enumerate(good)], r"label of batch\[2\] = 7 is not a class id")
    _bad([(im, -1 if i == 1 else lab) for i, (im, lab) in enumerate(good)], r"label of batch\[1\] = -1")
    odd_shape = list(good)
    odd_shape[3] = (np.zeros((3, 6, 5), dtype=np.uint8), 0)
    _bad(odd_shape, r"batch\[3\] image has shape \[3, 6, 5\] but batch\[0\] has \[3, 6, 6\]")
    floats = list(good)
    floats[1] = (good[1][0].astype(np.float32), 0)
    _bad(floats, r"batch\[1\] image must be uint8, got a float32 array", TypeError)
    tensor_f = list(good)
    tensor_f[0] = (torch.zeros(3, 6, 6), 0)
    _bad(tensor_f, r"batch\[0\] image must be uint8", TypeError)
    hwc = [(np.zeros((6, 6), dtype=np.uint8), 0)] * 4
    _bad(hwc, r"batch\[0\] image must have shape \[C, H, W\]")
    _bad([("not an image", 0)] * 2, r"batch\[0\] image must be a uint8 numpy array or tensor", TypeError)
    with pytest.raises(ValueError, match="multi-label targets must have num_classes = 5"):
        FastCollateMixup(num_classes=5, multi_label=True)([(good[0][0], torch.ones(4))] * 2)
    _bad(
        [(im, 2.5 if i == 3 else lab) for i, (im, lab) in enumerate(good)],
        r"label of batch\[3\] must be an integer",
        TypeError,
    )
    _bad([good[0], good[1], [good[2][0]], good[3]], r"batch\[2\] must be an \(image, label\) pair", TypeError)
    flipped = list(good)
    flipped[2] = (good[2][0][:, ::-1], 0)
    _bad(flipped, "negative", ValueError)


def test_collate_takes_any_integer_labels_and_read_only_samples():
    """Class ids as Python ints, numpy integers, 0-d tensors or bools; read-only
    and strided numpy samples and tensors in one batch: the same batch as the
    same samples given plainly."""
    good = _samples(6, 3, 5, 7, 5, 1)
    plain = FastCollateMixup(num_classes=5, mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem")
    np.random.seed(3)
    want_x, want_y = plain(good)
    odd = []
    for i, (im, lab) in enumerate(good):
        if i % 3 == 0:
            im = im.copy()
            im.flags.writeable = False
        elif i % 3 == 1:
            im = np.ascontiguousarray(np.repeat(im, 2, axis=2))[:, :, ::2]  # strided, not interleaved
        else:
            im = torch.from_numpy(im.copy())
        label = [np.int64(lab), torch.tensor(lab), lab][i % 3] if lab > 1 else bool(lab)
        odd.append((im, label))
    np.random.seed(3)
    with poisoned_allocations():
        got_x, got_y = plain(odd)
    assert torch.equal(got_x, want_x) and torch.equal(got_y, want_y)


def test_collate_mix_op_errors_name_the_argument():
    samples, perm, lam, boxes = _op_inputs(4, 3, 5, 5, 0, True)
    op = torch.ops.mixup_fused.collate_mix
    cases = [
        (([], perm, lam, None, 0), "samples must hold at least one sample"),
        ((samples[:3] + [samples[0].float()], perm, lam, None, 4), r"samples\[3\] must be uint8"),
        ((samples[:3] + [samples[0][:, :4]], perm, lam, None, 4), r"samples\[3\] has shape"),
        ((samples, perm, lam, None, 5), r"rows must be in \[0, B = 4\]"),
        ((samples, torch.tensor([0, 0, 1, 2]), lam, None, 4), "perm is not a permutation"),
        ((samples, perm, lam + 2, None, 4), r"lam\[0\] = .* must be in \[0, 1\]"),
        ((samples, perm, lam[:3], None, 4), r"lam must have shape \[B\] = \[4\]"),
        ((samples, perm, lam, boxes[:, :3], 4), r"boxes must have shape \[B, 2 \* spatial dims\] = \[4, 4\]"),
        ((samples, perm, lam, torch.tensor([[0, 9, 0, 1]] * 4), 4), r"boxes\[0\] = \(0, 9, 0, 1\) must satisfy"),
    ]
    ids = torch.tensor([0, 1, 2, 1])
    targets = [
        ((ids, 2, 0.0), r"target\[2\] = 2 is not a class id in \[0, num_classes = 2\)"),
        ((ids[:3], 3, 0.0), r"target \(class ids\) must have shape \[B\] = \[4\]"),
        ((torch.rand(4, 2), 3, 0.0), r"soft target must have shape \[B, num_classes\] = \[4, 3\]"),
        ((ids, 0, 0.0), r"num_classes must be an int in \[1, 2\*\*31 - 1\]"),
        ((ids, 3, 1.5), r"label_smoothing must be in \[0, 1\]"),
    ]
    cases = [(args + (ids, 3, 0.0), match) for args, match in cases]
    cases += [((samples, perm, lam, None, 4) + t, match) for t, match in targets]
    for args, match in cases:
        with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
            op(*args)


def test_constructor_follows_mixup_rules():
    with pytest.raises(ValueError, match="mode must be one of"):
        FastCollateMixup(mode="pairs")
    with pytest.raises(ValueError, match="num_classes must be an int"):
        FastCollateMixup(num_classes=0)
    for mode, cfg in itertools.product(["batch", "elem"], CONFIGS.values()):
        assert FastCollateMixup(mode=mode, **cfg).mode == mode


@pytest.mark.parametrize(
    "name, kwargs",
    [("backend", {"backend": "reference"}), ("sampler", {"sampler": "device"}),
     ("mean", {"mean": (0.5,), "std": (0.5,)}), ("out_dtype", {"out_dtype": torch.bfloat16}),
     ("memory_format", {"memory_format": torch.channels_last}), ("return_params", {"return_params": True})],
)  # fmt: skip
def test_constructor_refuses_device_batch_options(name, kwargs):
    # The collated batch stays uint8 and is mixed by the collate op: options of the device batch are refused.
    with pytest.raises(ValueError, match=f"FastCollateMixup does not take {name}"):
        FastCollateMixup(num_classes=5, **kwargs)
    assert FastCollateMixup(num_classes=5, generator=torch.Generator().manual_seed(0)).generator is not None
