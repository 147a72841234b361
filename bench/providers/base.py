"""What a provider is, and the pieces its families share.

A provider's ``prepare(inputs)`` returns ``Prepared(fn, check)``: ``fn()`` is
the timed call (it may draw random numbers, as its library does in a training
step), and ``check()`` runs it once with known or recoverable draws and compares
the result with the reference (``bench/verify.py``). A provider that does not
apply raises ``Skip`` with the reason.

``kind`` names the roofline a provider is held against: ``copy`` (out of place:
``y.copy_(x)`` into a preallocated ``y``), ``inplace`` (``x.mul_(0.5)``; with
label maps, also the maps and the cut mask changed in place) or ``convert``
(uint8 in, float out: ``y.copy_(x_uint8)``). The segmentation, audio and video
cases have only the in-place roofline: their out-of-place peers are held
against it too (the note of their row says so).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..cases import Case, Inputs
from ..verify import check_mix_inferred


class Skip(Exception):
    """The provider does not apply here (missing package, unsupported input)."""


@dataclass
class Prepared:
    fn: Callable[[], object]
    check: Callable[[], dict]
    note: str = ""
    # A roofline that moves other bytes than its case's x (e.g. x and label
    # maps) declares them: read + written, as ``fn`` moves them.
    roofline_bytes: int | None = None


@dataclass
class Provider:
    key: str
    label: str
    kind: str  # copy | inplace | convert
    workloads: tuple[str, ...]
    prepare: Callable[[Inputs], Prepared]
    quick: bool = True
    timm_key: str | None = None  # the timm provider this one is compared with (default: the case's)
    roofline: bool = False
    applies: Callable[[Case], bool] | None = None  # a subset of the workload's cases (to bound the run time)


def seed_everything(seed: int = 1234) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def mean_std_4d(inp: Inputs):
    return inp.mean.view(1, -1, 1, 1), inp.std.view(1, -1, 1, 1)


def lam_tensor(inp: Inputs) -> torch.Tensor:
    """lam as a 0-d tensor: a Python float would make torch.compile recompile on every new value."""
    return torch.tensor(inp.lam, dtype=torch.float32, device=inp.x.device)


def require_images(inp: Inputs, who: str) -> None:
    if inp.x.dim() != 4:
        raise Skip(f"{who} takes [B, C, H, W] images")


def inferred_mixer(inp: Inputs, mixer, *, cutmix: bool, lam_atol: float = 1e-5, rows=None) -> Prepared:
    """A timm-style in-place ``mixer(x, target) -> (x, y)`` that draws its own
    lam (and box), timed on a private copy of x and checked from its output."""
    y_atol = max(2e-6, lam_atol)
    x = inp.x.clone()

    def check():
        seed_everything()
        xin = inp.x.clone()
        out, y = mixer(xin, inp.target)
        return check_mix_inferred(inp, out, y, inp.perm, cutmix=cutmix, lam_atol=lam_atol, y_atol=y_atol, rows=rows)

    return Prepared(lambda: mixer(x, inp.target), check)
