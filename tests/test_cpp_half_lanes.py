"""The in-place C++ loops on 16-bit storage, over every bit pattern.

fp16 and bf16 have their own vectorised in-place paths (F16C lanes for fp16,
two bf16 per 32-bit word), which must give the bits the per-element
conversions give. Each row holds all 65,536 patterns (NaN payloads, infinities,
denormals, -0.0) in its own order, in rows of odd length that start at odd
addresses, with box edges at odd columns, so that every vector body, every
tail and every segment kind (blend, partner's pixels, own pixels) meets them.

The expected result is built independently: a blended element is
``w_self * a + w_part * b`` in float32 (numpy, one rounding per operation, as
the kernels compute without FMA) rounded by torch's own conversion; a cut or
kept element keeps its bits exactly. A NaN result only needs to be the NaN the
conversions make (fp16: sign | 0x7E00; bf16: a quiet NaN): which operand's NaN
an addition propagates is the compiler's choice of operand order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mixup_fused
from mixup_fused.reference import NO_BOX

pytestmark = pytest.mark.skipif(not mixup_fused.HAS_CPP, reason="needs the C++ extension")

B, C, H, W = 6, 1, 255, 259  # 66,045 elements a row: every pattern, and an odd length
KINDS = {
    # Per row: None (blended with its lam) or a box (y0, y1, x0, x1) with odd column edges.
    "mixup": [None] * B,
    "cutmix": [
        (3, 200, 1, 130),
        (0, 255, 5, 259),
        (17, 18, 0, 77),
        (2, 90, 33, 251),
        (100, 101, 7, 9),
        (1, 254, 1, 258),
    ],
    "switch": [None, (3, 200, 1, 130), (0, 9, 3, 11), None, None, (50, 240, 101, 257)],
}
LAM = [17 / 64, 0.5, 45 / 64, 3 / 64, 61 / 64, 0.25]  # float32-exact, so both weights are exact


def _rows(dtype: torch.dtype, rng: np.random.Generator) -> torch.Tensor:
    n = H * W
    rows = [np.concatenate([rng.permutation(65536), rng.integers(0, 65536, n - 65536)]) for _ in range(B)]
    raw = torch.from_numpy(np.stack(rows).astype(np.int32)).to(torch.int16)
    return raw.view(dtype).reshape(B, C, H, W)


def _widen(t: torch.Tensor) -> np.ndarray:
    return t.float().numpy()


def _expected(x: torch.Tensor, perm: list[int], boxes) -> torch.Tensor:
    out = x.clone()
    for i, p in enumerate(perm):
        if boxes[i] is None:
            wi, ri = np.float32(LAM[i]), np.float32(1.0 - LAM[i])
            a, b = _widen(x[i]), _widen(x[p])
            with np.errstate(invalid="ignore", over="ignore"):
                out[i] = torch.from_numpy(wi * a + ri * b).to(x.dtype)
        else:
            y0, y1, x0, x1 = boxes[i]
            out[i, :, y0:y1, x0:x1] = x[p, :, y0:y1, x0:x1]
    return out


def _nan_bits_ok(got: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    g = got.view(torch.int16).to(torch.int32) & 0xFFFF
    if dtype == torch.float16:
        return (g & 0x7FFF) == 0x7E00
    return ((g & 0x7F80) == 0x7F80) & ((g & 0x0040) != 0)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_inplace_16bit_every_pattern(dtype, kind, isa):
    rng = np.random.default_rng(7)
    x0 = _rows(dtype, rng)
    # An odd element offset: rows start at addresses that are not 4-byte aligned.
    buf = torch.empty(x0.numel() + 1, dtype=dtype)
    x = buf[1:].view(x0.shape)
    x.copy_(x0)
    assert x.data_ptr() % 4 == 2
    perm = list(range(B - 1, -1, -1))
    boxes = KINDS[kind]
    box_t = None
    if any(b is not None for b in boxes):
        box_t = torch.tensor([NO_BOX if b is None else b for b in boxes], dtype=torch.int64)
    lam = torch.tensor(LAM, dtype=torch.float64)
    target = torch.arange(B)
    mixup_fused.mix(x, target, torch.tensor(perm), lam, num_classes=B, boxes=box_t, inplace=True, backend="cpp")
    want = _expected(x0, perm, boxes)
    got_bits, want_bits = x.view(torch.int16), want.view(torch.int16)
    nan_want = torch.isnan(want)
    # Cut and kept elements are bit for bit, NaN payloads included.
    moved = torch.zeros_like(nan_want)
    for i, b in enumerate(boxes):
        if b is not None:
            moved[i] = True
    exact = ~nan_want | moved
    bad = exact & (got_bits != want_bits)
    assert not bad.any(), (
        f"{int(bad.sum())} elements differ, first at {bad.nonzero()[0].tolist()}: "
        f"got {int(got_bits[bad][0]) & 0xFFFF:#06x}, want {int(want_bits[bad][0]) & 0xFFFF:#06x}"
    )
    blended_nan = nan_want & ~moved
    if kind != "cutmix":
        assert blended_nan.any(), "the patterns include NaN, so some blended results are NaN"
    assert _nan_bits_ok(x[blended_nan], dtype).all(), "a blended NaN is not the NaN the conversion makes"
