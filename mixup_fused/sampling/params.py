"""What a sampler produces: per-sample rows ready for one call of the op.

A box is ``(lo, hi)`` per spatial dim, half-open, in dim order: ``(t0, t1)``
for a ``[B, C, T]`` batch, ``(y0, y1, x0, x1)`` for ``[B, C, H, W]``,
``(z0, z1, y0, y1, x0, x1)`` for ``[B, C, D, H, W]``. A box row of all -1
(:func:`no_box`; ``NO_BOX`` in 2-D) tells the op to blend that sample with
lam (Mixup) instead of cutting; an empty box (:func:`empty_box`;
``EMPTY_BOX`` in 2-D) leaves a sample untouched. That is how one launch mixes
some samples and cuts others.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..reference import NO_BOX
from .pairing import Pairing

__all__ = [
    "EMPTY_BOX",
    "MODES",
    "NO_BOX",
    "MixParams",
    "MixupConfig",
    "draws_per_row",
    "empty_box",
    "need_spatial",
    "no_box",
    "scatter_rows",
    "spatial_sizes",
    "to_device",
    "upload",
]

EMPTY_BOX = (0, 0, 0, 0)
MODES = ("batch", "pair", "elem", "half")
SPATIAL_RANKS = (1, 2, 3)


def no_box(spatial_dims: int = 2) -> tuple[int, ...]:
    """The row that blends a sample with lam instead of cutting: all -1, ``2 * spatial_dims`` wide."""
    return (-1,) * (2 * spatial_dims)


def empty_box(spatial_dims: int = 2) -> tuple[int, ...]:
    """The empty box, which leaves a sample unchanged: all 0, ``2 * spatial_dims`` wide."""
    return (0,) * (2 * spatial_dims)


def spatial_sizes(shape, name: str = "spatial_shape") -> tuple[int, ...]:
    """``shape`` as a tuple of 1 to 3 positive ints: ``(T,)``, ``(H, W)`` or ``(D, H, W)``."""
    try:
        sizes = tuple(operator.index(s) for s in shape)
    except TypeError:
        raise TypeError(
            f"mixup_fused: {name} must be a sequence of ints (T,), (H, W) or (D, H, W), got {shape!r}"
        ) from None
    if len(sizes) not in SPATIAL_RANKS:
        raise ValueError(
            f"mixup_fused: {name} must have 1, 2 or 3 sizes ((T,), (H, W) or (D, H, W)), got {sizes} "
            f"({len(sizes)} sizes)"
        )
    if min(sizes) < 1:
        raise ValueError(f"mixup_fused: {name} must hold sizes >= 1, got {sizes}")
    return sizes


def need_spatial(img_size) -> tuple[int, ...]:
    """The spatial shape CutMix cuts (``img_size = x.shape[2:]``), checked:
    1, 2 or 3 sizes, each >= 1."""
    if img_size is None or (hasattr(img_size, "__len__") and len(img_size) not in SPATIAL_RANKS):
        raise ValueError(
            "mixup_fused: CutMix needs x of shape [B, C, T], [B, C, H, W] or [B, C, D, H, W] "
            f"(img_size = x.shape[2:], 1 to 3 sizes), got img_size={img_size!r}"
        )
    return spatial_sizes(img_size, "img_size")


@dataclass(frozen=True)
class MixupConfig:
    """The knobs of timm's ``Mixup`` that decide the draws."""

    mixup_alpha: float = 1.0
    cutmix_alpha: float = 0.0
    cutmix_minmax: tuple[float, float] | None = None
    prob: float = 1.0
    switch_prob: float = 0.5
    correct_lam: bool = True
    enabled: bool = True

    def __post_init__(self):
        if self.cutmix_minmax is not None:
            # As timm: minmax boxes turn CutMix on with alpha 1 (lam is then set by the box area).
            object.__setattr__(self, "cutmix_alpha", 1.0)

    @property
    def mixup_on(self) -> bool:
        return self.mixup_alpha > 0.0

    @property
    def cutmix_on(self) -> bool:
        return self.cutmix_alpha > 0.0 or self.cutmix_minmax is not None

    def check(self) -> None:
        if self.enabled and not (self.mixup_on or self.cutmix_on):
            raise ValueError(
                "mixup_fused: one of mixup_alpha > 0, cutmix_alpha > 0 or cutmix_minmax not None must hold "
                f"(got mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, "
                f"cutmix_minmax={self.cutmix_minmax})"
            )


@dataclass
class MixParams:
    """Everything one call of :func:`mixup_fused.mix` needs, one row per sample.

    Attributes:
        pairing: the involution (``pairing.perm`` goes to the op).
        lam: float32 or float64 ``[B]``, the weight of each sample's own target; for rows
            that are blended (no box, or ``NO_BOX``) also of its own image.
        boxes: int64 ``[B, 2n]`` for ``n`` spatial dims, ``(lo, hi)`` per dim in
            dim order (2-D: ``(y0, y1, x0, x1)``), or None (every row is
            blended). Rows of all -1 (:func:`no_box`) are blended with lam,
            empty rows (:func:`empty_box`) are left unchanged.
        mixes: False when no sample changes (the image pass can be skipped),
            True when some may, None when unknown without reading the device.
    """

    pairing: Pairing
    lam: torch.Tensor
    boxes: torch.Tensor | None
    mixes: bool | None = None

    @property
    def perm(self) -> torch.Tensor:
        return self.pairing.perm

    def to(self, device, lam_dtype: torch.dtype | None = None) -> MixParams:
        """Move to ``device`` (host-to-device copies from pinned memory, non-blocking)."""
        device = torch.device(device)
        if self.lam.device == device and (lam_dtype is None or self.lam.dtype == lam_dtype):
            return self
        lam = self.lam if lam_dtype is None else self.lam.to(lam_dtype)
        pairing, boxes = self.pairing, self.boxes
        if lam.device != device:
            perm, first, second, lam, boxes = upload([*pairing, lam, boxes], device)
            pairing = Pairing(perm, first, second)
        return replace(self, pairing=pairing, lam=lam, boxes=boxes)


def upload(tensors: list[torch.Tensor | None], device) -> list[torch.Tensor | None]:
    """Host tensors to ``device`` in one copy: their bytes packed into one
    buffer (pinned for CUDA, copied with ``non_blocking=True``, so nothing
    waits), then viewed back with their dtypes and shapes. The draws of a
    batch are five small tensors; five copies cost five launches of the
    copy engine and five pinned buffers. None entries stay None.

    Host cost matters here (every training step pays it): the bytes are
    packed with numpy, and the device buffer is cut with one ``split`` and a
    dtype view per tensor (plus a shape view for the 2-D ones)."""
    present = [t for t in tensors if t is not None]
    if not present:
        return list(tensors)
    # Widest elements first: every view then starts at a multiple of its element size.
    order = sorted(range(len(present)), key=lambda k: -present[k].element_size())
    sizes = [present[k].numel() * present[k].element_size() for k in order]
    src_device = present[0].device
    to_cuda = torch.device(device).type == "cuda" and src_device.type == "cpu"
    host = torch.empty(sum(sizes), dtype=torch.uint8, device=src_device, pin_memory=to_cuda)
    _pack(host, [present[k] for k in order], sizes)
    pieces = torch.split_with_sizes(host.to(device, non_blocking=to_cuda), sizes)
    moved = [None] * len(present)
    for k, piece in zip(order, pieces, strict=True):
        t = present[k]
        v = piece.view(t.dtype)
        moved[k] = v if t.dim() == 1 else v.view(t.shape)
    it = iter(moved)
    return [None if t is None else next(it) for t in tensors]


def _pack(host: torch.Tensor, tensors: list[torch.Tensor], sizes: list[int]) -> None:
    """Copy ``tensors`` (any strides) back to back into the uint8 buffer ``host``."""
    offset = 0
    if host.is_cpu and all(t.is_cpu for t in tensors):
        flat = host.numpy()
        try:
            for t, n in zip(tensors, sizes, strict=True):
                if n:
                    flat[offset : offset + n] = np.ascontiguousarray(t.numpy()).reshape(-1).view(np.uint8)
                offset += n
            return
        except (TypeError, RuntimeError):  # bfloat16 (no numpy dtype), a tensor that requires grad
            offset = 0
    for t, n in zip(tensors, sizes, strict=True):
        host[offset : offset + n].view(t.dtype).view(t.shape).copy_(t)
        offset += n


def to_device(t: torch.Tensor | None, device) -> torch.Tensor | None:
    """Host tensor to ``device`` without a synchronisation: a CUDA copy goes
    through pinned memory with ``non_blocking=True`` (a copy from pageable
    memory would wait for the stream)."""
    if t is None or t.device == torch.device(device):
        return t
    return upload([t], device)[0]


def draws_per_row(mode: str, batch_size: int) -> int:
    """How many draws a mode makes: one per batch, per sample, or per pair."""
    if mode == "batch":
        return 1
    if mode == "elem":
        return batch_size
    return batch_size // 2  # 'pair' and 'half'


def scatter_rows(mode: str, pair: Pairing, lam_n, use_cut_n, box_n, *, host_hints: bool = False) -> MixParams:
    """Per-draw rows -> per-sample rows, for the op.

    ``'batch'`` repeats the one row; ``'elem'`` keeps one row per sample;
    ``'pair'`` gives both samples of pair ``k`` row ``k``; ``'half'`` gives
    row ``k`` to ``first[k]`` only. Samples without a partner (odd B) and the
    second half in ``'half'`` keep lam = 1 and an empty box. Blended rows get
    ``NO_BOX`` and rows with lam == 1 ``EMPTY_BOX`` (an exact copy).
    ``box_n`` (int64 ``[n, 2 * spatial dims]``) None: no row cuts.

    The draws are numpy arrays (host draws: the rows are built with numpy,
    whose calls cost a fraction of torch's, and become tensors once) or
    tensors (built on the pairing's device, without a synchronisation).
    ``host_hints``: read the rows on the host to tell the op what it may skip
    (see :attr:`MixParams.mixes`); never for device tensors.
    """
    host = isinstance(lam_n, np.ndarray)
    xp = np if host else torch
    B = pair.perm.shape[0]
    per_sample = mode in ("batch", "elem")
    if host:
        new = {}
        perm = pair.perm
        # The halves are read only where rows are given to pairs.
        first, second = (pair.first.numpy(), pair.second.numpy()) if not per_sample else (None, None)
    else:
        new = {"device": pair.perm.device}
        perm, first, second = pair
        lam_n, use_cut_n = lam_n.to(perm.device), use_cut_n.to(perm.device)
        box_n = None if box_n is None else box_n.to(perm.device)
    keep = None
    if per_sample:
        # One row per sample, or the one row broadcast; a sample paired with
        # itself (odd B) keeps lam = 1 and its own pixels. (Host draws where
        # every sample has a partner need no mask: fewer numpy calls, which
        # cost more than their work on rows this short.)
        if host and 2 * pair.first.shape[0] == B:
            lam = lam_n.copy() if lam_n.shape[0] == B else np.full(B, lam_n[0], dtype=lam_n.dtype)
        else:
            keep = (perm.numpy() if host else perm) != xp.arange(B, **new)
            lam = xp.where(keep, lam_n, 1.0)
    else:
        lam = xp.ones(B, dtype=lam_n.dtype, **new)
        lam[first] = lam_n
        if mode == "pair":
            lam[second] = lam_n
    boxes = None
    if box_n is not None and not (host_hints and not use_cut_n.any()):
        # A row that cuts keeps its box; otherwise NO_BOX (blend with lam) or, when lam == 1, EMPTY (exact copy).
        if not (host and use_cut_n.all()):  # (on the host, every row cutting is common and needs no mask)
            box_n = xp.where(use_cut_n[:, None], box_n, xp.where((lam_n != 1.0)[:, None], -1, 0))
        if keep is not None:
            boxes = xp.where(keep[:, None], box_n, 0)
        elif per_sample:
            boxes = box_n if box_n.shape[0] == B else np.repeat(box_n, B, axis=0)
        else:
            boxes = xp.zeros((B, box_n.shape[1]), dtype=xp.int64, **new)
            boxes[first] = box_n
            if mode == "pair":
                boxes[second] = box_n
    mixes = None
    if host_hints:
        mixes = bool((lam != 1.0).any())
        if boxes is not None and not mixes:
            cut = (boxes != -1).any(1)  # not a NO_BOX row
            mixes = bool((cut & (boxes[:, 1::2] > boxes[:, 0::2]).all(1)).any())
    if host:
        lam, boxes = torch.from_numpy(lam), None if boxes is None else torch.from_numpy(boxes)
    return MixParams(pair, lam, boxes, mixes)
