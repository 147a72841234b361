"""Every backend on every device against the reference, element by element:
Mixup, CutMix, layouts, targets and in place.

``device, backend`` runs over ``devices_and_backends()``: on CPU tensors cpp,
triton under the interpreter and the reference; on CUDA tensors (skipped
without a GPU) the compiled Triton kernel and the reference, where the C++
kernel on the same inputs moved to the CPU must agree as well. Fresh outputs
start poisoned with NaN (``poison_outputs``), so an element a kernel forgets
to write fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import (
    TRITON_ON_CPU,
    assert_cpu_agrees,
    assert_matches,
    assert_targets_sum_to_one,
    bits,
    class_ids,
    edge_boxes,
    edge_lam,
    error_bound,
    image,
    poison,
    randn,
    random_involution,
    random_lam,
    random_perm,
    soft_targets,
)

import mixup_fused
from mixup_fused.reference import NO_BOX, kept_in_place, mix_backward_reference, mix_reference, smooth_targets

pytestmark = pytest.mark.usefixtures("poison_outputs")

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
HALF_AND_FLOAT = [torch.float32, torch.float16, torch.bfloat16]
# Awkward shapes: prime sides, B = 1, 1x1 images, flat rows, 5-d; rows of
# several Triton blocks and a prime row length.
SHAPES = [(7, 3, 13, 17), (1, 3, 5, 5), (5, 2, 1, 1), (3, 11), (2, 3, 4, 5, 6), (4, 3, 33, 65), (3, 2053)]
IMAGE_SHAPES = [(7, 3, 13, 17), (1, 3, 5, 5), (5, 2, 1, 1), (3, 1, 7, 2), (3, 3, 50, 70)]


def _shape_id(s):
    return "x".join(map(str, s))


def _check_targets(y, expected, B, K, backend, target, perm):
    assert y.dtype == torch.float32 and y.shape == (B, K)
    assert_matches(y, expected, what="targets", backend=backend)
    # Smoothed one-hot and soft rows sum to one, and so does any mix of them.
    assert_targets_sum_to_one(y, target, perm)


def _lam(kind, B, gen, dtype, device):
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    if kind == "tensor":
        return random_lam(B, gen, device, wdt)
    if kind == "tensor_0_1":  # per-sample lam holding the exact endpoints
        lam = random_lam(B, gen, device, wdt)
        lam[0::3] = 0.0
        lam[1::3] = 1.0
        return lam
    return float(kind)


# (lam, label smoothing, target kind, K), combined so that each appears with
# each shape and dtype; K = 1100 is more classes than one target block.
MODES = [
    ("tensor", 0.0, "int", 10),
    ("tensor", 0.1, "soft", 10),
    ("0.3", 0.1, "int", 10),
    ("0.0", 0.0, "soft", 10),
    ("1.0", 0.1, "int", 10),
    ("tensor_0_1", 0.1, "int", 10),
    ("tensor_0_1", 0.0, "int", 1100),
    ("tensor_0_1", 0.1, "int", 1100),
]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"lam={m[0]}-eps={m[1]}-{m[2]}-K={m[3]}")
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_mixup_matches_reference(device, backend, shape, dtype, mode, gen):
    lam_kind, eps, tkind, K = mode
    B = shape[0]
    x = randn(shape, dtype, gen, device)
    target = class_ids(B, K, gen, device) if tkind == "int" else soft_targets(B, K, gen, device)
    perm = random_perm(B, gen, device)
    lam = _lam(lam_kind, B, gen, dtype, device)
    x0 = x.clone()

    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=eps, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=eps)

    assert out.device == x.device and y.device == x.device
    assert out.data_ptr() != x.data_ptr()
    assert torch.equal(x, x0), "out-of-place mix modified x"
    assert out.is_contiguous()
    assert_matches(out, ex, what="images", backend=backend)
    _check_targets(y, ey, B, K, backend, target, perm)
    assert_cpu_agrees(out, y, x, target, perm, lam, num_classes=K, label_smoothing=eps)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_lam_endpoints_select_samples(device, backend, dtype, gen):
    """Independent of the reference: lam = 1 keeps x, lam = 0 takes x[perm]."""
    B, K = 5, 4
    x = randn((B, 3, 7), dtype, gen, device)
    perm = random_perm(B, gen, device)
    target = class_ids(B, K, gen, device)
    one, y1 = mixup_fused.mix(x, target, perm, 1.0, num_classes=K, backend=backend)
    zero, y0 = mixup_fused.mix(x, target, perm, 0.0, num_classes=K, backend=backend)
    assert torch.equal(one, x)
    assert torch.equal(zero, x[perm])
    onehot = torch.nn.functional.one_hot(target, K).float()
    assert torch.equal(y1, onehot)
    assert torch.equal(y0, onehot[perm])


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_label_smoothing_values(device, backend, eps, gen):
    """timm's convention, written out: off = eps / K, on = 1 - eps + eps / K."""
    B, K = 4, 6
    target = torch.tensor([0, 5, 2, 2], device=device)
    perm = torch.tensor([1, 0, 3, 2], device=device)
    lam = torch.tensor([0.25, 0.5, 1.0, 0.0], device=device)
    _, y = mixup_fused.mix(randn((B, 3), torch.float32, gen, device), target, perm, lam, num_classes=K,
                           label_smoothing=eps, backend=backend)  # fmt: skip
    off, on = eps / K, 1.0 - eps + eps / K
    s = torch.full((B, K), off, dtype=torch.float64, device=device)
    s[torch.arange(B, device=device), target] = on
    expected = lam.double().view(-1, 1) * s + (1 - lam.double().view(-1, 1)) * s[perm]
    # float32: the on / off values rounded once, then the mix (three roundings).
    err = (y.double() - expected).abs()
    assert bool((err <= error_bound(expected, 4, torch.float32)).all()), float(err.max())


def test_many_classes(device, backend, gen):
    """More classes than one target block of the Triton kernel."""
    B, K = 3, 1500
    x = randn((B, 5), torch.float32, gen, device)
    target, perm, lam = class_ids(B, K, gen, device), random_perm(B, gen, device), random_lam(B, gen, device)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1)
    assert_matches(out, ex, backend=backend)
    _check_targets(y, ey, B, K, backend, target, perm)


def test_check_false_gives_the_same_result(device, backend, gen):
    B, K = 8, 6
    x = randn((B, 3, 10, 12), torch.float16, gen, device)
    target, perm, lam = class_ids(B, K, gen, device), random_perm(B, gen, device), random_lam(B, gen, device)
    a = mixup_fused.mix(x, target, perm, lam, num_classes=K, backend=backend)
    b = mixup_fused.mix(x, target, perm, lam, num_classes=K, check=False, backend=backend)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.gpu
def test_auto_backend_on_cuda_is_triton(gen):
    """``backend='auto'`` (the default) on CUDA tensors is the Triton kernel."""
    B, K = 7, 1100
    x = randn((B, 3, 13, 17), torch.float16, gen, "cuda")
    target, perm, lam = class_ids(B, K, gen, "cuda"), random_perm(B, gen, "cuda"), random_lam(B, gen, "cuda")
    assert mixup_fused._backend.resolve_backend("auto", x) == "triton"
    a = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1)
    b = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, backend="triton")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ----------------------------------------------------------------------------
# Layouts
# ----------------------------------------------------------------------------


def _layout(kind, dtype, gen, device):
    """(x, is_channels_last) for a [6, 3, 5, 7]-shaped view of the given kind."""
    B, C, H, W = 6, 3, 5, 7

    def rand(shape):
        return randn(shape, dtype, gen, device)

    if kind == "contiguous":
        return rand((B, C, H, W)), False
    if kind == "channels_last":
        return rand((B, C, H, W)).contiguous(memory_format=torch.channels_last), True
    if kind == "channels_last_batch_slice":  # still channels_last, batch stride unchanged
        return rand((B + 3, C, H, W)).contiguous(memory_format=torch.channels_last)[2 : 2 + B], True
    if kind == "transposed":
        return rand((B, C, W, H)).transpose(2, 3), False
    if kind == "batch_last":
        return rand((C, H, W, B)).permute(3, 0, 1, 2), False
    if kind == "strided_batch":
        return rand((2 * B, C, H, W))[::2], False
    if kind == "sliced_width":
        return rand((B, C, H, W + 4))[..., 1 : 1 + W], False
    if kind == "expanded_batch":  # stride 0 along the batch
        return rand((1, C, H, W)).expand(B, C, H, W), False
    if kind == "expanded_channel":
        return rand((B, 1, H, W)).expand(B, C, H, W), False
    if kind == "misaligned":  # contiguous, but the data starts one element past an aligned address
        return rand((B * C * H * W + 1,))[1:].view(B, C, H, W), False
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
@pytest.mark.parametrize("dtype", HALF_AND_FLOAT, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts(device, backend, layout, dtype, cutmix, gen):
    x, channels_last = _layout(layout, dtype, gen, device)
    B, K = x.shape[0], 7
    target, perm, lam = class_ids(B, K, gen, device), random_perm(B, gen, device), random_lam(B, gen, device)
    boxes = edge_boxes(B, x.shape[2], x.shape[3], gen, device, perm) if cutmix else None
    x0 = x.clone()

    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)

    assert torch.equal(x, x0)
    assert_matches(out, ex, what="images", backend=backend)
    _check_targets(y, ey, B, K, backend, target, perm)
    if channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last), out.stride()
    elif layout in ("contiguous", "misaligned"):
        assert out.is_contiguous(), out.stride()


@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_rows_longer_than_one_work_unit(device, backend, channels_last, cutmix, gen):
    """Rows of 38121 elements: several C++ work units (32768) and Triton blocks
    (4096) per row, with odd line lengths so that vector loops have tails."""
    B, C, H, W = 3, 3, 97, 131
    x = randn((B, C, H, W), torch.float32, gen, device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    K = 5
    target, perm, lam = class_ids(B, K, gen, device), random_perm(B, gen, device), random_lam(B, gen, device)
    boxes = torch.tensor([[1, 96, 3, 130], [0, 97, 0, 131], [40, 41, 0, 131]], device=device) if cutmix else None
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, boxes=boxes, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, boxes=boxes)
    assert_matches(out, ex, backend=backend)
    _check_targets(y, ey, B, K, backend, target, perm)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


# ----------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------


def _soft(kind, B, K, gen, device):
    if kind == "contiguous":
        return soft_targets(B, K, gen, device)
    if kind == "transposed":
        return soft_targets(B, K, gen, device).t().contiguous().t()  # strides (1, B)
    if kind == "sliced":
        big = torch.rand(B, K + 5, generator=gen).to(device)
        return big[:, 2 : 2 + K]
    if kind == "strided_rows":
        return soft_targets(2 * B, K, gen, device)[::2]
    if kind == "expanded":
        return soft_targets(1, K, gen, device).expand(B, K)
    if kind == "bfloat16":
        return soft_targets(B, K, gen, device).bfloat16()
    if kind == "float64":
        return soft_targets(B, K, gen, device).double()
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["contiguous", "transposed", "sliced", "strided_rows", "expanded", "bfloat16", "float64"]
)
def test_soft_targets(device, backend, kind, gen):
    B, K = 5, 9
    target = _soft(kind, B, K, gen, device)
    if kind == "transposed":
        assert target.stride(-1) != 1
    x = randn((B, 4), torch.float32, gen, device)
    perm, lam = random_perm(B, gen, device), random_lam(B, gen, device)
    t0 = target.clone()
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1)
    assert torch.equal(target, t0)
    assert_matches(out, ex, backend=backend)
    assert_matches(y, ey, what="targets", backend=backend)
    if kind != "sliced":  # those input rows do not sum to one (bfloat16 rows: their deviation is allowed for)
        assert_targets_sum_to_one(y, target, perm)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_scalar_lam_and_soft_targets(device, backend, lam, gen):
    B, K = 6, 9
    x = randn((B, 3, 8, 8), torch.bfloat16, gen, device)
    target = soft_targets(2 * B, K, gen, device)[::2]  # non-contiguous rows
    perm = random_perm(B, gen, device)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1)
    assert_matches(out, ex, backend=backend)
    assert_matches(y, ey, backend=backend)


@pytest.mark.parametrize("tdtype", [torch.int64, torch.int32, torch.uint8], ids=str)
def test_class_id_dtypes(device, backend, tdtype, gen):
    B, K = 6, 11
    target = class_ids(B, K, gen, device).to(tdtype)
    perm = random_perm(B, gen, device).to(torch.int32 if tdtype == torch.int32 else torch.int64)
    x, lam = randn((B, 3), torch.float32, gen, device), random_lam(B, gen, device)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.2, backend=backend)
    ex, ey = mix_reference(x, target.long(), perm.long(), lam, num_classes=K, label_smoothing=0.2)
    assert_matches(out, ex, backend=backend)
    _check_targets(y, ey, B, K, backend, target, perm)


def test_strided_small_arguments(device, backend, gen):
    """perm, lam, class ids and boxes that are views with strides (every other
    element of a longer tensor), or half-precision lam, are read by value."""
    B, C, H, W, K = 6, 2, 5, 4, 7

    def every_other(t):
        return torch.stack([t, torch.full_like(t, -7)], dim=-1).select(-1, 0)

    x = randn((B, C, H, W), torch.float32, gen, device)
    target, perm, lam = class_ids(B, K, gen, device), random_perm(B, gen, device), random_lam(B, gen, device)
    boxes = edge_boxes(B, H, W, gen, device, perm)
    for half_lam in (False, True):
        lam_in = every_other(lam.half() if half_lam else lam)
        lam_ex = lam.half().float() if half_lam else lam
        assert not every_other(perm).is_contiguous()
        for cut in (None, boxes):
            column_major = None if cut is None else cut.t().contiguous().t()
            kw = dict(num_classes=K, label_smoothing=0.1, boxes=column_major, backend=backend)
            out, y = mixup_fused.mix(x, every_other(target), every_other(perm), lam_in, **kw)
            ex, ey = mix_reference(x, target, perm, lam_ex, num_classes=K, label_smoothing=0.1, boxes=cut)
            assert_matches(out, ex, backend=backend)
            _check_targets(y, ey, B, K, backend, target, perm)


# ----------------------------------------------------------------------------
# CutMix
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("tkind", ["int", "soft"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape", IMAGE_SHAPES, ids=_shape_id)
def test_cutmix_matches_reference(device, backend, shape, dtype, channels_last, tkind, gen):
    B, C, H, W = shape
    K = 10
    x = randn(shape, dtype, gen, device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = class_ids(B, K, gen, device) if tkind == "int" else soft_targets(B, K, gen, device)
    perm = random_perm(B, gen, device)
    boxes = edge_boxes(B, H, W, gen, device, perm)
    # timm's corrected lam for cut rows: one minus the box's share of the
    # image; blended (NO_BOX) rows get lam from edge_lam (1, 0 or random).
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    blended = (boxes == -1).all(1)
    lam = torch.where(blended, edge_lam(B, gen, device, torch.float64), 1.0 - area.double() / (H * W)).to(wdt)

    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)

    assert_matches(out, ex, what="images", backend=backend)
    _check_targets(y, ey, B, K, backend, target, perm)
    if channels_last:
        assert out.is_contiguous(memory_format=torch.channels_last)
    else:
        assert out.is_contiguous()
    assert_cpu_agrees(out, y, x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)


def test_cutmix_scalar_lam_and_int32_boxes(device, backend, gen):
    B, C, H, W = 4, 2, 6, 5
    x = randn((B, C, H, W), torch.float32, gen, device)
    target, perm = class_ids(B, 3, gen, device), random_perm(B, gen, device)
    boxes = edge_boxes(B, H, W, gen, device, perm).to(torch.int32)
    out, y = mixup_fused.mix(x, target, perm, 0.5, num_classes=3, boxes=boxes, backend=backend)
    ex, ey = mix_reference(x, target, perm, 0.5, num_classes=3, boxes=boxes.long())
    assert_matches(out, ex, backend=backend)
    _check_targets(y, ey, B, 3, backend, target, perm)


def test_reference_cutmix_and_mixup_match_loops(gen):
    """The oracle itself against plain float64 loops (torchvision's expected_fn)."""
    B, C, H, W = 4, 2, 5, 6
    x = randn((B, C, H, W), torch.float64, gen)
    perm = random_perm(B, gen)
    lam = random_lam(B, gen, dtype=torch.float64)
    boxes = edge_boxes(B, H, W, gen, perm=perm)
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
                    li = float(lam[i])
                    want_mix[i, c, h, w] = li * float(x[i, c, h, w]) + (1 - li) * float(x[p, c, h, w])
                    if (y0, y1, x0, x1) == NO_BOX:  # blended with lam, not cut
                        want_cut[i, c, h, w] = want_mix[i, c, h, w]
                    else:
                        want_cut[i, c, h, w] = x[p, c, h, w] if inside else x[i, c, h, w]
    assert bool((boxes == -1).all(1).any()) and bool((boxes != -1).any(1).any()), "cut and blended rows"
    assert torch.equal(got_cut, want_cut)
    # The same float64 operations in the same order (1 - lam, two products, a sum): the same bits.
    assert torch.equal(got_mix, want_mix)


# ----------------------------------------------------------------------------
# In place
# ----------------------------------------------------------------------------

INVOLUTIONS = ["flip", "random", "identity"]


def _involution(kind, B, gen, device):
    if kind == "flip":
        return torch.arange(B, device=device).flip(0)
    if kind == "identity":
        return torch.arange(B, device=device)
    return random_involution(B, gen, device)


@pytest.mark.parametrize("shape", [(7, 3, 5, 6), (9, 3, 17, 23)], ids=_shape_id)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("involution", INVOLUTIONS)
def test_inplace_equals_out_of_place(device, backend, involution, dtype, cutmix, layout, shape, gen):
    B, C, H, W = shape
    x = image(shape, dtype, gen, device, layout)
    K = 5
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    target, lam = class_ids(B, K, gen, device), edge_lam(B, gen, device, wdt)
    perm = _involution(involution, B, gen, device)
    boxes = edge_boxes(B, H, W, gen, device, perm) if cutmix else None
    strides, ptr = x.stride(), x.data_ptr()

    ex, ey = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, backend=backend)
    rx, _ = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)
    out, y = mixup_fused.mix(
        x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, inplace=True, backend=backend
    )

    assert out is x
    assert x.data_ptr() == ptr and x.stride() == strides
    assert torch.equal(x, ex), "in place differs from out of place"
    assert_matches(x, rx, what="in place vs reference", backend=backend)
    assert torch.equal(y, ey)


@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's 0 * inf
def test_inplace_keeps_rows_blended_with_one(device, backend, dtype, cutmix, gen):
    """In place, a row blended with lam exactly 1 is left untouched bit for
    bit, as timm skips lam == 1 -- also with inf, NaN and -0.0 in it or in its
    partner (1 * a + 0 * b would change them), whether it is the first or the
    second row of its pair, and whether its partner is kept too, mixed, cut or
    itself. A cut row with lam == 1 is not kept: lam only weights its targets,
    and its box still takes the partner's pixels. The other rows are mixed as
    the reference mixes them."""
    B, C, H, W = 11, 2, 3, 4
    x = randn((B, C, H, W), dtype, gen, device)
    # Pairs (0, 10) both kept; (1, 9), (2, 8) the second kept, the first cut
    # or mixed; (3, 7), (4, 6) the first kept, the second mixed or cut (with
    # lam == 1: not kept); 5 kept, paired with itself.
    perm = torch.arange(B, device=device).flip(0)
    x[0, 0, 0, :3] = torch.tensor([float("inf"), float("nan"), -0.0], dtype=dtype)
    x[10, 1, 2, :2] = torch.tensor([-0.0, float("-inf")], dtype=dtype)
    x[1, 1, 2, 3] = float("inf")  # the partner of kept row 9
    x[9, 0, 1, 0] = -0.0
    x[2, 1, 0, 0] = float("inf")  # the partner of kept row 8
    x[3, 0, 1, 1] = -0.0  # kept, first of its pair
    x[7, 0, 1, 2] = float("inf")
    x[4, 0, 2, 3] = -0.0  # kept, first of its pair; its partner is cut
    x[6, 1, 0, 0] = float("inf")
    x[5, 0, 1, 1] = float("inf")  # paired with itself
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    lam = torch.tensor([1.0, 0.25, 0.5, 1.0, 1.0, 1.0, 1.0, 0.75, 1.0, 1.0, 1.0], dtype=wdt, device=device)
    boxes = None
    if cutmix:
        boxes = torch.tensor([NO_BOX] * B)
        boxes[1] = torch.tensor([0, 2, 1, 3])  # cut; its partner 9 is blended with 1
        boxes[6] = torch.tensor([1, 3, 0, 2])  # cut with lam == 1; its partner 4 is blended with 1
        boxes = boxes.to(device)
    before = x.clone()
    K, target = 3, class_ids(B, 3, gen, device)
    _, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, boxes=boxes, inplace=True, backend=backend)
    kept = kept_in_place(perm, lam, boxes, f64=dtype == torch.float64)
    want_kept = [True, False, False, True, True, True, not cutmix, False, True, True, True]
    assert kept.tolist() == want_kept
    assert torch.equal(bits(x[kept]), bits(before[kept])), "a kept row changed"
    rx, ry = mix_reference(before, target, perm, lam, num_classes=K, boxes=boxes)
    assert_matches(x[~kept], rx[~kept], what="mixed rows", backend=backend)
    if cutmix:
        assert not torch.equal(bits(x[6]), bits(before[6])), "the cut row with lam == 1 was not cut"
    torch.testing.assert_close(y, ry, atol=0, rtol=0)


@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (2, 7), (9, 2, 3)], ids=_shape_id)
def test_inplace_shapes(device, backend, shape, gen):
    B, K = shape[0], 4
    x = randn(shape, torch.float32, gen, device)
    perm = random_involution(B, gen, device)
    target, lam = soft_targets(B, K, gen, device), random_lam(B, gen, device)
    rx, ry = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, inplace=True, backend=backend)
    assert out is x
    assert_matches(x, rx, backend=backend)
    _check_targets(y, ry, B, K, backend, target, perm)


# ----------------------------------------------------------------------------
# The Triton launchers with preallocated, poisoned outputs
# ----------------------------------------------------------------------------

NO_INTERPRETER = pytest.mark.skipif(not TRITON_ON_CPU, reason="Triton on CPU tensors needs the interpreter")
TRITON_DEVICES = [
    pytest.param("cpu", marks=NO_INTERPRETER),
    pytest.param("cuda", marks=pytest.mark.gpu),
]


@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", HALF_AND_FLOAT, ids=str)
@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_triton_launcher_writes_every_element(device, dtype, channels_last, cutmix, gen):
    """Rows of three blocks, more classes than one target block; cut and
    blended rows paired every way (edge_boxes), forward and backward."""
    from mixup_fused.triton import launcher

    B, C, H, W, K = 10, 3, 33, 47, 1030
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = randn((B, C, H, W), dtype, gen, device).contiguous(memory_format=fmt)
    target, perm, lam = class_ids(B, K, gen, device), random_perm(B, gen, device), edge_lam(B, gen, device)
    boxes = edge_boxes(B, H, W, gen, device, perm) if cutmix else None

    out = poison(torch.empty_like(x))
    _, y, _ = launcher.triton_mix(x, target, perm, lam, boxes, None, None, K, 0.1, None, None, out)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)
    assert_matches(out, ex, backend="triton")
    assert_matches(y, ey, backend="triton")

    grad = randn((B, C, H, W), dtype, gen, device).contiguous(memory_format=fmt)
    gout = poison(torch.empty_like(grad))
    launcher.triton_mix_backward(grad, torch.argsort(perm), lam, boxes, None, gout)
    assert_matches(gout, mix_backward_reference(grad, perm, lam, boxes), backend="triton")


# ----------------------------------------------------------------------------
# The weights: lam and 1 - lam, each rounded once from the lam given
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_float_lam_weights_like_timm_and_torchvision(device, backend, dtype, gen):
    """A Python-float lam weighs the partner by ``1 - lam`` rounded once from
    the float64 value, as timm's batch mode (``x.flip(0).mul_(1. - lam)``) and
    torchvision (``x.roll(1, 0).mul_(1.0 - lam)``) compute it, not by
    ``1 - float32(lam)``: the same images and targets, bit for bit."""
    B, K = 6, 5
    x = randn((B, 3, 5, 7), dtype, gen, device)
    t = class_ids(B, K, gen, device)
    perm = torch.arange(B - 1, -1, -1, device=device)
    # Draws whose 1 - float32(lam) and float32(1 - lam) differ.
    lams = [v for v in torch.rand(400, generator=gen, dtype=torch.float64).tolist()
            if np.float32(1.0) - np.float32(v) != np.float32(1.0 - v)][:4]  # fmt: skip
    assert lams
    for lam in lams:
        out, y = mixup_fused.mix(x, t, perm, lam, num_classes=K, label_smoothing=0.1, backend=backend)
        xf = x.float()
        want = (xf.mul(lam) + xf[perm].mul(1.0 - lam)).to(dtype)
        s = smooth_targets(t, K, 0.1)
        want_y = s * lam + s[perm] * (1.0 - lam)
        if dtype == torch.bfloat16 and backend == "triton" and device == "cpu":
            # The interpreter's bf16 rounding (conftest).
            assert_matches(out, want, what=f"images, lam={lam!r}", backend=backend)
        else:
            assert torch.equal(out, want), f"images, lam={lam!r}"
        assert torch.equal(y, want_y), f"targets, lam={lam!r}"
