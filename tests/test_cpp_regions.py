"""The C++ CPU kernels on cut regions of any spatial rank: boxes over 1, 2 or
3 spatial dims, free-form cut masks and label maps, called directly through
the registered ops (``torch.ops.mixup_fused.mix`` / ``mix_`` /
``mix_backward``) and compared bit for bit with the reference
(``cut_region``, ``mix_images_reference``, ``mix_maps_reference``,
``mix_inplace_reference``, ``mix_backward_reference``).

Outputs the kernels allocate start poisoned (NaN, or the largest integer), so
an element left unwritten fails; in-place results are compared whole."""

from __future__ import annotations

import pytest
import torch
from conftest import bits, class_ids, edge_lam, randn, random_involution

import mixup_fused
from mixup_fused import _checks
from mixup_fused._layout import channels_last_order, empty_out_like
from mixup_fused.reference import (
    mix_backward_reference,
    mix_images_reference,
    mix_inplace_reference,
    mix_maps_reference,
    mix_targets_reference,
)

pytestmark = pytest.mark.skipif(not mixup_fused.HAS_CPP, reason="needs the C++ extension")

OPS = torch.ops.mixup_fused
FLOATS = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
# [B, C, *spatial] with awkward sizes: odd B, prime extents, vector tails.
SHAPES = {1: (7, 3, 37), 2: (7, 3, 5, 19), 3: (7, 2, 3, 4, 11)}
REGIONS = ["boxes", "cut_bool", "cut_u8_channel", "none"]
MAP_DTYPES = [torch.int64, torch.int32, torch.uint8]
IGNORE = 255
K = 10


# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------


def to_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``x`` contiguous, channels-last (the channel fastest, then the spatial
    dims in order: for 3-d x strides (C * T, 1, C)), or ``strided`` (dense in
    neither order: the kernels work on a contiguous copy)."""
    if layout == "contiguous":
        return x.contiguous()
    if layout == "channels_last":
        order = channels_last_order(x.dim())
        inverse = tuple(order.index(d) for d in range(x.dim()))
        return x.permute(order).contiguous().permute(inverse)
    assert layout == "strided"
    return x.transpose(0, 1).contiguous().transpose(0, 1)  # batch inside the channel: neither order


def perm_with_fixed_points(B, gen):
    """A random permutation (not an involution) with rows 0 and B - 1 paired with themselves."""
    rest = (torch.randperm(B - 2, generator=gen) + 1).tolist()
    return torch.tensor([0] + rest + [B - 1])


def region_boxes(B, spatial, gen):
    """int64 ``[B, 2n]``, one row per kind in turn: a random box, NO_BOX, the
    full extent, an empty box (lo == hi in the last dim), a single pixel at
    the far corner, a box empty in the first dim only."""
    n = len(spatial)
    rows = []
    for i in range(B):
        kind = i % 6
        row = []
        for d, size in enumerate(spatial):
            lo, hi = sorted(torch.randint(0, size + 1, (2,), generator=gen).tolist())
            if kind == 1:
                lo = hi = -1
            elif kind == 2:
                lo, hi = 0, size
            elif kind == 3 and d == n - 1:
                hi = lo
            elif kind == 4:
                lo, hi = size - 1, size
            elif kind == 5 and d == 0:
                lo = hi = size // 2
            row += [lo, hi]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.int64)


def region_args(region, B, spatial, gen):
    """(boxes, cut_mask) for ``region``: cut masks are random, with one row
    all set and one all clear."""
    if region == "boxes":
        return region_boxes(B, spatial, gen), None
    if region == "none":
        return None, None
    cut = torch.rand((B, *spatial), generator=gen) < 0.4
    cut[1] = True
    cut[2] = False
    if region == "cut_bool":
        return None, cut
    return None, (cut.to(torch.uint8) * 3).unsqueeze(1)  # uint8 [B, 1, *spatial], any nonzero cuts


def label_maps(B, spatial, dtype, gen, channel=False):
    """Labels 0..K-1 with the ignore label 255 here and there."""
    m = torch.randint(0, K, (B, *spatial), generator=gen)
    m[torch.rand((B, *spatial), generator=gen) < 0.1] = IGNORE
    m = m.to(dtype)
    return m.unsqueeze(1) if channel else m


def same_bits(actual, expected, what):
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if not torch.equal(bits(actual), bits(expected)):
        diff = (bits(actual) != bits(expected)).sum()
        raise AssertionError(f"{what}: {int(diff)} bytes differ from the reference")


def every_case(test):
    """Parametrise ``test`` over every rank, float dtype, layout and region."""
    for name, values, ids in (("region", REGIONS, None), ("layout", ["contiguous", "channels_last"], None),
                              ("dtype", FLOATS, str), ("rank", [1, 2, 3], None)):  # fmt: skip
        test = pytest.mark.parametrize(name, values, ids=ids)(test)
    return test


def case_inputs(rank, dtype, layout, region, gen, make_perm, lam_dtype=torch.float64):
    """x (or a gradient) in ``layout``, ``make_perm(B, gen)``, lam at the edges
    and the region's boxes or cut mask."""
    B, C, *spatial = SHAPES[rank]
    x = to_layout(randn((B, C, *spatial), dtype, gen), layout)
    perm = make_perm(B, gen)
    lam = edge_lam(B, gen, dtype=lam_dtype)
    boxes, cut = region_args(region, B, spatial, gen)
    return x, spatial, perm, lam, boxes, cut


def targets_and_maps(x, spatial, rank, dtype, gen, channel):
    """Class ids and label maps for x's batch (the map dtype varies with the case)."""
    target = class_ids(x.shape[0], K, gen)
    mdt = MAP_DTYPES[(rank + FLOATS.index(dtype)) % 3]
    return target, label_maps(x.shape[0], spatial, mdt, gen, channel=channel)


def op_mix(x, target, perm, lam, boxes=None, cut_mask=None, masks=None, eps=0.1, mean=None, std=None, odt=None):
    return OPS.mix(x, target, perm, lam, boxes, cut_mask, masks, K, eps, mean, std, odt, True)


def op_mix_(x, target, perm, lam, boxes=None, cut_mask=None, masks=None, eps=0.1):
    return OPS.mix_(x, target, perm, lam, boxes, cut_mask, masks, K, eps, True)


# ----------------------------------------------------------------------------
# Out of place: images, targets and maps in one call
# ----------------------------------------------------------------------------


@pytest.mark.usefixtures("poison_outputs")
@every_case
def test_mix_matches_reference(rank, dtype, layout, region, gen, isa):
    x, spatial, perm, lam, boxes, cut = case_inputs(rank, dtype, layout, region, gen, perm_with_fixed_points)
    target, masks = targets_and_maps(x, spatial, rank, dtype, gen, channel=rank == 2)
    out, y, maps = op_mix(x, target, perm, lam, boxes, cut, masks)
    same_bits(out, mix_images_reference(x, perm, lam, boxes, cut_mask=cut), "images")
    assert out.stride() == empty_out_like(x, dtype).stride(), "the output keeps x's layout"
    same_bits(y, mix_targets_reference(target, perm, lam, K, 0.1), "targets")
    same_bits(maps, mix_maps_reference(masks, perm, x.shape, boxes, cut), "maps")
    assert maps.is_contiguous()


@pytest.mark.usefixtures("poison_outputs")
def test_mix_without_masks_returns_an_empty_int64_map(gen):
    B, C, T = SHAPES[1]
    x = randn((B, C, T), torch.float32, gen)
    perm, lam = perm_with_fixed_points(B, gen), edge_lam(B, gen)
    _, _, maps = op_mix(x, class_ids(B, K, gen), perm, lam, region_boxes(B, (T,), gen))
    assert maps.dtype == torch.int64 and maps.shape == (0,)


@pytest.mark.usefixtures("poison_outputs")
@pytest.mark.parametrize("region", ["boxes", "cut_bool", "none"])
def test_maps_without_ignore_labels_are_fully_written(region, gen, isa):
    """uint8 maps are poisoned with 255, the ignore label: here no label is
    255, so an unwritten label shows."""
    B, C, D, H, W = SHAPES[3]
    x = randn((B, C, D, H, W), torch.float32, gen)
    perm, lam = perm_with_fixed_points(B, gen), edge_lam(B, gen)
    boxes, cut = region_args(region, B, (D, H, W), gen)
    masks = torch.randint(0, K, (B, D, H, W), generator=gen, dtype=torch.uint8)
    _, _, maps = op_mix(x, class_ids(B, K, gen), perm, lam, boxes, cut, masks)
    assert int(maps.max()) < K
    same_bits(maps, mix_maps_reference(masks, perm, x.shape, boxes, cut), "maps")


@pytest.mark.usefixtures("poison_outputs")
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_strided_inputs_are_copied_first(rank, gen):
    """x dense in neither order, a cut mask and maps with any strides."""
    B, C, *spatial = SHAPES[rank]
    x = to_layout(randn((B, C, *spatial), torch.float32, gen), "strided")
    assert not x.is_contiguous()
    perm, lam = perm_with_fixed_points(B, gen), edge_lam(B, gen, dtype=torch.float64)
    _, cut = region_args("cut_bool", B, spatial, gen)
    cut = cut.transpose(0, -1).contiguous().transpose(0, -1)
    masks = label_maps(B, spatial, torch.int32, gen).transpose(0, -1).contiguous().transpose(0, -1)
    out, _, maps = op_mix(x, class_ids(B, K, gen), perm, lam, None, cut, masks)
    same_bits(out, mix_images_reference(x, perm, lam, cut_mask=cut), "images")
    assert out.is_contiguous()
    same_bits(maps, mix_maps_reference(masks, perm, x.shape, None, cut), "maps")


@pytest.mark.usefixtures("poison_outputs")
@pytest.mark.parametrize("region", ["boxes", "cut_bool"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_uint8_normalised_with_cut_regions(layout, region, gen, isa):
    B, C, H, W = SHAPES[2]
    x = to_layout(torch.randint(0, 256, (B, C, H, W), generator=gen, dtype=torch.uint8), layout)
    mean, std = torch.tensor([120.0, 110.0, 100.0]), torch.tensor([50.0, 60.0, 70.0])
    perm, lam = perm_with_fixed_points(B, gen), edge_lam(B, gen)
    boxes, cut = region_args(region, B, (H, W), gen)
    for odt in (torch.float32, torch.bfloat16):
        out, _, _ = op_mix(x, class_ids(B, K, gen), perm, lam, boxes, cut, None, 0.0, mean, std, odt)
        same_bits(out, mix_images_reference(x, perm, lam, boxes, mean, std, odt, cut), f"images {odt}")


def test_cut_mask_rows_all_clear_and_all_set(gen):
    """A row whose mask is all clear is its own row bit for bit (no blend,
    whatever lam), one all set its partner's."""
    B, C, T = SHAPES[1]
    x = randn((B, C, T), torch.float32, gen)
    x[3, 0, 0] = -0.0
    perm, lam = perm_with_fixed_points(B, gen), torch.full((B,), 0.5, dtype=torch.float64)
    cut = torch.zeros(B, T, dtype=torch.bool)
    cut[1] = True
    out, _, _ = op_mix(x, class_ids(B, K, gen), perm, lam, None, cut)
    same_bits(out[3], x[3], "clear row")
    same_bits(out[1], x[perm[1]], "set row")


# ----------------------------------------------------------------------------
# In place: x and the maps, each pair read once and written once
# ----------------------------------------------------------------------------


@every_case
def test_inplace_matches_reference(rank, dtype, layout, region, gen, isa):
    # (random_involution leaves rows paired with themselves, most draws)
    x, spatial, perm, lam, boxes, cut = case_inputs(rank, dtype, layout, region, gen, random_involution)
    target, masks = targets_and_maps(x, spatial, rank, dtype, gen, channel=rank == 3)
    want_x, want_m = x.clone(), masks.clone()
    mix_inplace_reference(want_x, perm, lam, boxes, cut, want_m)
    x_ptr, strides = x.data_ptr(), x.stride()
    y = op_mix_(x, target, perm, lam, boxes, cut, masks)
    assert x.data_ptr() == x_ptr and x.stride() == strides
    same_bits(x, want_x, "images")
    same_bits(masks, want_m, "maps")
    same_bits(y, mix_targets_reference(target, perm, lam, K, 0.1), "targets")


def test_inplace_pairs_with_overlapping_boxes_and_every_kind(gen):
    """Pairs whose boxes overlap (each row takes the other's pixels where they
    cross), a cut row paired with a blended one, a self-paired cut row, lam == 1."""
    B, C, D, H, W = 6, 2, 4, 5, 9
    x = randn((B, C, D, H, W), torch.float32, gen)
    masks = label_maps(B, (D, H, W), torch.int64, gen)
    perm = torch.tensor([1, 0, 3, 2, 4, 5])
    boxes = torch.tensor(
        [[0, 3, 1, 4, 2, 7], [1, 4, 0, 3, 5, 9], [0, 4, 0, 5, 0, 9], [-1] * 6, [0, 2, 0, 2, 0, 2], [-1] * 6]
    )
    lam = torch.tensor([0.3, 0.6, 0.5, 1.0, 0.2, 0.7], dtype=torch.float64)
    want_x, want_m = x.clone(), masks.clone()
    mix_inplace_reference(want_x, perm, lam, boxes, None, want_m)
    op_mix_(x, class_ids(B, K, gen), perm, lam, boxes, None, masks)
    same_bits(x, want_x, "images")
    same_bits(masks, want_m, "maps")


def test_inplace_non_contiguous_masks_are_written_back(gen):
    B, C, H, W = 6, 3, 5, 7
    x = randn((B, C, H, W), torch.float32, gen)
    masks = label_maps(B, (W, H), torch.int64, gen).transpose(1, 2)  # [B, H, W], not contiguous
    perm = torch.tensor([3, 2, 1, 0, 5, 4])
    _, cut = region_args("cut_bool", B, (H, W), gen)
    lam = edge_lam(B, gen)
    want_x, want_m = x.clone(), masks.clone()
    mix_inplace_reference(want_x, perm, lam, None, cut, want_m)
    op_mix_(x, class_ids(B, K, gen), perm, lam, None, cut, masks)
    assert not masks.is_contiguous()
    same_bits(x, want_x, "images")
    same_bits(masks, want_m, "maps")


# ----------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------


@pytest.mark.usefixtures("poison_outputs")
@every_case
def test_backward_matches_reference(rank, dtype, layout, region, gen, isa):
    lam_dtype = torch.float64 if dtype == torch.float64 else torch.float32

    def cycle(B, gen):  # not an involution: q = perm^-1 matters
        return torch.roll(torch.arange(B), 2)

    g, _, perm, lam, boxes, cut = case_inputs(rank, dtype, layout, region, gen, cycle, lam_dtype)
    g[(0,) * g.dim()] = -0.0  # (in a cut: 0 + -0 is +0, as the reference sums)
    out = OPS.mix_backward(g, perm, lam, boxes, cut)
    same_bits(out, mix_backward_reference(g, perm, lam, boxes, cut), "backward")
    assert out.stride() == empty_out_like(g, dtype).stride()


GRAD_CASES = ["boxes_1d", "boxes_3d", "boxes_3d_channels_last", "cut_2d", "cut_1d_channels_last", "cut_3d"]


def _grad_case(case, gen):
    rank = int(case.split("_")[1][0])
    spatial = {1: (5,), 2: (3, 4), 3: (2, 3, 3)}[rank]
    B, C = 4, 2
    x = randn((B, C, *spatial), torch.float64, gen)
    if case.endswith("channels_last"):
        x = to_layout(x, "channels_last")
    boxes, cut = region_args("boxes" if case.startswith("boxes") else "cut_bool", B, spatial, gen)
    perm = torch.tensor([1, 2, 3, 0])  # a 4-cycle: the backward needs perm^-1
    lam = torch.tensor([0.3, 0.8, 1.0, 0.0], dtype=torch.float64)
    return x, perm, lam, boxes, cut


@pytest.mark.parametrize("case", GRAD_CASES)
def test_gradcheck_through_the_op(case, gen):
    x, perm, lam, boxes, cut = _grad_case(case, gen)
    target = class_ids(x.shape[0], K, gen)

    def f(inp):
        return op_mix(inp, target, perm, lam, boxes, cut)[0]

    assert torch.autograd.gradcheck(f, (x.requires_grad_(),))
    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.usefixtures("poison_outputs")
@pytest.mark.parametrize("region", ["boxes", "cut_bool"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_rows_split_into_several_units(layout, region, gen):
    """Samples of several work units each (lines split between threads) for
    the images and for the maps, with 1 and 2 threads: the same bits."""
    B, C, D, H, W = 4, 2, 9, 40, 101
    x = to_layout(randn((B, C, D, H, W), torch.float32, gen), layout)
    perm = torch.tensor([2, 3, 0, 1])
    lam = edge_lam(B, gen, dtype=torch.float64)
    boxes, cut = region_args(region, B, (D, H, W), gen)
    masks = label_maps(B, (D, H, W), torch.int32, gen)
    target = class_ids(B, K, gen)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out, _, maps = op_mix(x, target, perm, lam, boxes, cut, masks)
            same_bits(out, mix_images_reference(x, perm, lam, boxes, cut_mask=cut), f"images, {n} threads")
            same_bits(maps, mix_maps_reference(masks, perm, x.shape, boxes, cut), f"maps, {n} threads")
            grad = OPS.mix_backward(x, perm, lam, boxes, cut)
            same_bits(grad, mix_backward_reference(x, perm, lam, boxes, cut), f"backward, {n} threads")
            xi, mi = x.clone(), masks.clone()
            want_x, want_m = x.clone(), masks.clone()
            mix_inplace_reference(want_x, perm, lam, boxes, cut, want_m)
            op_mix_(xi, target, perm, lam, boxes, cut, mi)
            same_bits(xi, want_x, f"in place, {n} threads")
            same_bits(mi, want_m, f"maps in place, {n} threads")
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------
# opcheck
# ----------------------------------------------------------------------------


def _opcheck_case(case, gen):
    rank = {"boxes_1d_maps": 1, "cut_3d_maps": 3, "boxes_3d_cl": 3, "cut_2d_cl_u8": 2, "none_maps": 2}[case]
    B, C, *spatial = SHAPES[rank]
    x = randn((B, C, *spatial), torch.float32, gen)
    if "_cl" in case:
        x = to_layout(x, "channels_last")
    region = "boxes" if case.startswith("boxes") else "none" if case.startswith("none") else "cut_bool"
    if case.endswith("u8"):
        region = "cut_u8_channel"
    boxes, cut = region_args(region, B, spatial, gen)
    masks = label_maps(B, spatial, torch.int64, gen) if "maps" in case else None
    return x, boxes, cut, masks


OPCHECK_CASES = ["boxes_1d_maps", "cut_3d_maps", "boxes_3d_cl", "cut_2d_cl_u8", "none_maps"]
NO_AUTOGRAD_WARNING = "ignore:.*an autograd kernel was not registered:UserWarning"


OPCHECK_OPS = [("mix", False), ("mix", True), ("mix_", False), ("mix_backward", False), ("mix_backward", True)]


@pytest.mark.filterwarnings(NO_AUTOGRAD_WARNING)
@pytest.mark.parametrize("op, requires_grad", OPCHECK_OPS, ids=lambda v: {True: "grad", False: "no_grad"}.get(v, v))
@pytest.mark.parametrize("case", OPCHECK_CASES)
def test_opcheck(op, requires_grad, case, gen):
    x, boxes, cut, masks = _opcheck_case(case, gen)
    B = x.shape[0]
    if op == "mix":
        args = (x.requires_grad_(requires_grad), class_ids(B, K, gen), perm_with_fixed_points(B, gen),
                edge_lam(B, gen, dtype=torch.float64), boxes, cut, masks, K, 0.1, None, None, None, True)  # fmt: skip
    elif op == "mix_":
        args = (x, class_ids(B, K, gen), random_involution(B, gen), edge_lam(B, gen), boxes, cut, masks, K, 0.1, True)
    else:
        args = (x.double().requires_grad_(requires_grad), perm_with_fixed_points(B, gen),
                edge_lam(B, gen, dtype=torch.float64), boxes, cut)  # fmt: skip
    torch.library.opcheck(getattr(OPS, op).default, args)


# ----------------------------------------------------------------------------
# Bad input: the type and the argument named, the Python rules' message, and
# in place, x and masks untouched
# ----------------------------------------------------------------------------


def _good(rank=3):
    g = torch.Generator().manual_seed(5)
    B, C, *spatial = SHAPES[rank]
    return dict(
        x=randn((B, C, *spatial), torch.float32, g),
        target=class_ids(B, K, g),
        perm=torch.tensor([1, 0, 3, 2, 4, 6, 5]),
        lam=torch.rand(B, generator=g, dtype=torch.float64),
        boxes=region_boxes(B, spatial, g),
        cut_mask=None,
        masks=label_maps(B, spatial, torch.int64, g),
    )


def _cut(rank=3):
    B, C, *spatial = SHAPES[rank]
    return torch.zeros((B, *spatial), dtype=torch.bool)


def _with_box(rank, i, row):
    a = _good(rank)
    a["boxes"] = a["boxes"].clone()
    a["boxes"][i] = torch.tensor(row)
    return a


BAD = {
    # name: (arguments, error type, what the message must name, the Python rules apply to it)
    "boxes_width_for_rank": (lambda: dict(_good(3), boxes=torch.zeros(7, 4, dtype=torch.int64)), ValueError,
                             "boxes must have shape [B, 2 * spatial dims] = [7, 6]"),
    "boxes_width_1d": (lambda: dict(_good(1), boxes=torch.zeros(7, 4, dtype=torch.int64)), ValueError,
                       "boxes must have shape [B, 2 * spatial dims] = [7, 2]"),
    "boxes_float": (lambda: dict(_good(2), boxes=torch.zeros(7, 4)), TypeError, "boxes must be an integer"),
    "boxes_past_the_end_1d": (lambda: _with_box(1, 2, [3, 38]), ValueError, "boxes[2] = (3, 38): spatial dim 0"),
    "boxes_inverted_3d": (lambda: _with_box(3, 4, [0, 1, 0, 1, 5, 4]), ValueError,
                          "boxes[4] = (0, 1, 0, 1, 5, 4): spatial dim 2"),
    "boxes_negative_depth": (lambda: _with_box(3, 0, [-1, 1, 0, 1, 0, 1]), ValueError, "spatial dim 0 needs"),
    "boxes_half_no_box": (lambda: _with_box(3, 0, [-1, -1, -1, -1, -1, 0]), ValueError, "boxes[0]"),
    "boxes_past_the_bottom_2d": (lambda: _with_box(2, 3, [0, 6, 0, 1]), ValueError,
                                 "boxes[3] = (0, 6, 0, 1) must satisfy 0 <= y0 <= y1 <= H = 5"),
    "boxes_rank_2": (lambda: dict(_good(1), x=torch.zeros(7, 37), masks=None,
                                  boxes=torch.zeros(7, 2, dtype=torch.int64)),
                     ValueError, "boxes (CutMix) need x of shape"),
    "boxes_rank_6": (lambda: dict(_good(3), x=torch.zeros(7, 1, 1, 3, 4, 11), masks=None), ValueError,
                     "boxes (CutMix) need x of shape"),
    "cut_mask_and_boxes": (lambda: dict(_good(3), cut_mask=_cut()), ValueError, "cut_mask and boxes are exclusive"),
    "cut_mask_float": (lambda: dict(_good(3), boxes=None, cut_mask=_cut().float()), TypeError,
                       "cut_mask must be a bool"),
    "cut_mask_spatial": (lambda: dict(_good(3), boxes=None, cut_mask=_cut()[:, :, :, :5]), ValueError,
                         "cut_mask must have shape [B, *spatial] = [7, 3, 4, 11]"),
    "cut_mask_batch": (lambda: dict(_good(3), boxes=None, cut_mask=_cut()[:5]), ValueError, "cut_mask must have shape"),
    "cut_mask_two_channels": (lambda: dict(_good(3), boxes=None, cut_mask=_cut().unsqueeze(1).expand(7, 2, 3, 4, 11)),
                              ValueError, "cut_mask must have shape"),
    "cut_mask_rank_2": (lambda: dict(_good(1), x=torch.zeros(7, 37), boxes=None, masks=None,
                                     cut_mask=torch.zeros(7, 37, dtype=torch.bool)), ValueError,
                        "cut_mask need x of shape"),
    "masks_float": (lambda: dict(_good(3), masks=_good(3)["masks"].float()), TypeError, "masks must be an integer"),
    "masks_int16": (lambda: dict(_good(3), masks=_good(3)["masks"].short()), TypeError, "masks must be an integer"),
    "masks_batch": (lambda: dict(_good(3), masks=_good(3)["masks"][:6]), ValueError, "masks must have shape"),
    "masks_spatial": (lambda: dict(_good(2), masks=_good(2)["masks"][:, :4]), ValueError,
                      "masks must have shape [B, *spatial] = [7, 5, 19]"),
    "masks_rank_2": (lambda: dict(_good(1), x=torch.zeros(7, 37), boxes=None,
                                  masks=torch.zeros(7, 37, dtype=torch.long)),
                     ValueError, "masks need x of shape"),
}  # fmt: skip


def _python_rules(a, inplace):
    """The message of mixup_fused/_checks.py for the same arguments, or None."""
    try:
        _checks.check_args(a["x"], a["target"], a["perm"], a["lam"], a["boxes"], K, 0.1, inplace=inplace,
                           cut_mask=a["cut_mask"], masks=a["masks"])  # fmt: skip
        _checks.check_values(a["x"], a["target"], a["perm"], a["lam"], a["boxes"], K, inplace=inplace)
    except (TypeError, ValueError) as err:
        return type(err), str(err)
    return None


@pytest.mark.parametrize("inplace", [False, True], ids=["out_of_place", "inplace"])
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_refused_and_changes_nothing(name, inplace):
    make, err, words = BAD[name]
    a = make()
    before = {k: v.clone() for k, v in a.items() if isinstance(v, torch.Tensor)}
    with pytest.raises(err, match=None) as info:
        if inplace:
            op_mix_(a["x"], a["target"], a["perm"], a["lam"], a["boxes"], a["cut_mask"], a["masks"])
        else:
            op_mix(a["x"], a["target"], a["perm"], a["lam"], a["boxes"], a["cut_mask"], a["masks"])
    message = str(info.value)
    assert message.startswith("mixup_fused: ") and words in message, message
    for k, v in before.items():
        assert torch.equal(bits(a[k]), bits(v)), f"{k} changed by a call that raised"
    # The same rule in Python: the same type, and the same message where no dtype is printed.
    python = _python_rules(a, inplace)
    assert python is not None and python[0] is err, f"the Python rules say {python}"
    if "must be a" not in words and "must be an" not in words:
        assert python[1] == message.splitlines()[0], f"C++: {message}\nPython: {python[1]}"


def test_bad_input_late_in_place_changes_nothing():
    """The last checks (class ids, the involution) fail after the maps and
    the boxes were read: x and masks are still untouched."""
    for change in (dict(target=torch.tensor([0, 1, 2, 3, 4, 5, 99])), dict(perm=torch.tensor([1, 2, 0, 3, 4, 5, 6]))):
        a = dict(_good(3), **change)
        x0, m0 = a["x"].clone(), a["masks"].clone()
        with pytest.raises(ValueError):
            op_mix_(a["x"], a["target"], a["perm"], a["lam"], a["boxes"], None, a["masks"])
        assert torch.equal(bits(a["x"]), bits(x0)) and torch.equal(a["masks"], m0)


def test_backward_checks_the_regions():
    a = _good(3)
    with pytest.raises(ValueError, match="boxes must have shape"):
        OPS.mix_backward(a["x"], a["perm"], a["lam"], a["boxes"][:, :4], None)
    with pytest.raises(ValueError, match="exclusive"):
        OPS.mix_backward(a["x"], a["perm"], a["lam"], a["boxes"], _cut())
    with pytest.raises(TypeError, match="cut_mask"):
        OPS.mix_backward(a["x"], a["perm"], a["lam"], None, _cut().int())
