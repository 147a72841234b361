"""The host sampler's rows in C (``mixup_fused._C.timm_boxes`` and
``scatter_rows``) against the numpy version they replace where the extension
is built: the same centres as ``np.random.randint``, the same RNG state
after, and the same ``MixParams`` from :class:`NumpySampler` in every
per-sample mode, setting and rank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixup_fused import sampling
from mixup_fused._registration import HAS_CPP
from mixup_fused.sampling import MixupConfig, NumpySampler
from mixup_fused.sampling import timm as sampling_timm

pytestmark = pytest.mark.skipif(not HAS_CPP, reason="needs the C++ extension (mixup_fused._C)")

BITGEN = np.random.mtrand._rand._bit_generator


def _centres(sizes, n: int) -> np.ndarray:
    """Centres through timm_boxes: with side ratio 0 every box is (c, c)."""
    from mixup_fused import _C

    lam = np.full(n, 0.5, dtype=np.float32)
    boxes = np.full((n, 2 * len(sizes)), -7, dtype=np.int64)
    cuts = _C.timm_boxes(BITGEN.capsule, lam, np.ones(n, bool), np.zeros(n, np.float32), sizes, True, boxes)
    assert cuts == n
    assert (boxes[:, 0::2] == boxes[:, 1::2]).all()
    assert (lam == 1.0).all()  # an empty box: nothing cut, lam corrected to 1
    return boxes[:, 0::2]


# 1: no draw; 2**31 + 5: the 32-bit masked path near its top; 2**33 + 3 and 2**40: the 64-bit path.
@pytest.mark.parametrize("sizes", [(224, 224), (16000,), (1, 5), (7, 1, 3), (2**31 + 5,), (2**33 + 3,), (2**40, 3)])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_centres_are_numpys_randint(sizes, seed):
    n = 17
    np.random.seed(seed)
    expected = np.array([[np.random.randint(0, s) for s in sizes] for _ in range(n)], dtype=np.int64)
    after = np.random.rand()
    np.random.seed(seed)
    np.testing.assert_array_equal(_centres(sizes, n), expected)
    assert np.random.rand() == after  # the same number of draws consumed


def _params(monkeypatch, native: bool, cfg, mode, B, sizes, pairing, seed):
    monkeypatch.setattr(sampling_timm, "NATIVE_ROWS", native)
    np.random.seed(seed)
    params = NumpySampler().sample(cfg, mode, B, sizes, pairing)
    return params, np.random.rand()


CONFIGS = {
    "mixup": MixupConfig(0.8, 0.0, None, 1.0, 0.5, True, True),
    "cutmix": MixupConfig(0.0, 1.0, None, 1.0, 0.5, True, True),
    "switch": MixupConfig(0.8, 1.0, None, 1.0, 0.5, True, True),
    "switch prob 0.6": MixupConfig(0.8, 1.0, None, 0.6, 0.5, True, True),
    "uncorrected": MixupConfig(0.0, 1.0, None, 0.7, 0.5, False, True),
    "minmax": MixupConfig(0.8, 1.0, (0.2, 0.8), 1.0, 0.5, True, True),
    "small alpha": MixupConfig(0.0, 0.05, None, 1.0, 0.5, True, True),  # lam near 0 or 1: whole and empty boxes
    "off": MixupConfig(0.8, 1.0, None, 1.0, 0.5, True, False),
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("mode", ["elem", "pair", "half"])
@pytest.mark.parametrize("sizes", [(224, 224), (7, 5), (16000,), (3,), (4, 6, 8)])
@pytest.mark.parametrize("B", [1, 2, 5, 64])
@pytest.mark.parametrize("pairing", ["flip", "random"])
def test_native_rows_equal_numpy_rows(monkeypatch, config, mode, sizes, B, pairing):
    cfg = CONFIGS[config]
    for seed in (0, 7):
        native, after_native = _params(monkeypatch, True, cfg, mode, B, sizes, pairing, seed)
        ref, after_ref = _params(monkeypatch, False, cfg, mode, B, sizes, pairing, seed)
        assert after_native == after_ref
        torch.testing.assert_close(native.perm, ref.perm, rtol=0, atol=0)
        assert native.lam.dtype == ref.lam.dtype == torch.float64
        torch.testing.assert_close(native.lam, ref.lam, rtol=0, atol=0)
        assert (native.boxes is None) == (ref.boxes is None)
        if ref.boxes is not None:
            torch.testing.assert_close(native.boxes, ref.boxes, rtol=0, atol=0)
        assert native.mixes == ref.mixes


def test_native_functions_refuse_bad_buffers():
    from mixup_fused import _C

    lam, cut, ratio = np.full(4, 0.5, np.float32), np.ones(4, bool), np.full(4, 0.5, np.float32)
    boxes = np.zeros((4, 4), np.int64)
    with pytest.raises(TypeError, match="lam"):
        _C.timm_boxes(BITGEN.capsule, lam.astype(np.float64), cut, ratio, (8, 8), True, boxes)
    with pytest.raises(TypeError, match="boxes"):
        _C.timm_boxes(BITGEN.capsule, lam, cut, ratio, (8, 8), True, boxes.astype(np.int32))
    with pytest.raises(ValueError, match="boxes"):
        _C.timm_boxes(BITGEN.capsule, lam, cut, ratio, (8, 8, 8), True, boxes)
    with pytest.raises(ValueError, match="sizes"):
        _C.timm_boxes(BITGEN.capsule, lam, cut, ratio, (8, 0), True, boxes)
    with pytest.raises(ValueError):
        _C.timm_boxes(object(), lam, cut, ratio, (8, 8), True, boxes)  # not numpy's bit generator capsule
    ro = boxes.copy()
    ro.flags.writeable = False
    with pytest.raises((TypeError, ValueError, BufferError)):
        _C.timm_boxes(BITGEN.capsule, lam, cut, ratio, (8, 8), True, ro)
    perm = np.arange(4)[::-1].copy()
    first, second = np.arange(2), np.arange(3, 1, -1)
    out = np.empty(4)
    with pytest.raises(ValueError, match="indices"):
        _C.scatter_rows(0, perm + 1, first, second, lam, cut, None, out, None)
    with pytest.raises(ValueError, match="mode"):
        _C.scatter_rows(3, perm, first, second, lam, cut, None, out, None)
    with pytest.raises(ValueError, match="both or neither"):
        _C.scatter_rows(0, perm, first, second, lam, cut, boxes, out, None)
    assert _C.scatter_rows(0, perm, first, second, lam, cut, boxes, out, np.empty((4, 4), np.int64)) is True
    np.testing.assert_array_equal(out, 0.5)


def test_mixup_draws_native_rows_by_default():
    # The extension's path is the one every other test of the host sampler runs.
    assert sampling_timm.NATIVE_ROWS is True
    assert sampling.NumpySampler is NumpySampler
