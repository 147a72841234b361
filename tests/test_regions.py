"""CutMix of any spatial rank, free-form cut masks and label maps, through
:func:`mixup_fused.mix`, on every backend against the reference.

A region is where a row takes its partner: a box ``[B, 2n]`` (``(lo, hi)``
per spatial dim, ``NO_BOX`` rows blended with lam) or a cut mask. Label maps
move with the region, never blended. The ladder of the 2-D tests applies:
bit for bit against the reference, outputs poisoned, in place equal to out of
place, gradients, opcheck, torch.compile, bad input that names the argument
and changes nothing.
"""

from __future__ import annotations

import pytest
import torch
from conftest import CPU_BACKENDS, assert_matches, bits, edge_lam, random_involution, random_perm
from hypothesis import given, settings
from hypothesis import strategies as st

import mixup_fused
from mixup_fused.reference import (
    mix_backward_reference,
    mix_inplace_reference,
    mix_maps_reference,
    mix_reference,
)

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
# Spatial shapes of each rank, small enough for the Triton interpreter.
SPATIAL = {1: (37,), 2: (7, 9), 3: (3, 5, 6)}
MAP_DTYPES = [torch.int64, torch.int32, torch.uint8]
B = 6
K = 5


def _x(spatial, dtype, gen, layout="contiguous", C=3):
    x = torch.randn((B, C, *spatial), generator=gen).to(dtype)
    if layout == "channels_last":
        order = (0,) + tuple(range(2, x.dim())) + (1,)
        inverse = tuple(order.index(d) for d in range(x.dim()))
        x = x.permute(order).contiguous().permute(inverse)

    return x


def edge_boxes_nd(spatial, gen, perm) -> torch.Tensor:
    """int64 ``[B, 2n]``: along perm's cycles rows are cut (C) or blended (N,
    ``NO_BOX``) so that cut rows meet blended partners; the cut rows take the
    edge intervals of each dim (first and last index, the whole extent, an
    empty interval) before random ones."""
    n = len(spatial)
    edges = [lambda s: (0, 1), lambda s: (s - 1, s), lambda s: (0, s), lambda s: (s // 2, s // 2)]
    kinds = "CNCCN"
    rows, cuts = [], 0
    for i in range(B):
        if kinds[i % len(kinds)] == "N" and perm[i] != i:
            rows.append([-1] * (2 * n))
            continue
        row = []
        for d, s in enumerate(spatial):
            if cuts < len(edges):
                row.extend(edges[(cuts + d) % len(edges)](s))
            else:
                lo, hi = sorted(torch.randint(0, s + 1, (2,), generator=gen).tolist())
                row.extend((lo, hi))
        cuts += 1
        rows.append(row)
    return torch.tensor(rows, dtype=torch.int64)


def _maps(spatial, dtype, gen, channel_dim=False):
    m = torch.randint(0, 20, (B, *spatial), generator=gen)
    m[:, ..., 0] = 255  # an ignore label moves like any other
    m = m.to(dtype)
    return m.unsqueeze(1) if channel_dim else m


def _cut_mask(spatial, gen, dtype=torch.bool, channel_dim=False):
    c = torch.rand((B, *spatial), generator=gen) < 0.4
    c[0] = False  # a row that keeps everything
    c[1] = True  # a row that takes its partner everywhere
    c = c.to(dtype)
    return c.unsqueeze(1) if channel_dim else c


def _targets(gen):
    return torch.randint(0, K, (B,), generator=gen)


def _on(device, *ts):
    return [t.to(device) if isinstance(t, torch.Tensor) else t for t in ts]


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_cutmix_any_rank_matches_reference(device, backend, rank, dtype, layout, gen, poison_outputs):
    spatial = SPATIAL[rank]
    x = _x(spatial, dtype, gen, layout)
    perm = random_perm(B, gen)
    boxes = edge_boxes_nd(spatial, gen, perm)
    lam = edge_lam(B, gen)
    target = _targets(gen)
    x, perm, boxes, lam, target = _on(device, x, perm, boxes, lam, target)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, boxes=boxes, backend=backend)
    want_x, want_y = mix_reference(x, target, perm, lam, num_classes=K, boxes=boxes)
    assert_matches(out, want_x, backend=backend, what=f"{rank}-d images")
    assert_matches(y, want_y, backend=backend, what="targets")
    assert out.stride() == mixup_fused._layout.empty_out_like(x, dtype).stride(), "the output keeps x's layout"


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("map_dtype", MAP_DTYPES)
@pytest.mark.parametrize("region", ["boxes", "cut_mask", "none"])
def test_label_maps_move_with_the_cut(device, backend, rank, dtype, map_dtype, region, gen, poison_outputs):
    spatial = SPATIAL[rank]
    x = _x(spatial, dtype, gen)
    perm = random_perm(B, gen)
    maps = _maps(spatial, map_dtype, gen, channel_dim=rank == 2)
    kw = {}
    if region == "boxes":
        kw["boxes"] = edge_boxes_nd(spatial, gen, perm)
    elif region == "cut_mask":
        kw["cut_mask"] = _cut_mask(spatial, gen)
    lam = edge_lam(B, gen)
    target = _targets(gen)
    x, perm, maps, lam, target = _on(device, x, perm, maps, lam, target)
    kw = {k: v.to(device) for k, v in kw.items()}
    before = maps.clone()
    out, y, maps_out = mixup_fused.mix(x, target, perm, lam, num_classes=K, masks=maps, backend=backend, **kw)
    want_x, want_y, want_m = mix_reference(x, target, perm, lam, num_classes=K, masks=maps, **kw)
    assert_matches(out, want_x, backend=backend, what="images")
    assert_matches(y, want_y, backend=backend, what="targets")
    assert maps_out.dtype == map_dtype and maps_out.shape == maps.shape
    assert torch.equal(maps_out, want_m), "label maps"
    assert torch.equal(maps, before), "out of place leaves the maps alone"
    # Every label of the output is one of the two rows' labels at that pixel.
    m, p = maps.reshape(B, -1), maps[perm].reshape(B, -1)
    o = maps_out.reshape(B, -1)
    assert bool(((o == m) | (o == p)).all())


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.uint8])
def test_cut_mask_matches_reference(device, backend, rank, dtype, mask_dtype, gen, poison_outputs):
    spatial = SPATIAL[rank]
    x = _x(spatial, dtype, gen, "channels_last" if rank == 3 else "contiguous")
    perm = random_perm(B, gen)
    cut = _cut_mask(spatial, gen, mask_dtype, channel_dim=rank == 1)
    lam = 1.0 - cut.reshape(B, -1).double().mean(1)  # the exact area weight
    target = _targets(gen)
    x, perm, cut, lam, target = _on(device, x, perm, cut, lam, target)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, cut_mask=cut, backend=backend)
    want_x, want_y = mix_reference(x, target, perm, lam, num_classes=K, cut_mask=cut)
    assert_matches(out, want_x, backend=backend, what="images")
    assert_matches(y, want_y, backend=backend, what="targets")
    # A cut pixel is a copy: the exact bits of one of the two rows.
    sel = cut.reshape(B, 1, *spatial).bool().expand_as(x)
    assert torch.equal(bits(out[sel]), bits(x[perm][sel]))
    assert torch.equal(bits(out[~sel]), bits(x[~sel]))


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("region", ["boxes", "cut_mask"])
def test_inplace_images_and_maps_match_reference(device, backend, rank, dtype, region, gen):
    spatial = SPATIAL[rank]
    x = _x(spatial, dtype, gen, "channels_last" if rank == 2 else "contiguous")
    perm = random_involution(B, gen)
    maps = _maps(spatial, torch.int64, gen)
    lam = edge_lam(B, gen)
    kw = {"boxes": edge_boxes_nd(spatial, gen, perm)} if region == "boxes" else {"cut_mask": _cut_mask(spatial, gen)}
    target = _targets(gen)
    x, perm, maps, lam, target = _on(device, x, perm, maps, lam, target)
    kw = {k: v.to(device) for k, v in kw.items()}
    want_x, want_m = x.clone(), maps.clone()
    mix_inplace_reference(want_x, perm, lam, masks=want_m, **kw)
    want_y = mix_reference(x, target, perm, lam, num_classes=K, **kw)[1]
    x_ptr, m_ptr = x.data_ptr(), maps.data_ptr()
    out, y, maps_out = mixup_fused.mix(
        x, target, perm, lam, num_classes=K, masks=maps, inplace=True, backend=backend, **kw
    )
    assert out is x and maps_out is maps and x.data_ptr() == x_ptr and maps.data_ptr() == m_ptr
    assert_matches(x, want_x, backend=backend, what="images in place")
    assert torch.equal(maps, want_m), "maps in place"
    assert_matches(y, want_y, backend=backend, what="targets")


def test_inplace_equals_out_of_place_for_every_region(backend, gen):
    for rank, spatial in SPATIAL.items():
        x = _x(spatial, torch.float32, gen)
        perm = random_involution(B, gen)
        lam = torch.rand(B, generator=gen)  # no lam == 1 rows: both paths write every row
        maps = _maps(spatial, torch.uint8, gen)
        for kw in ({"boxes": edge_boxes_nd(spatial, gen, perm)}, {"cut_mask": _cut_mask(spatial, gen)}):
            out, y, m = mixup_fused.mix(x, None, perm, lam, masks=maps, backend=backend, **kw)
            x2, m2 = x.clone(), maps.clone()
            mixup_fused.mix(x2, None, perm, lam, masks=m2, inplace=True, backend=backend, **kw)
            assert y is None
            assert torch.equal(bits(out), bits(x2)), f"{rank}-d {list(kw)}"
            assert torch.equal(m, m2)


def test_only_the_maps(backend, gen):
    """``target=None``: images and maps, no targets (y is None)."""
    spatial = SPATIAL[2]
    x = _x(spatial, torch.float32, gen)
    perm = random_perm(B, gen)
    maps = _maps(spatial, torch.int64, gen)
    boxes = edge_boxes_nd(spatial, gen, perm)
    out, y, m = mixup_fused.mix(x, None, perm, 0.5, boxes=boxes, masks=maps, backend=backend)
    assert y is None
    assert torch.equal(m, mix_maps_reference(maps, perm, x.shape, boxes))
    out2, y2 = mixup_fused.mix(x, None, perm, 0.5, boxes=boxes, backend=backend)
    assert y2 is None and torch.equal(bits(out), bits(out2))


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("region", ["boxes", "cut_mask"])
def test_gradients_through_any_region(device, backend, rank, region, gen):
    spatial = SPATIAL[rank]
    x = _x(spatial, torch.float32, gen).to(device).requires_grad_(True)
    perm = random_perm(B, gen).to(device)
    lam = edge_lam(B, gen).to(device)
    if region == "boxes":
        kw = {"boxes": edge_boxes_nd(spatial, gen, perm.cpu()).to(device)}
    else:
        kw = {"cut_mask": _cut_mask(spatial, gen).to(device)}
    out, _ = mixup_fused.mix(x, _targets(gen).to(device), perm, lam, num_classes=K, backend=backend, **kw)
    g = torch.randn(out.shape, generator=gen).to(device)
    (gx,) = torch.autograd.grad(out, x, g)
    want = mix_backward_reference(g, perm, lam, **kw)
    if backend == "reference":  # autograd sums into zeros: only the sign of a zero differs
        gx, want = gx + 0.0, want + 0.0
    assert_matches(gx, want, backend=backend, what=f"grad x, {rank}-d {region}")


@pytest.mark.parametrize("region", ["boxes", "cut_mask"])
def test_gradcheck_any_rank(backend, region, gen):
    for rank in (1, 3):
        spatial = (5,) if rank == 1 else (2, 3, 2)
        x = torch.randn((4, 2, *spatial), generator=gen, dtype=torch.float64, requires_grad=True)
        perm = torch.tensor([2, 0, 3, 1])
        lam = torch.tensor([0.3, 1.0, 0.6, 0.25], dtype=torch.float64)
        if region == "boxes":
            row = [v for s in spatial for v in (0, max(1, s - 1))]
            kw = {"boxes": torch.tensor([row, [-1] * len(row), row, [-1] * len(row)])}
        else:
            kw = {"cut_mask": torch.rand((4, *spatial), generator=gen) < 0.5}
        target = torch.tensor([0, 1, 2, 0])

        def f(t, target=target, perm=perm, lam=lam, kw=kw):
            return mixup_fused.mix(t, target, perm, lam, num_classes=3, backend=backend, **kw)[0]

        # Under the Triton interpreter every evaluation is a slow launch: there the
        # check uses random projections (fast_mode), element by element on the others.
        fast = backend == "triton"
        assert torch.autograd.gradcheck(f, (x,), fast_mode=fast)
        assert torch.autograd.gradgradcheck(f, (x,), fast_mode=fast)


def _op_inputs(rank, gen, make_perm, maps_dtype, lam_dtype):
    """float32 x of ``rank`` spatial dims with ``make_perm(B, gen)``, lam,
    class ids, a cut mask and label maps of ``maps_dtype``."""
    spatial = SPATIAL[rank]
    x = _x(spatial, torch.float32, gen)
    perm = make_perm(B, gen)
    lam = torch.rand(B, generator=gen, dtype=lam_dtype)
    return spatial, x, perm, lam, _targets(gen), _cut_mask(spatial, gen), _maps(spatial, maps_dtype, gen)


def test_opcheck_new_arguments(gen):
    if not mixup_fused.HAS_CPP:
        pytest.skip("needs the C++ extension")
    spatial, x, perm, lam, target, cut, maps = _op_inputs(3, gen, random_involution, torch.int32, torch.float64)
    boxes = edge_boxes_nd(spatial, gen, perm)
    ops = torch.ops.mixup_fused
    for b, c in ((boxes, None), (None, cut)):
        torch.library.opcheck(ops.mix.default, (x, target, perm, lam, b, c, maps, K, 0.1, None, None, None, True))
        torch.library.opcheck(ops.mix_.default, (x.clone(), target, perm, lam, b, c, maps.clone(), K, 0.1, True))
        torch.library.opcheck(ops.mix_backward.default, (x, perm, lam, b, c))


def test_compiled_step_with_maps_and_cut_mask_equals_eager(gen):
    if not mixup_fused.HAS_CPP:
        pytest.skip("needs the C++ extension")
    _, x, perm, lam, target, cut, maps = _op_inputs(2, gen, random_perm, torch.int64, torch.float32)

    def step(x, cut, maps):
        out, y, m = mixup_fused.mix(x, target, perm, lam, num_classes=K, cut_mask=cut, masks=maps, check=False)
        return out.sum(dim=1), y, m

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(x, cut, maps), step(x, cut, maps), strict=True):
        assert torch.equal(got, want)


# ----------------------------------------------------------------------------
# Bad input: a clear error naming the argument; in place, nothing changes
# ----------------------------------------------------------------------------


def _bad_calls(gen):
    spatial = SPATIAL[2]
    x = _x(spatial, torch.float32, gen)
    perm = random_involution(B, gen)
    maps = _maps(spatial, torch.int64, gen)
    ok_boxes = edge_boxes_nd(spatial, gen, perm)
    cut = _cut_mask(spatial, gen)
    H, W = spatial
    far = ok_boxes.clone()
    far[0] = torch.tensor([0, H + 1, 0, 1])
    calls = [
        ("boxes", ValueError, {"boxes": ok_boxes[:, :2]}),  # the width of 1-d boxes for a 2-d x
        ("boxes", ValueError, {"boxes": far}),  # outside the extent
        ("exclusive", ValueError, {"boxes": ok_boxes, "cut_mask": cut}),
        ("cut_mask", TypeError, {"cut_mask": cut.float()}),
        ("cut_mask", ValueError, {"cut_mask": cut[:, :, :-1]}),
        ("masks", TypeError, {"masks": maps.float()}),
        ("masks", ValueError, {"masks": maps[:, :-1]}),
        ("masks", ValueError, {"masks": maps[:-1]}),
    ]
    return x, perm, maps, calls


def test_bad_regions_name_the_argument(backend, gen):
    x, perm, maps, calls = _bad_calls(gen)
    for name, err, kw in calls:
        kw = {"masks": maps, **kw}
        with pytest.raises(err, match=name):
            mixup_fused.mix(x, None, perm, 0.5, backend=backend, **kw)
    # 3-d boxes on a 3-d x, and a rank the kernels do not take.
    x5 = _x(SPATIAL[3], torch.float32, gen)
    with pytest.raises(ValueError, match=r"boxes.*\[6, 6\]"):
        mixup_fused.mix(x5, None, perm, 0.5, boxes=torch.zeros(B, 4, dtype=torch.int64), backend=backend)
    flat = torch.randn(B, 10)
    with pytest.raises(ValueError, match=r"boxes.*\[B, C, T\]"):
        mixup_fused.mix(flat, None, perm, 0.5, boxes=torch.zeros(B, 2, dtype=torch.int64), backend=backend)
    with pytest.raises(ValueError, match="cut_mask"):
        mixup_fused.mix(flat, None, perm, 0.5, cut_mask=torch.zeros(B, 10, dtype=torch.bool), backend=backend)


def test_bad_inplace_call_changes_nothing(backend, gen):
    x, perm, maps, calls = _bad_calls(gen)
    for name, err, kw in calls:
        kw = {"masks": maps, **kw}
        x0, m0 = x.clone(), kw["masks"].clone()
        with pytest.raises(err, match=name):
            mixup_fused.mix(x, None, perm, 0.5, inplace=True, backend=backend, **kw)
        assert torch.equal(bits(x), bits(x0)) and torch.equal(kw["masks"], m0), name


# ----------------------------------------------------------------------------
# Properties against the reference, on random shapes of every rank
# ----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    rank=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
    region=st.sampled_from(["boxes", "cut_mask"]),
    inplace=st.booleans(),
    layout=st.sampled_from(["contiguous", "channels_last"]),
)
def test_property_any_rank_any_region(rank, seed, region, inplace, layout):
    g = torch.Generator().manual_seed(seed)
    spatial = tuple(int(v) for v in torch.randint(1, 6, (rank,), generator=g))
    C = int(torch.randint(1, 4, (1,), generator=g))
    x = _x(spatial, torch.float32, g, layout, C=C)
    perm = random_involution(B, g) if inplace else random_perm(B, g)
    kw = {"boxes": edge_boxes_nd(spatial, g, perm)} if region == "boxes" else {"cut_mask": _cut_mask(spatial, g)}
    lam = edge_lam(B, g)
    maps = _maps(spatial, torch.int32, g)
    for backend in CPU_BACKENDS:
        if inplace:
            got_x, got_m = x.clone(), maps.clone()
            mixup_fused.mix(got_x, None, perm, lam, masks=got_m, inplace=True, backend=backend, **kw)
            want_x, want_m = x.clone(), maps.clone()
            mix_inplace_reference(want_x, perm, lam, masks=want_m, **kw)
        else:
            got_x, _, got_m = mixup_fused.mix(x, None, perm, lam, masks=maps, backend=backend, **kw)
            want_x, _, want_m = mix_reference(x, torch.zeros(B, dtype=torch.int64), perm, lam, num_classes=1,
                                              masks=maps, **kw)  # fmt: skip
        assert_matches(got_x, want_x, backend=backend, what=f"{backend} {spatial} {region}")
        assert torch.equal(got_m, want_m)
