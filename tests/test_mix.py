"""Every backend against the reference, element by element.

``backend`` runs over the backends that take CPU tensors here (cpp, triton
under the interpreter, reference). Fresh outputs start poisoned with NaN
(``poison_outputs``), so an element a kernel forgets to write fails.
"""

from __future__ import annotations

import pytest
import torch
from conftest import (
    CPU_BACKENDS,
    TRITON_ON_CPU,
    assert_matches,
    class_ids,
    edge_boxes,
    poison,
    randn,
    random_involution,
    random_lam,
    random_perm,
    soft_targets,
)

import mixup_fused
from mixup_fused.reference import NO_BOX, kept_in_place, mix_reference

pytestmark = pytest.mark.usefixtures("poison_outputs")

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
SHAPES = [(7, 3, 13, 17), (1, 3, 5, 5), (5, 2, 1, 1), (3, 11), (2, 3, 4, 5, 6)]
IMAGE_SHAPES = [(7, 3, 13, 17), (1, 3, 5, 5), (5, 2, 1, 1), (3, 1, 7, 2)]


def _check_targets(y, expected, B, K):
    assert y.dtype == torch.float32 and y.shape == (B, K)
    assert_matches(y, expected, what="targets")
    # Smoothed one-hot and soft rows sum to one, and so does any mix of them.
    torch.testing.assert_close(y.sum(1), torch.ones(B), atol=1e-5, rtol=0)


def _lam(kind, B, gen, dtype):
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    if kind == "tensor":
        return random_lam(B, gen, dtype=wdt)
    if kind == "tensor_0_1":  # per-sample lam holding the exact endpoints
        lam = random_lam(B, gen, dtype=wdt)
        lam[0::3] = 0.0
        lam[1::3] = 1.0
        return lam
    return float(kind)


# Lam, label smoothing and target kind, combined so that each appears with each shape and dtype.
MODES = [
    ("tensor", 0.0, "int"),
    ("tensor", 0.1, "soft"),
    ("0.3", 0.1, "int"),
    ("0.0", 0.0, "soft"),
    ("1.0", 0.1, "int"),
    ("tensor_0_1", 0.1, "int"),
]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"lam={m[0]}-eps={m[1]}-{m[2]}")
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mixup_matches_reference(backend, shape, dtype, mode, gen):
    lam_kind, eps, tkind = mode
    B, K = shape[0], 10
    x = randn(shape, dtype, gen)
    target = class_ids(B, K, gen) if tkind == "int" else soft_targets(B, K, gen)
    perm = random_perm(B, gen)
    lam = _lam(lam_kind, B, gen, dtype)
    x0 = x.clone()

    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=eps, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=eps)

    assert out.data_ptr() != x.data_ptr()
    assert torch.equal(x, x0), "out-of-place mix modified x"
    assert out.is_contiguous()
    assert_matches(out, ex, what="images")
    _check_targets(y, ey, B, K)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_lam_endpoints_select_samples(backend, dtype, gen):
    """Independent of the reference: lam = 1 keeps x, lam = 0 takes x[perm]."""
    B, K = 5, 4
    x = randn((B, 3, 7), dtype, gen)
    perm = random_perm(B, gen)
    target = class_ids(B, K, gen)
    one, y1 = mixup_fused.mix(x, target, perm, 1.0, num_classes=K, backend=backend)
    zero, y0 = mixup_fused.mix(x, target, perm, 0.0, num_classes=K, backend=backend)
    assert torch.equal(one, x)
    assert torch.equal(zero, x[perm])
    onehot = torch.nn.functional.one_hot(target, K).float()
    assert torch.equal(y1, onehot)
    assert torch.equal(y0, onehot[perm])


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_label_smoothing_values(backend, eps, gen):
    """timm's convention, written out: off = eps / K, on = 1 - eps + eps / K."""
    B, K = 4, 6
    target = torch.tensor([0, 5, 2, 2])
    perm = torch.tensor([1, 0, 3, 2])
    lam = torch.tensor([0.25, 0.5, 1.0, 0.0])
    _, y = mixup_fused.mix(randn((B, 3), torch.float32, gen), target, perm, lam, num_classes=K,
                           label_smoothing=eps, backend=backend)  # fmt: skip
    off, on = eps / K, 1.0 - eps + eps / K
    s = torch.full((B, K), off, dtype=torch.float64)
    s[torch.arange(B), target] = on
    expected = lam.double().view(-1, 1) * s + (1 - lam.double().view(-1, 1)) * s[perm]
    torch.testing.assert_close(y.double(), expected, atol=1e-6, rtol=0)


def test_many_classes(backend, gen):
    """More classes than one target block of the Triton kernel."""
    B, K = 3, 1500
    x = randn((B, 5), torch.float32, gen)
    target, perm, lam = class_ids(B, K, gen), random_perm(B, gen), random_lam(B, gen)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1)
    assert_matches(out, ex)
    _check_targets(y, ey, B, K)


# ----------------------------------------------------------------------------
# Layouts
# ----------------------------------------------------------------------------


def _layout(kind, dtype, gen):
    """(x, is_channels_last) for a [6, 3, 5, 7]-shaped view of the given kind."""
    B, C, H, W = 6, 3, 5, 7
    if kind == "contiguous":
        return randn((B, C, H, W), dtype, gen), False
    if kind == "channels_last":
        return randn((B, C, H, W), dtype, gen).contiguous(memory_format=torch.channels_last), True
    if kind == "channels_last_batch_slice":  # still channels_last, batch stride unchanged
        return randn((B + 3, C, H, W), dtype, gen).contiguous(memory_format=torch.channels_last)[2 : 2 + B], True
    if kind == "transposed":
        return randn((B, C, W, H), dtype, gen).transpose(2, 3), False
    if kind == "batch_last":
        return randn((C, H, W, B), dtype, gen).permute(3, 0, 1, 2), False
    if kind == "strided_batch":
        return randn((2 * B, C, H, W), dtype, gen)[::2], False
    if kind == "sliced_width":
        return randn((B, C, H, W + 4), dtype, gen)[..., 1 : 1 + W], False
    if kind == "expanded_batch":  # stride 0 along the batch
        return randn((1, C, H, W), dtype, gen).expand(B, C, H, W), False
    if kind == "expanded_channel":
        return randn((B, 1, H, W), dtype, gen).expand(B, C, H, W), False
    if kind == "misaligned":  # contiguous, but the data starts one element past an aligned address
        flat = randn((B * C * H * W + 1,), dtype, gen)
        return flat[1:].view(B, C, H, W), False
    raise AssertionError(kind)


LAYOUTS = [
    "contiguous",
    "channels_last",
    "channels_last_batch_slice",
    "transposed",
    "batch_last",
    "strided_batch",
    "sliced_width",
    "expanded_batch",
    "expanded_channel",
    "misaligned",
]


@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts(backend, layout, dtype, cutmix, gen):
    x, channels_last = _layout(layout, dtype, gen)
    B, K = x.shape[0], 7
    target, perm, lam = class_ids(B, K, gen), random_perm(B, gen), random_lam(B, gen)
    boxes = edge_boxes(B, x.shape[2], x.shape[3], gen) if cutmix else None
    x0 = x.clone()

    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)

    assert torch.equal(x, x0)
    assert_matches(out, ex, what="images")
    _check_targets(y, ey, B, K)
    if channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last), out.stride()
    elif layout in ("contiguous", "misaligned"):
        assert out.is_contiguous(), out.stride()


@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_rows_longer_than_one_work_unit(backend, channels_last, cutmix, gen):
    """Rows of 38121 elements: several C++ work units (32768) and Triton blocks
    (4096) per row, with odd line lengths so that vector loops have tails."""
    B, C, H, W = 3, 3, 97, 131
    x = randn((B, C, H, W), torch.float32, gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    K = 5
    target, perm, lam = class_ids(B, K, gen), random_perm(B, gen), random_lam(B, gen)
    boxes = torch.tensor([[1, 96, 3, 130], [0, 97, 0, 131], [40, 41, 0, 131]]) if cutmix else None
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, boxes=boxes, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, boxes=boxes)
    assert_matches(out, ex)
    _check_targets(y, ey, B, K)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


# ----------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------


def _soft(kind, B, K, gen):
    if kind == "contiguous":
        return soft_targets(B, K, gen)
    if kind == "transposed":
        return soft_targets(B, K, gen).t().contiguous().t()  # strides (1, B)
    if kind == "sliced":
        big = torch.rand(B, K + 5, generator=gen)
        return big[:, 2 : 2 + K]
    if kind == "strided_rows":
        return soft_targets(2 * B, K, gen)[::2]
    if kind == "expanded":
        return soft_targets(1, K, gen).expand(B, K)
    if kind == "bfloat16":
        return soft_targets(B, K, gen).bfloat16()
    if kind == "float64":
        return soft_targets(B, K, gen).double()
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["contiguous", "transposed", "sliced", "strided_rows", "expanded", "bfloat16", "float64"]
)
def test_soft_targets(backend, kind, gen):
    B, K = 5, 9
    target = _soft(kind, B, K, gen)
    if kind == "transposed":
        assert target.stride(-1) != 1
    x = randn((B, 4), torch.float32, gen)
    perm, lam = random_perm(B, gen), random_lam(B, gen)
    t0 = target.clone()
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1)
    assert torch.equal(target, t0)
    assert_matches(out, ex)
    assert_matches(y, ey, what="targets")
    if kind not in ("sliced", "bfloat16"):  # those input rows do not sum to one
        torch.testing.assert_close(y.sum(1), torch.ones(B), atol=1e-5, rtol=0)


@pytest.mark.parametrize("tdtype", [torch.int64, torch.int32, torch.uint8], ids=str)
def test_class_id_dtypes(backend, tdtype, gen):
    B, K = 6, 11
    target = class_ids(B, K, gen).to(tdtype)
    perm = random_perm(B, gen).to(torch.int32 if tdtype == torch.int32 else torch.int64)
    x, lam = randn((B, 3), torch.float32, gen), random_lam(B, gen)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.2, backend=backend)
    ex, ey = mix_reference(x, target.long(), perm.long(), lam, num_classes=K, label_smoothing=0.2)
    assert_matches(out, ex)
    _check_targets(y, ey, B, K)


def test_strided_small_arguments(backend, gen):
    """perm, lam, class ids and boxes that are views with strides (every other
    element of a longer tensor), or half-precision lam, are read by value."""
    B, C, H, W, K = 6, 2, 5, 4, 7

    def every_other(t):
        return torch.stack([t, torch.full_like(t, -7)], dim=-1).select(-1, 0)

    x = randn((B, C, H, W), torch.float32, gen)
    target, perm, lam = class_ids(B, K, gen), random_perm(B, gen), random_lam(B, gen)
    boxes = edge_boxes(B, H, W, gen)
    for half_lam in (False, True):
        lam_in = every_other(lam.half() if half_lam else lam)
        lam_ex = lam.half().float() if half_lam else lam
        assert not every_other(perm).is_contiguous()
        for cut in (None, boxes):
            column_major = None if cut is None else cut.t().contiguous().t()
            kw = dict(num_classes=K, label_smoothing=0.1, boxes=column_major, backend=backend)
            out, y = mixup_fused.mix(x, every_other(target), every_other(perm), lam_in, **kw)
            ex, ey = mix_reference(x, target, perm, lam_ex, num_classes=K, label_smoothing=0.1, boxes=cut)
            assert_matches(out, ex)
            _check_targets(y, ey, B, K)


# ----------------------------------------------------------------------------
# CutMix
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("tkind", ["int", "soft"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape", IMAGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cutmix_matches_reference(backend, shape, dtype, channels_last, tkind, gen):
    B, C, H, W = shape
    K = 6
    x = randn(shape, dtype, gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = class_ids(B, K, gen) if tkind == "int" else soft_targets(B, K, gen)
    perm = random_perm(B, gen)
    boxes = edge_boxes(B, H, W, gen)
    # timm's corrected lam: one minus the box's share of the image.
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    lam = 1.0 - area.double() / (H * W)
    lam = lam.to(torch.float64 if dtype == torch.float64 else torch.float32)

    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)

    assert_matches(out, ex, what="images")
    _check_targets(y, ey, B, K)
    if channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last)
    else:
        assert out.is_contiguous()


def test_cutmix_scalar_lam_and_int32_boxes(backend, gen):
    B, C, H, W = 4, 2, 6, 5
    x = randn((B, C, H, W), torch.float32, gen)
    target, perm = class_ids(B, 3, gen), random_perm(B, gen)
    boxes = edge_boxes(B, H, W, gen).to(torch.int32)
    out, y = mixup_fused.mix(x, target, perm, 0.5, num_classes=3, boxes=boxes, backend=backend)
    ex, ey = mix_reference(x, target, perm, 0.5, num_classes=3, boxes=boxes.long())
    assert_matches(out, ex)
    _check_targets(y, ey, B, 3)


def test_reference_cutmix_and_mixup_match_loops(gen):
    """The oracle itself against plain float64 loops (torchvision's expected_fn)."""
    B, C, H, W = 4, 2, 5, 6
    x = randn((B, C, H, W), torch.float64, gen)
    perm = random_perm(B, gen)
    lam = random_lam(B, gen, dtype=torch.float64)
    boxes = edge_boxes(B, H, W, gen)
    got_cut, _ = mix_reference(x, class_ids(B, 3, gen), perm, lam, num_classes=3, boxes=boxes)
    got_mix, _ = mix_reference(x, class_ids(B, 3, gen), perm, lam, num_classes=3)
    want_cut = torch.empty_like(x)
    want_mix = torch.empty_like(x)
    for i in range(B):
        p = int(perm[i])
        y0, y1, x0, x1 = boxes[i].tolist()
        for c in range(C):
            for h in range(H):
                for w in range(W):
                    inside = y0 <= h < y1 and x0 <= w < x1
                    want_cut[i, c, h, w] = x[p, c, h, w] if inside else x[i, c, h, w]
                    li = float(lam[i])
                    want_mix[i, c, h, w] = li * float(x[i, c, h, w]) + (1 - li) * float(x[p, c, h, w])
    assert torch.equal(got_cut, want_cut)
    torch.testing.assert_close(got_mix, want_mix, atol=1e-15, rtol=0)


# ----------------------------------------------------------------------------
# In place
# ----------------------------------------------------------------------------

INVOLUTIONS = ["flip", "random", "identity"]


def _involution(kind, B, gen):
    if kind == "flip":
        return torch.arange(B).flip(0)
    if kind == "identity":
        return torch.arange(B)
    return random_involution(B, gen)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("involution", INVOLUTIONS)
def test_inplace_equals_out_of_place(backend, involution, dtype, cutmix, layout, gen):
    B, C, H, W = 7, 3, 5, 6
    x = randn((B, C, H, W), dtype, gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = randn((B, C, W, H), dtype, gen).transpose(2, 3)
    K = 5
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    target, lam = class_ids(B, K, gen), random_lam(B, gen, dtype=wdt)
    perm = _involution(involution, B, gen)
    boxes = edge_boxes(B, H, W, gen) if cutmix else None
    strides, ptr = x.stride(), x.data_ptr()

    ex, ey = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, backend=backend)
    rx, _ = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)
    out, y = mixup_fused.mix(
        x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, inplace=True, backend=backend
    )

    assert out is x
    assert x.data_ptr() == ptr and x.stride() == strides
    assert torch.equal(x, ex), "in place differs from out of place"
    assert_matches(x, rx, what="in place vs reference")
    assert torch.equal(y, ey)


@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's 0 * inf
def test_inplace_keeps_rows_blended_with_one(backend, dtype, cutmix, gen):
    """In place, a row blended with lam exactly 1 is left untouched bit for
    bit, as timm skips lam == 1 -- also with inf, NaN and -0.0 in it or in its
    partner, whether the partner is kept too, mixed, cut or itself. The other
    rows are mixed as the reference mixes them."""
    B, C, H, W = 7, 2, 3, 4
    x = randn((B, C, H, W), dtype, gen)
    x[0, 0, 0, :3] = torch.tensor([float("inf"), float("nan"), -0.0], dtype=dtype)
    x[6, 1, 2, :2] = torch.tensor([-0.0, float("-inf")], dtype=dtype)
    x[3, 0, 1, 1] = float("inf")  # the middle row, paired with itself
    x[2, 1, 0, 0] = float("inf")  # its partner's lam is 1, its own is not
    perm = torch.arange(B).flip(0)  # pairs (0, 6), (1, 5), (2, 4); 3 alone
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    lam = torch.tensor([1.0, 0.25, 0.5, 1.0, 1.0, 1.0, 1.0], dtype=wdt)
    boxes = None
    if cutmix:
        boxes = torch.tensor([NO_BOX] * B)
        boxes[1] = torch.tensor([0, 2, 1, 3])  # row 1 is cut; its partner 5 is blended with 1
    before = x.clone()
    K, target = 3, class_ids(B, 3, gen)
    _, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, boxes=boxes, inplace=True, backend=backend)
    kept = kept_in_place(perm, lam, boxes, f64=dtype == torch.float64)
    assert kept.tolist() == [True, False, False, True, True, True, True]
    bits = torch.int64 if dtype == torch.float64 else (torch.int32 if dtype == torch.float32 else torch.int16)
    assert torch.equal(x[kept].view(bits), before[kept].view(bits)), "a kept row changed"
    rx, ry = mix_reference(before, target, perm, lam, num_classes=K, boxes=boxes)
    assert_matches(x[~kept], rx[~kept], what="mixed rows")
    torch.testing.assert_close(y, ry, atol=0, rtol=0)


@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (2, 7), (9, 2, 3)], ids=lambda s: "x".join(map(str, s)))
def test_inplace_shapes(backend, shape, gen):
    B, K = shape[0], 4
    x = randn(shape, torch.float32, gen)
    perm = random_involution(B, gen)
    target, lam = soft_targets(B, K, gen), random_lam(B, gen)
    rx, ry = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, inplace=True, backend=backend)
    assert out is x
    assert_matches(x, rx)
    _check_targets(y, ry, B, K)


# ----------------------------------------------------------------------------
# uint8 images, normalised in the kernel
# ----------------------------------------------------------------------------

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
FORMATS = [
    ("nchw", None),
    ("nhwc", None),
    ("nchw", torch.channels_last),
    ("nhwc", torch.contiguous_format),
]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f[0]}-to-{f[1]}")
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("out_dtype", [None, torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_uint8_normalize(backend, out_dtype, cutmix, fmt, gen):
    layout, memory_format = fmt
    B, C, H, W = 5, 3, 7, 9
    x = torch.randint(0, 256, (B, C, H, W), generator=gen, dtype=torch.uint8)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    K = 10
    target, perm, lam = class_ids(B, K, gen), random_perm(B, gen), random_lam(B, gen)
    boxes = edge_boxes(B, H, W, gen) if cutmix else None
    x0 = x.clone()

    out, y = mixup_fused.mix(
        x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, backend=backend,
        mean=list(MEAN), std=torch.tensor(STD), out_dtype=out_dtype, memory_format=memory_format,
    )  # fmt: skip
    odt = out_dtype or torch.float32
    ex, ey = mix_reference(
        x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes,
        mean=torch.tensor(MEAN), std=torch.tensor(STD), out_dtype=odt,
    )  # fmt: skip

    assert torch.equal(x, x0)
    assert out.dtype == odt
    assert_matches(out, ex, what="images")
    _check_targets(y, ey, B, K)
    want_cl = memory_format == torch.channels_last or (memory_format is None and layout == "nhwc")
    assert out.is_contiguous(memory_format=torch.channels_last if want_cl else torch.contiguous_format)


def test_uint8_normalize_values(backend, gen):
    """Independent of the reference: lam = 1 and no box gives (x - mean) / std."""
    B, C, H, W = 3, 3, 4, 5
    x = torch.randint(0, 256, (B, C, H, W), generator=gen, dtype=torch.uint8)
    out, _ = mixup_fused.mix(
        x, class_ids(B, 2, gen), random_perm(B, gen), 1.0, num_classes=2, mean=MEAN, std=STD, backend=backend
    )
    want = (x.float() - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)
    assert torch.equal(out, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_float_normalize(backend, dtype, gen):
    B, C, H, W = 4, 2, 3, 5
    x = randn((B, C, H, W), dtype, gen)
    mean, std = torch.tensor([0.5, -0.25]), torch.tensor([2.0, 0.3])
    target, perm, lam = class_ids(B, 3, gen), random_perm(B, gen), random_lam(B, gen)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=3, mean=mean, std=std, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=3, mean=mean, std=std)
    assert_matches(out, ex)
    _check_targets(y, ey, B, 3)


def _fp64_normalize_cases():
    for b in CPU_BACKENDS:
        for xdtype in (torch.uint8, torch.float64):
            yield pytest.param(b, xdtype, id=f"{b}-{xdtype}")


@pytest.mark.parametrize("backend, xdtype", list(_fp64_normalize_cases()))
def test_normalize_to_float64(backend, xdtype, gen):
    B, C, H, W = 3, 3, 4, 5
    if xdtype == torch.uint8:
        x = torch.randint(0, 256, (B, C, H, W), generator=gen, dtype=torch.uint8)
    else:
        x = randn((B, C, H, W), torch.float64, gen) * 100
    target, perm, lam = class_ids(B, 2, gen), random_perm(B, gen), random_lam(B, gen, dtype=torch.float64)
    kw = dict(num_classes=2, mean=torch.tensor(MEAN), std=torch.tensor(STD), out_dtype=torch.float64)
    out, _ = mixup_fused.mix(x, target, perm, lam, backend=backend, **kw)
    ex, _ = mix_reference(x, target, perm, lam, **kw)
    assert_matches(out, ex)


# ----------------------------------------------------------------------------
# The Triton launchers with preallocated, poisoned outputs
# ----------------------------------------------------------------------------


@pytest.mark.skipif(not TRITON_ON_CPU, reason="Triton on CPU tensors needs the interpreter (tests/test_gpu.py on CUDA)")
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_triton_launcher_writes_every_element(channels_last, cutmix, gen):
    from mixup_fused.reference import mix_backward_reference
    from mixup_fused.triton import launcher

    B, C, H, W = 5, 3, 7, 9
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = randn((B, C, H, W), torch.float32, gen).contiguous(memory_format=fmt)
    K = 7
    target, perm, lam = class_ids(B, K, gen), random_perm(B, gen), random_lam(B, gen)
    boxes = edge_boxes(B, H, W, gen) if cutmix else None

    out = poison(torch.empty_like(x))
    _, y = launcher.triton_mix(x, target, perm, lam, boxes, K, 0.1, None, None, out)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)
    assert_matches(out, ex)
    assert_matches(y, ey)

    grad = randn((B, C, H, W), torch.float32, gen).contiguous(memory_format=fmt)
    inv = torch.argsort(perm)
    gout = poison(torch.empty_like(grad))
    launcher.triton_mix_backward(grad, inv, lam, boxes, gout)
    assert_matches(gout, mix_backward_reference(grad, perm, lam, boxes))
