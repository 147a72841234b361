"""Pairings: who is mixed with whom.

The drop-in classes pair samples by involutions (``perm[perm[i]] == i``) so
that the op can mix in place; an odd batch leaves one sample paired with
itself, which keeps lam = 1 and its own image. torchvision pairs by a roll,
which is a cycle (mixed out of place).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "Pairing",
    "flip_pairing",
    "half_pairing",
    "random_pairing",
    "random_permutation",
    "refuse_in_capture",
    "roll_permutation",
]


def refuse_in_capture(device, what: str) -> None:
    """Raise where a CUDA graph is being captured on ``device``: ``what`` is
    made and kept on a first call (a cache), and made inside a capture it
    would live in the graph's private memory, or be copied from a host buffer
    freed before the replays read it."""
    if device is None or torch.device(device).type != "cuda" or not torch.cuda.is_current_stream_capturing():
        return
    raise RuntimeError(
        f"mixup_fused: {what} for {device} is made on the first call and kept; make one call outside the "
        "CUDA graph capture first (a warm-up, which also compiles the kernel), then capture"
    )


class Pairing(NamedTuple):
    """An involution and its pairs.

    ``perm[first[k]] == second[k]`` and ``perm[second[k]] == first[k]`` for the
    ``B // 2`` pairs, listed in the order their parameters are drawn; an odd
    batch has one more sample with ``perm[m] == m`` that is in neither list.
    """

    perm: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor

    def paired(self) -> torch.Tensor:
        """Boolean ``[B]``: True for samples that have a partner other than themselves."""
        mask = torch.zeros(self.perm.shape[0], dtype=torch.bool, device=self.perm.device)
        return mask.index_fill_(0, self.first, True).index_fill_(0, self.second, True)

    def to(self, device, non_blocking: bool = False) -> Pairing:
        return Pairing(*(t.to(device, non_blocking=non_blocking) for t in self))


def _from_pairs(batch_size: int, first: torch.Tensor, second: torch.Tensor) -> Pairing:
    perm = torch.arange(batch_size, device=first.device)
    perm = perm.index_copy(0, first, second).index_copy(0, second, first)
    return Pairing(perm, first, second)


def _shuffled(n: int, generator: torch.Generator | None, device, numpy_rng: bool) -> torch.Tensor:
    """A random order of ``0..n-1``: from numpy's global RNG (timm's source of
    randomness) or with torch."""
    if numpy_rng:
        return torch.from_numpy(np.random.permutation(n).astype(np.int64))
    device = generator.device if generator is not None and device is None else device
    return torch.randperm(n, generator=generator, device=device)


def flip_pairing(batch_size: int, device=None) -> Pairing:
    """timm's pairing: sample ``i`` with ``B - 1 - i`` (``x.flip(0)``); an odd batch's middle sample with itself.

    The result never changes for a (batch size, device), so it is made once
    and shared: read its tensors, do not write into them."""
    return _flip_pairing(batch_size, None if device is None else torch.device(device))


@functools.lru_cache(maxsize=32)
def _flip_pairing(batch_size: int, device) -> Pairing:
    refuse_in_capture(device, f"the flip pairing of a batch of {batch_size}")
    first = torch.arange(batch_size // 2, device=device)
    return Pairing(torch.arange(batch_size - 1, -1, -1, device=device), first, batch_size - 1 - first)


def random_pairing(
    batch_size: int, *, generator: torch.Generator | None = None, device=None, numpy_rng: bool = False
) -> Pairing:
    """A uniformly random perfect matching (an odd batch leaves one random sample alone).

    Drawn with torch (from ``generator``, on ``device``), or from numpy's
    global RNG with ``numpy_rng=True``."""
    order = _shuffled(batch_size, generator, device, numpy_rng)
    h = batch_size // 2
    return _from_pairs(batch_size, order[0 : 2 * h : 2], order[1 : 2 * h : 2])


def half_pairing(
    batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None, device=None
) -> Pairing:
    """Mode ``'half'``: sample ``k < B // 2`` is paired with one of the last ``B // 2`` samples.

    ``shuffle=False`` is timm's ``FastCollateMixup`` (``k`` with ``B - 1 - k``,
    the flip). ``shuffle=True`` draws the partner in the second half at random
    (torch, or numpy's global RNG when ``generator`` and ``device`` are both None)."""
    if not shuffle:
        return flip_pairing(batch_size, device)
    h = batch_size // 2
    sigma = _shuffled(h, generator, device, numpy_rng=generator is None and device is None)
    first = torch.arange(h, device=sigma.device)
    return _from_pairs(batch_size, first, batch_size - h + sigma)


def random_permutation(batch_size: int, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """A uniformly random permutation (not an involution: the op then mixes out of place)."""
    device = generator.device if generator is not None and device is None else device
    return torch.randperm(batch_size, generator=generator, device=device)


def roll_permutation(batch_size: int, shifts: int = 1, device=None) -> torch.Tensor:
    """torchvision's pairing ``x.roll(shifts, 0)``: sample ``i`` is mixed with ``i - shifts`` (mod B)."""
    return (torch.arange(batch_size, device=device) - shifts) % max(batch_size, 1)
