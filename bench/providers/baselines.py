"""What every case is measured against: the memory rooflines of the same run,
and the pure-PyTorch reference that every provider is checked with."""

from __future__ import annotations

import torch

from mixup_fused.reference import mix_reference

from ..cases import Inputs
from ..verify import check_mix
from .base import Prepared


def roofline_copy(inp: Inputs) -> Prepared:
    x = inp.x if inp.case.workload != "backward" else inp.x.clone()
    y = torch.empty_like(x)
    return Prepared(lambda: y.copy_(x), lambda: {"roofline": "y.copy_(x)"})


def roofline_inplace(inp: Inputs) -> Prepared:
    x = inp.x.clone()
    # Alternate 0.5 and 2.0 so that repeated calls neither underflow to denormals nor change the cost.
    state = {"k": 0}

    def fn():
        state["k"] ^= 1
        return x.mul_(0.5 if state["k"] else 2.0)

    return Prepared(fn, lambda: {"roofline": "x.mul_(0.5)"})


def roofline_inplace_maps(inp: Inputs) -> Prepared:
    """The in-place roofline over x and the label maps (and ClassMix's cut
    mask): each changed in place by one elementwise pass, whose repeated calls
    neither change the cost nor drift (``x`` alternates ``* 0.5`` and ``* 2``;
    ``bitwise_not_`` and ``logical_not_`` undo themselves)."""
    x, maps = inp.x.clone(), inp.maps.clone()
    cut = inp.cut_mask.clone() if inp.cut_mask is not None else None
    state = {"k": 0}

    def fn():
        state["k"] ^= 1
        x.mul_(0.5 if state["k"] else 2.0)
        maps.bitwise_not_()
        if cut is not None:
            cut.logical_not_()

    tensors = [t for t in (x, maps, cut) if t is not None]
    nbytes = sum(2 * t.numel() * t.element_size() for t in tensors)
    what = "x.mul_(0.5), maps.bitwise_not_()" + (", cut_mask.logical_not_()" if cut is not None else "")
    return Prepared(fn, lambda: {"roofline": what}, roofline_bytes=nbytes)


def roofline_convert(inp: Inputs) -> Prepared:
    y = torch.empty(inp.x.shape, dtype=inp.case.out_dtype, device=inp.x.device)
    return Prepared(lambda: y.copy_(inp.x), lambda: {"roofline": f"y_{inp.case.out_dtype}.copy_(x_uint8)"})


def roofline_collate(inp: Inputs) -> Prepared:
    """A plain uint8 collate of the same samples (what a DataLoader does without mixing)."""

    def fn():
        return torch.stack([torch.from_numpy(im) for im, _ in inp.samples])

    return Prepared(fn, lambda: {"roofline": "torch.stack(uint8 samples)"})


def reference(inp: Inputs) -> Prepared:
    c = inp.case
    lam = inp.lam_vec if c.workload == "elem" else torch.full_like(inp.lam_vec, inp.lam)

    def fn():
        ls = c.label_smoothing
        return mix_reference(inp.x, inp.target, inp.perm, lam, num_classes=c.num_classes, label_smoothing=ls)

    return Prepared(fn, lambda: check_mix(inp, *fn(), inp.perm, lam))
