"""The Triton launchers on the regions a row takes from its partner: CutMix
boxes of 1, 2 and 3 spatial dims, free-form cut masks, and the label maps
that move with the pixels -- out of place, in place and backward, against the
reference bit for bit (:func:`conftest.assert_matches`).

The launchers are called directly (on CPU tensors under the interpreter, on
CUDA tensors with a GPU), not through the registered ops. Shapes are tiny:
the interpreter is slow. Every batch pairs cut and blended (``NO_BOX``) rows
every way, holds rows paired with themselves, lam == 1 and lam == 0 rows,
full, empty and one-pixel boxes, and its outputs start poisoned.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from conftest import (  # noqa: E402
    HAS_CUDA,
    TRITON_ON_CPU,
    assert_matches,
    bits,
    class_ids,
    edge_lam,
    poison,
    poisoned_allocations,
    randn,
)

from mixup_fused._layout import channels_last_order, empty_out_like  # noqa: E402
from mixup_fused.reference import (  # noqa: E402
    mix_backward_reference,
    mix_inplace_reference,
    mix_maps_reference,
    mix_reference,
)
from mixup_fused.triton import launcher  # noqa: E402

pytestmark = [
    pytest.mark.triton_interpreter,
    pytest.mark.skipif(not (TRITON_ON_CPU or HAS_CUDA), reason="the Triton launchers need CUDA or the interpreter"),
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),  # the interpreter's 0 * inf
]

DEVICE = "cuda" if HAS_CUDA else "cpu"
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
SPATIAL = {"1d": (7,), "2d": (5, 6), "3d": (3, 4, 5)}
MAP_DTYPES = [torch.int64, torch.int32, torch.uint8]
K = 5
B = 10
# A permutation with two 3-cycles, a pair and two rows paired with
# themselves, and an involution with four pairs and two rows alone.
PERM = [2, 1, 3, 0, 4, 6, 7, 5, 9, 8]
INVOLUTION = [1, 0, 3, 2, 4, 6, 5, 7, 9, 8]
# Rows cut (C) or blended (N, NO_BOX): with PERM the pairs (row, partner) are
# C-C, C-N, N-C, N-N, and a C and an N row are paired with themselves; with
# INVOLUTION (0 1) is C-N, (2 3) and (8 9) C-C, (5 6) N-N, rows 4 (C) and 7 (N)
# alone.
KINDS = "CNCCCNNNCC"
# The cut rows in the order they get the edge-case boxes: rows with a partner
# first (a box on a row paired with itself changes nothing).
CUT_ORDER = [0, 2, 3, 8, 9, 4]


def _boxes(spatial, gen) -> torch.Tensor:
    """int64 ``[B, 2n]``: ``NO_BOX`` for the N rows of ``KINDS``; the C rows
    (in ``CUT_ORDER``) get the full sample, an empty box (lo == hi in one
    dim), the first and the last pixel, an interior box, then random boxes."""
    n = len(spatial)
    fixed = [
        [v for s in spatial for v in (0, s)],  # full
        [v for d, s in enumerate(spatial) for v in ((s // 2, s // 2) if d == n - 1 else (0, s))],  # empty
        [v for s in spatial for v in (0, 1)],  # first pixel
        [v for s in spatial for v in (s - 1, s)],  # last pixel
        [v for s in spatial for v in (min(1, s - 1), s - 1)],  # inside, off every edge where there is room
    ]
    rows = [[-1] * (2 * n) for _ in range(B)]
    for k, i in enumerate(CUT_ORDER):
        if k < len(fixed):
            rows[i] = fixed[k]
        else:
            rows[i] = [v for s in spatial for v in sorted(torch.randint(0, s + 1, (2,), generator=gen).tolist())]
    return torch.tensor(rows, dtype=torch.int64, device=DEVICE)


def _cut_mask(spatial, gen, dtype=torch.bool, keepdim=False) -> torch.Tensor:
    """A random cut mask; row 0 all set, row 1 all clear."""
    m = torch.rand((B, *spatial), generator=gen) < 0.5
    m[0] = True
    m[1] = False
    m = m.to(dtype)
    if dtype == torch.uint8:
        m = m * torch.randint(1, 256, m.shape, generator=gen, dtype=torch.uint8)  # any nonzero value cuts
    return (m.unsqueeze(1) if keepdim else m).to(DEVICE)


def _maps(spatial, gen, dtype, keepdim=False) -> torch.Tensor:
    """Integer label maps holding the ignore label 255 and (for the wide
    dtypes) labels whose high bytes are set."""
    hi = 256 if dtype == torch.uint8 else 2**31 - 1
    m = torch.randint(0, hi, (B, *spatial), generator=gen, dtype=torch.int64)
    m[:, 0] = 255
    if dtype == torch.int64:
        m[:, -1] = -(2**40) - 7
    m = m.to(dtype)
    return (m.unsqueeze(1) if keepdim else m).to(DEVICE)


def _x(spatial, dtype, gen, layout) -> torch.Tensor:
    """``randn`` samples ``[B, 3, *spatial]`` in ``layout`` with a -0.0, an inf
    and a NaN planted in blended rows (kept bit for bit where a row is kept)."""
    x = randn((B, 3, *spatial), dtype, gen, DEVICE)
    flat = x.view(B, -1)
    flat[5, 0] = -0.0
    flat[6, 1] = float("inf")
    flat[7, 2] = float("nan")
    if layout == "channels_last":
        x = (
            x.permute(channels_last_order(x.dim()))
            .contiguous()
            .permute([channels_last_order(x.dim()).index(d) for d in range(x.dim())])
        )
    return x


def _batch(perm, gen):
    """Class ids, ``perm`` and float64 lam with 1 and 0 at the rows ``edge_lam`` puts them."""
    return class_ids(B, K, gen, DEVICE), torch.tensor(perm, device=DEVICE), edge_lam(B, gen, DEVICE, torch.float64)


def _region_kwargs(region, spatial, gen, cut_dtype=torch.bool, keepdim=False):
    if region == "boxes":
        return dict(boxes=_boxes(spatial, gen))
    if region == "cut_mask":
        return dict(cut_mask=_cut_mask(spatial, gen, cut_dtype, keepdim))
    return {}


def _assert_same(actual, expected, what):
    """Integer tensors (label maps) equal element for element, bits included."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    assert torch.equal(bits(actual), bits(expected)), f"{what}: differ from the reference"


def _forward(x, target, perm, lam, boxes=None, cut_mask=None, masks=None, mean=None, std=None, out_dtype=None):
    """``triton_mix`` into poisoned outputs (images, label maps; the targets
    poisoned on allocation), laid out as ``mix_triton`` lays them out."""
    out = poison(empty_out_like(x, out_dtype or x.dtype))
    masks_out = poison(torch.empty_like(masks, memory_format=torch.contiguous_format)) if masks is not None else None
    cut = launcher._cut_bytes(cut_mask)
    with poisoned_allocations():
        return launcher.triton_mix(x, target, perm, lam, boxes, cut, masks, K, 0.1, mean, std, out, masks_out)


# ----------------------------------------------------------------------------
# Out of place
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("rank", list(SPATIAL))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_boxes_forward(dtype, rank, layout, gen):
    """Boxes of every rank, cut and NO_BOX rows paired every way; label maps
    (a dtype per case) move with the pixels in the same launch."""
    spatial = SPATIAL[rank]
    x = _x(spatial, dtype, gen, layout)
    target, perm, lam = _batch(PERM, gen)
    boxes = _boxes(spatial, gen)
    masks = _maps(spatial, gen, MAP_DTYPES[DTYPES.index(dtype) % 3])
    out, y, masks_out = _forward(x, target, perm, lam, boxes=boxes, masks=masks)
    ex, ey, em = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, masks=masks)
    assert out.stride() == x.stride(), "the output keeps x's layout"
    assert_matches(out, ex, backend="triton", what="images")
    assert_matches(y, ey, backend="triton", what="targets")
    _assert_same(masks_out, em, "label maps")


CUTS = ["bool", "bool_keepdim", "uint8", "uint8_keepdim"]


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("rank", list(SPATIAL))
def test_cut_mask_forward(rank, layout, cut, gen):
    """A free-form cut mask (bool or uint8, ``[B, *spatial]`` or ``[B, 1,
    *spatial]``): the partner's pixel wherever it is nonzero, over all
    channels; no row blended; targets mixed with lam."""
    spatial = SPATIAL[rank]
    dtype = DTYPES[CUTS.index(cut)]  # every dtype meets every rank and layout
    x = _x(spatial, dtype, gen, layout)
    target, perm, lam = _batch(PERM, gen)
    cm = _cut_mask(spatial, gen, torch.uint8 if cut.startswith("uint8") else torch.bool, cut.endswith("keepdim"))
    masks = _maps(spatial, gen, torch.int64, keepdim=True)
    out, y, masks_out = _forward(x, target, perm, lam, cut_mask=cm, masks=masks)
    ex, ey, em = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, cut_mask=cm, masks=masks)
    assert_matches(out, ex, backend="triton", what=f"images ({dtype})")
    assert_matches(y, ey, backend="triton", what="targets")
    _assert_same(masks_out, em, "label maps")


@pytest.mark.parametrize("keepdim", [False, True], ids=["b_spatial", "b_1_spatial"])
@pytest.mark.parametrize("region", ["boxes", "cut_mask", "mixup"])
@pytest.mark.parametrize("map_dtype", MAP_DTYPES, ids=str)
def test_label_maps_forward(map_dtype, region, keepdim, gen):
    """Label maps of every integer dtype, with 255 and (int64) high-byte
    labels: moved inside the cut, kept elsewhere and in blended rows, copied
    under plain mixup. Through the op-level launcher (``mix_triton``)."""
    spatial = SPATIAL["2d"]
    x = _x(spatial, torch.float32, gen, "contiguous")
    target, perm, lam = _batch(PERM, gen)
    kw = _region_kwargs(region, spatial, gen)
    masks = _maps(spatial, gen, map_dtype, keepdim)
    with poisoned_allocations():
        out, y, masks_out = launcher.mix_triton(x, target, perm, lam, kw.get("boxes"), kw.get("cut_mask"), masks, K,
                                                0.1, None, None, None, True)  # fmt: skip
    assert masks_out.is_contiguous() and masks_out.data_ptr() != masks.data_ptr()
    _assert_same(masks_out, mix_maps_reference(masks, perm, x.shape, **kw), "label maps")
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, **kw)
    assert_matches(out, ex, backend="triton", what="images")
    assert_matches(y, ey, backend="triton", what="targets")


def test_no_masks_gives_an_empty_int64_tensor(gen):
    spatial = SPATIAL["1d"]
    x = _x(spatial, torch.float32, gen, "contiguous")
    perm, lam = torch.tensor(PERM, device=DEVICE), edge_lam(B, gen, DEVICE, torch.float64)
    _, _, masks_out = launcher.mix_triton(x, class_ids(B, K, gen, DEVICE), perm, lam, _boxes(spatial, gen), None, None,
                                          K, 0.0, None, None, None, True)  # fmt: skip
    assert masks_out.shape == (0,) and masks_out.dtype == torch.int64 and masks_out.device == x.device


@pytest.mark.parametrize("region", ["boxes", "cut_mask"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_uint8_normalised_with_a_region(layout, region, gen):
    """The prologue (uint8 normalised per channel) with a cut, to float16 out."""
    spatial = SPATIAL["2d"]
    x = torch.randint(0, 256, (B, 3, *spatial), generator=gen, dtype=torch.uint8).to(DEVICE)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    mean = torch.tensor([123.675, 116.28, 103.53], device=DEVICE)
    std = torch.tensor([58.395, 57.12, 57.375], device=DEVICE)
    target, perm, lam = _batch(PERM, gen)
    kw = _region_kwargs(region, spatial, gen)
    out, y, _ = _forward(x, target, perm, lam, mean=mean, std=std, out_dtype=torch.float16, **kw)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, mean=mean, std=std,
                           out_dtype=torch.float16, **kw)  # fmt: skip
    assert_matches(out, ex, backend="triton", what="images")
    assert_matches(y, ey, backend="triton", what="targets")


def test_a_depth_of_one_with_an_empty_depth_range(gen):
    """[B, C, 1, H, W] boxes whose depth range is empty cut nothing: the
    depth of a 3-D box counts even when D == 1."""
    spatial = (1, 4, 5)
    x = _x(spatial, torch.float32, gen, "contiguous")
    perm, lam = torch.tensor(PERM, device=DEVICE), edge_lam(B, gen, DEVICE, torch.float64)
    boxes = _boxes(spatial, gen)
    boxes[0] = torch.tensor([1, 1, 0, 4, 0, 5])
    boxes[2] = torch.tensor([0, 0, 1, 3, 1, 4])
    target = class_ids(B, K, gen, DEVICE)
    out, _, _ = _forward(x, target, perm, lam, boxes=boxes)
    ex, _ = mix_reference(x, target, perm, lam, num_classes=K, boxes=boxes)
    assert_matches(out, ex, backend="triton")
    assert torch.equal(bits(out[0]), bits(x[0])) and torch.equal(bits(out[2]), bits(x[2]))


# ----------------------------------------------------------------------------
# In place
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["boxes", "cut_mask", "mixup"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("rank", list(SPATIAL))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_inplace(dtype, rank, layout, region, gen):
    """Images and label maps mixed in place by one launch (perm an
    involution): as ``mix_inplace_reference``, kept rows bit for bit."""
    spatial = SPATIAL[rank]
    x = _x(spatial, dtype, gen, layout)
    target, perm, lam = _batch(INVOLUTION, gen)
    kw = _region_kwargs(region, spatial, gen, torch.uint8, keepdim=dtype == torch.float64)
    masks = _maps(spatial, gen, MAP_DTYPES[DTYPES.index(dtype) % 3])
    want_x, want_m = x.clone(), masks.clone()
    mix_inplace_reference(want_x, perm, lam, masks=want_m, **kw)
    _, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1)
    ptr, stride = x.data_ptr(), x.stride()
    with poisoned_allocations():
        y = launcher.mix_inplace_triton(x, target, perm, lam, kw.get("boxes"), kw.get("cut_mask"), masks, K, 0.1, True)
    assert x.data_ptr() == ptr and x.stride() == stride
    assert_matches(x, want_x, backend="triton", what="images")
    _assert_same(masks, want_m, "label maps")
    assert_matches(y, ey, backend="triton", what="targets")


def test_inplace_non_contiguous_maps_are_written_back(gen):
    spatial = SPATIAL["2d"]
    x = _x(spatial, torch.float32, gen, "contiguous")
    perm, lam = torch.tensor(INVOLUTION, device=DEVICE), edge_lam(B, gen, DEVICE, torch.float64)
    boxes = _boxes(spatial, gen)
    masks = _maps(spatial[::-1], gen, torch.int32).transpose(1, 2)  # [B, H, W], not contiguous
    want_x, want_m = x.clone(), masks.clone()
    mix_inplace_reference(want_x, perm, lam, boxes, masks=want_m)
    launcher.mix_inplace_triton(x, class_ids(B, K, gen, DEVICE), perm, lam, boxes, None, masks, K, 0.0, True)
    assert_matches(x, want_x, backend="triton")
    _assert_same(masks, want_m, "label maps")


# ----------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["boxes", "cut_mask", "mixup"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("rank", list(SPATIAL))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_backward(dtype, rank, layout, region, gen):
    """``grad[k]`` = own term outside cut k + partner term inside cut q[k]
    (boxes of any rank, cut masks), into a poisoned output."""
    spatial = SPATIAL[rank]
    g = _x(spatial, dtype, gen, layout)
    perm, lam = torch.tensor(PERM, device=DEVICE), edge_lam(B, gen, DEVICE, torch.float64)
    kw = _region_kwargs(region, spatial, gen, keepdim=dtype == torch.float16)
    out = poison(empty_out_like(g, g.dtype))
    inv = torch.argsort(perm)
    launcher.triton_mix_backward(g, inv, lam, kw.get("boxes"), launcher._cut_bytes(kw.get("cut_mask")), out)
    assert_matches(out, mix_backward_reference(g, perm, lam, **kw), backend="triton", what="grad x")
    got = launcher.mix_backward_triton(g, perm, lam, kw.get("boxes"), kw.get("cut_mask"))
    assert_matches(got, mix_backward_reference(g, perm, lam, **kw), backend="triton", what="grad x (op level)")


@pytest.mark.skipif(not TRITON_ON_CPU, reason="the autograd wrapper of the launchers on CPU tensors")
@pytest.mark.parametrize("region", ["boxes", "cut_mask"])
def test_gradients_flow_through_a_cut(region, gen):
    """Autograd through the launchers on CPU tensors (``_TritonOnCPU``): the
    gradient of a mix with a cut mask or 3-D boxes is the mix backward, and
    the derivative of that backward is the forward mix."""
    from mixup_fused._backend import _TritonOnCPU
    from mixup_fused.reference import mix_images_reference

    spatial = SPATIAL["3d"]
    x = _x(spatial, torch.float64, gen, "contiguous").nan_to_num_(0.0, 0.0, 0.0).requires_grad_()
    target, perm, lam = _batch(PERM, gen)
    kw = _region_kwargs(region, spatial, gen)
    out, y, masks_out = _TritonOnCPU.apply(x, target, perm, lam, kw.get("boxes"), kw.get("cut_mask"), None, K, 0.0,
                                           None, None, None, True)  # fmt: skip
    assert not y.requires_grad and not masks_out.requires_grad
    g = randn(out.shape, torch.float64, gen, DEVICE).requires_grad_()
    (gx,) = torch.autograd.grad(out, x, g, create_graph=True)
    assert_matches(gx.detach(), mix_backward_reference(g.detach(), perm, lam, **kw), backend="triton", what="grad x")
    gg = randn(out.shape, torch.float64, gen, DEVICE)
    (ggrad,) = torch.autograd.grad(gx, g, gg)
    assert_matches(ggrad, mix_images_reference(gg, perm, lam, **kw), backend="triton", what="double backward")


# ----------------------------------------------------------------------------
# Bad input: an error that names the argument, nothing written
# ----------------------------------------------------------------------------


def _bad_cases(gen):
    spatial = SPATIAL["3d"]
    boxes = _boxes(spatial, gen)
    bad_box = boxes.clone()
    bad_box[2, 1] = spatial[0] + 1  # depth hi past D
    cm = _cut_mask(spatial, gen)
    maps = _maps(spatial, gen, torch.int64)
    return [
        ("boxes of the wrong width", dict(boxes=boxes[:, :4]), ValueError, r"boxes must have shape \[B, 2 \* spatial"),
        ("a box out of bounds", dict(boxes=bad_box), ValueError, r"boxes\[2\]"),
        ("boxes and a cut mask", dict(boxes=boxes, cut_mask=cm), ValueError, "cut_mask and boxes are exclusive"),
        ("a float cut mask", dict(cut_mask=cm.float()), TypeError, "cut_mask must be a bool"),
        ("a cut mask of the wrong shape", dict(cut_mask=cm[:, :, :2]), ValueError, r"cut_mask must have shape"),
        ("float label maps", dict(masks=maps.float()), TypeError, "masks must be an integer"),
        ("label maps of the wrong shape", dict(masks=maps[:, :2]), ValueError, r"masks must have shape"),
    ]


@pytest.mark.parametrize("inplace", [False, True], ids=["out_of_place", "inplace"])
def test_bad_input_names_the_argument_and_writes_nothing(inplace, gen):
    spatial = SPATIAL["3d"]
    for what, kw, exc, match in _bad_cases(gen):
        x = _x(spatial, torch.float32, gen, "contiguous")
        masks = kw.pop("masks", _maps(spatial, gen, torch.int32))
        x0, m0 = x.clone(), masks.clone()
        perm = torch.tensor(INVOLUTION, device=DEVICE)
        lam, target = edge_lam(B, gen, DEVICE, torch.float64), class_ids(B, K, gen, DEVICE)
        with pytest.raises(exc, match=match):
            if inplace:
                launcher.mix_inplace_triton(x, target, perm, lam, kw.get("boxes"), kw.get("cut_mask"), masks, K, 0.1,
                                            True)  # fmt: skip
            else:
                launcher.mix_triton(x, target, perm, lam, kw.get("boxes"), kw.get("cut_mask"), masks, K, 0.1, None,
                                    None, None, True)  # fmt: skip
        assert torch.equal(bits(x), bits(x0)), f"{what}: x changed"
        assert torch.equal(masks, m0), f"{what}: masks changed"


def test_inplace_with_a_perm_that_is_not_an_involution_writes_nothing(gen):
    spatial = SPATIAL["2d"]
    x = _x(spatial, torch.float32, gen, "contiguous")
    masks = _maps(spatial, gen, torch.uint8)
    x0, m0 = x.clone(), masks.clone()
    perm = torch.tensor(PERM, device=DEVICE)
    with pytest.raises(ValueError, match="involution"):
        launcher.mix_inplace_triton(x, class_ids(B, K, gen, DEVICE), perm, edge_lam(B, gen, DEVICE, torch.float64),
                                    _boxes(spatial, gen), None, masks, K, 0.1, True)  # fmt: skip
    assert torch.equal(bits(x), bits(x0)) and torch.equal(masks, m0)


def test_label_maps_too_long_for_int32_offsets_are_refused():
    """A row of label maps is addressed in bytes with int32 offsets: one past
    2**31 bytes is refused, naming masks (meta tensors: nothing is allocated)."""
    meta = torch.device("meta")
    T = 2**28 + 1  # int64 labels: 8 * T bytes > 2**31
    x = torch.empty((2, 1, T), device=meta)
    t = torch.empty(2, dtype=torch.int64, device=meta)
    perm = torch.empty(2, dtype=torch.int64, device=meta)
    masks = torch.empty((2, T), dtype=torch.int64, device=meta)
    with pytest.raises(ValueError, match="each sample of masks"):
        launcher.mix_triton(x, t, perm, torch.empty(2, device=meta), None, None, masks, 3, 0.0, None, None, None, False)


@pytest.mark.parametrize("inplace", [False, True], ids=["out_of_place", "inplace"])
def test_zero_channels_still_move_the_label_maps(inplace, gen):
    """x ``[B, 0, H, W]`` has no image blocks; its label maps still move."""
    spatial = SPATIAL["2d"]
    x = torch.empty((B, 0, *spatial), device=DEVICE)
    target, perm, lam = _batch(INVOLUTION, gen)
    boxes = _boxes(spatial, gen)
    masks = _maps(spatial, gen, torch.int64)
    want = mix_maps_reference(masks, perm, x.shape, boxes)
    if inplace:
        launcher.mix_inplace_triton(x, target, perm, lam, boxes, None, masks, K, 0.0, True)
        _assert_same(masks, want, "label maps (in place)")
    else:
        out, _, masks_out = _forward(x, target, perm, lam, boxes=boxes, masks=masks)
        assert out.shape == x.shape
        _assert_same(masks_out, want, "label maps")
