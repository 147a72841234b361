"""The gradient of the image mix on every device and backend, against the
written-out formula (``mix_backward_reference``), bit for bit, on outputs
poisoned with NaN first (``poison_outputs``: the C++ kernel's ``at::empty``
too).

Cut rows, blended rows (``NO_BOX``), lam == 1 and lam == 0 rows and rows
paired with themselves meet each other every way (``edge_boxes`` along the
cycles of the pairing): the backward of row k reads its own box and that of
q = perm^-1[k], so a cut row whose partner is blended is where a kernel that
takes the wrong row's box goes wrong. Pairings that are not involutions (a
cycle, a random permutation) make q differ from perm[k].
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_grad_matches, assert_matches, edge_boxes, edge_lam, image, pairings, randn, random_perm

import mixup_fused
from mixup_fused.reference import mix_backward_reference

pytestmark = pytest.mark.usefixtures("poison_outputs")

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
PAIRINGS = ["random", "cycle", "flip", "identity"]


def _pairing(kind, B, gen, device):
    if kind == "random":
        return random_perm(B, gen, device)
    if kind == "cycle":  # perm[perm[i]] != i: the inverse is not perm itself
        return torch.roll(torch.arange(B, device=device), 3)
    if kind == "flip":  # timm's involution, the middle row paired with itself
        return torch.arange(B, device=device).flip(0)
    return torch.arange(B, device=device)


def _grad(backend, x, target, perm, lam, boxes, g):
    xg = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    out, y = mixup_fused.mix(xg, target, perm, lam, num_classes=3, boxes=boxes, backend=backend)
    assert not y.requires_grad
    (gx,) = torch.autograd.grad(out, xg, g)
    return gx


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("pairing", PAIRINGS)
def test_backward_matches_the_formula(device, backend, pairing, dtype, cutmix, layout, gen):
    B, C, H, W = 11, 2, 5, 7
    x = image((B, C, H, W), dtype, gen, device, layout)
    perm = _pairing(pairing, B, gen, device)
    lam = edge_lam(B, gen, device, torch.float64 if dtype == torch.float64 else torch.float32)
    boxes = edge_boxes(B, H, W, gen, device, perm) if cutmix else None
    if cutmix and pairing != "identity":
        assert {("C", "N"), ("N", "C")} <= pairings(boxes, perm), "cut rows with blended partners and back"
    g = randn((B, C, H, W), dtype, gen, device)
    gx = _grad(backend, x, torch.zeros(B, dtype=torch.int64, device=device), perm, lam, boxes, g)
    assert_grad_matches(gx, g, perm, lam, boxes, backend=backend)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (3, 2053), (2, 3, 4, 5, 6), (3, 3, 97, 131)], ids=str)
def test_backward_shapes(device, backend, shape, dtype, gen):
    """B = 1, flat rows of a prime length, 5-d, and rows of several C++ work
    units and Triton blocks, with a float lam: the weights rounded from the
    float64 value."""
    B = shape[0]
    x, g = randn(shape, dtype, gen, device), randn(shape, dtype, gen, device)
    perm = torch.roll(torch.arange(B, device=device), 1)
    target = torch.zeros(B, dtype=torch.int64, device=device)
    for lam in (0.3, 1.0, 0.0):
        gx = _grad(backend, x, target, perm, lam, None, g)
        lam_t = torch.full((B,), lam, dtype=torch.float64, device=device)
        assert_grad_matches(gx, g, perm, lam_t, None, backend=backend, what=f"grad x, lam={lam}")


@pytest.mark.skipif(not mixup_fused.HAS_CPP, reason="needs the C++ extension")
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_cpp_backward_op_writes_every_element(dtype, cutmix, gen):
    """The registered ``mix_backward`` op on CPU tensors, called directly: its
    output is allocated with ``at::empty``, which ``poison_outputs`` fills
    with NaN, so an element the C++ loops skip fails."""
    B, C, H, W = 10, 3, 6, 37
    grad = randn((B, C, H, W), dtype, gen)
    perm = random_perm(B, gen)
    lam = edge_lam(B, gen, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    boxes = edge_boxes(B, H, W, gen, perm=perm) if cutmix else None
    for g in (grad, grad.contiguous(memory_format=torch.channels_last)):
        out = torch.ops.mixup_fused.mix_backward(g, perm, lam, boxes, None)
        assert_matches(out, mix_backward_reference(grad, perm, lam, boxes), what="mix_backward", backend="cpp")


def test_poisoned_allocations_reach_aten_empty():
    """The poison is ATen's own ``fill_uninitialized_memory``: ``at::empty``
    (the C++ kernels' outputs, in every memory format) and ``torch.empty``
    (the Triton launchers') come back full of NaN, integers at their maximum."""
    from conftest import poisoned_allocations

    with poisoned_allocations():
        for t in (
            torch.empty(4, 3, 5, 7),
            torch.empty(4, 3, 5, 7, memory_format=torch.channels_last),
            torch.empty_like(torch.zeros(3, 9, dtype=torch.bfloat16)),
            torch.empty(6, 10, dtype=torch.float16),
        ):
            assert bool(torch.isnan(t).all())
        assert bool((torch.empty(5, dtype=torch.uint8) == 255).all())
