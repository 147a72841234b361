"""timm's draws, from numpy's global RNG, in timm's order.

With the same ``np.random.seed``, :class:`NumpySampler` draws the same lam,
boxes and pairing as ``timm.data.Mixup`` (and ``FastCollateMixup`` for mode
``'half'``), with timm's arithmetic: the box functions below are timm's,
called as timm calls them (float32 lam in the per-sample modes, a Python
float in batch mode).

The ``*_nd`` functions generalise timm's boxes to 1, 2 or 3 spatial dims
(``(T,)``, ``(H, W)``, ``(D, H, W)``): a box is ``(lo, hi)`` per dim in dim
order, half-open; the side ratio is ``(1 - lam) ** (1 / n)`` for ``n``
spatial dims; centres (or, with minmax, all cut sizes and then all lows) are
drawn in dim order, one ``np.random.randint`` call per dim as timm draws
``y`` then ``x``. In 2-D they are timm's functions, draw for draw and bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._registration import HAS_CPP
from .pairing import Pairing, flip_pairing, half_pairing, random_pairing
from .params import MixParams, MixupConfig, draws_per_row, need_spatial, scatter_rows, spatial_sizes

if HAS_CPP:
    from .. import _C

# The rows of the per-sample modes in C (mixup_fused._C.timm_boxes and
# scatter_rows) where the extension is built, else with numpy; the two are
# tested equal. A step with cold caches pays a few microseconds per numpy call
# on rows of a few dozen elements, a dozen calls per step (bench: the collate
# row, the per-sample CutMix cells of the matrix).
NATIVE_ROWS = HAS_CPP
# numpy's global RandomState (np.random.* are its bound methods) draws from this bit generator.
_GLOBAL_BITGEN = np.random.mtrand._rand._bit_generator
_MODE_CODES = {"elem": 0, "pair": 1, "half": 2}

__all__ = [
    "NumpySampler",
    "cutmix_bbox_and_lam",
    "cutmix_box_and_lam_nd",
    "cutmix_boxes_per_row",
    "rand_bbox",
    "rand_bbox_minmax",
    "rand_box_minmax_nd",
    "rand_box_nd",
]


def side_ratio(lam, spatial_dims: int):
    """The cut side over the image side, per dim: ``(1 - lam) ** (1 / n)`` for
    ``n`` spatial dims (2-D: timm's ``np.sqrt(1 - lam)``). ``lam`` keeps its
    numpy type, as in timm (a float32 lam gives float32 arithmetic)."""
    if spatial_dims == 1:
        return 1 - lam
    if spatial_dims == 2:
        return np.sqrt(1 - lam)
    if isinstance(lam, np.ndarray):  # entry by entry: an array power may differ from the scalar one in the last bit
        return np.array([side_ratio(v, spatial_dims) for v in lam], dtype=lam.dtype)
    return (1 - lam) ** (1 / spatial_dims)


def _cut_sides(sizes, lam) -> np.ndarray:
    """``int(size * side_ratio(lam, n))`` per dim, int64 ``[..., dims]`` (``lam``
    a scalar or an array ``[n]``); the product in lam's float type, as in timm."""
    ratio = np.asarray(side_ratio(lam, len(sizes)))
    return (np.array(sizes, dtype=ratio.dtype) * ratio[..., None]).astype(np.int64)  # truncation, as int()


def _box_around(sizes, cuts, centres) -> np.ndarray:
    """Boxes ``[..., 2 * dims]`` (``lo0, hi0, lo1, hi1, ...``): per dim a cut around
    its centre, clipped to ``[0, size]``; ``cuts`` and ``centres`` int64 ``[..., dims]``.
    Every dim of every row in one numpy operation per step: a box costs less
    than its draws."""
    sizes = np.array(sizes, dtype=np.int64)
    box = np.empty((*centres.shape, 2), dtype=np.int64)  # (lo, hi) per dim
    np.subtract(centres, cuts // 2, out=box[..., 0])
    np.add(box[..., 0], cuts, out=box[..., 1])  # c + (cut + 1) // 2 == c - cut // 2 + cut
    # (ufuncs into one buffer: np.stack and fresh arrays cost more than this work on rows of a batch)
    np.maximum(box, 0, out=box)
    np.minimum(box, sizes[:, None], out=box)
    return box.reshape(*box.shape[:-2], 2 * sizes.shape[0])


def _box_lam(box, sizes):
    """timm's corrected lam: ``1 - cut volume / total volume`` (float64), per
    row of a box array, or for one box tuple in the type of its ends (Python
    ints from the minmax draws give a Python float, as in timm)."""
    if isinstance(box, tuple):
        volume = math.prod(box[2 * d + 1] - box[2 * d] for d in range(len(sizes)))
    else:
        volume = np.multiply.reduce(box[..., 1::2] - box[..., 0::2], axis=-1)
    return 1.0 - volume / float(math.prod(sizes))


def rand_box_nd(spatial_shape, lam, margin: float = 0.0, count=None) -> tuple:
    """timm's ``rand_bbox`` in 1, 2 or 3 spatial dims: per dim a cut of
    ``int(size * side_ratio(lam, n))`` around a uniform centre (drawn in dim
    order), clipped to the image. Returns ``(lo0, hi0, lo1, hi1, ...)``."""
    sizes = spatial_sizes(spatial_shape)
    cuts = _cut_sides(sizes, lam)
    margins = [int(margin * cut) for cut in cuts]
    centres = [np.random.randint(m, size - m, size=count) for size, m in zip(sizes, margins, strict=True)]
    box = _box_around(sizes, cuts, np.stack(centres, axis=-1))
    return tuple(box[..., k] for k in range(box.shape[-1]))


def rand_bbox(img_shape, lam, margin: float = 0.0, count=None):
    """timm's ``rand_bbox``: a box of sides ``int(side * sqrt(1 - lam))`` around
    a uniform centre, clipped to the image. Returns ``(y0, y1, x0, x1)``.

    ``lam`` keeps its numpy type, as in timm: a float32 lam (per-sample modes)
    gives float32 arithmetic, a Python float (batch mode) float64.
    """
    return rand_box_nd(tuple(img_shape[-2:]), lam, margin, count)


def rand_box_minmax_nd(spatial_shape, minmax, count=None) -> tuple:
    """timm's ``rand_bbox_minmax`` in 1, 2 or 3 spatial dims: every cut size
    uniform in ``[int(size * min), int(size * max))`` (drawn in dim order),
    then every low uniform in ``[0, size - cut]`` (in dim order). Returns
    ``(lo0, hi0, lo1, hi1, ...)``."""
    if len(minmax) != 2:
        raise ValueError(f"mixup_fused: cutmix_minmax must be (min, max), got {minmax!r}")
    sizes = spatial_sizes(spatial_shape)
    cuts = [np.random.randint(int(size * minmax[0]), int(size * minmax[1]), size=count) for size in sizes]
    lows = [np.random.randint(0, size - cut + 1, size=count) for size, cut in zip(sizes, cuts, strict=True)]
    return tuple(v for lo, cut in zip(lows, cuts, strict=True) for v in (lo, lo + cut))


def rand_bbox_minmax(img_shape, minmax, count=None):
    """timm's ``rand_bbox_minmax``: sides uniform in ``[min, max)`` of the image
    side, placed uniformly inside the image. Returns ``(y0, y1, x0, x1)``."""
    return rand_box_minmax_nd(tuple(img_shape[-2:]), minmax, count)


def cutmix_box_and_lam_nd(spatial_shape, lam, ratio_minmax=None, correct_lam: bool = True, count=None):
    """timm's ``cutmix_bbox_and_lam`` in 1, 2 or 3 spatial dims: the box
    ``(lo0, hi0, ...)`` and lam corrected to ``1 - cut volume / total volume``
    when ``correct_lam`` is on or ``ratio_minmax`` is given (otherwise lam is
    returned as drawn). In 2-D it is timm's function, draw for draw."""
    sizes = spatial_sizes(spatial_shape)
    if ratio_minmax is not None:
        box = rand_box_minmax_nd(sizes, ratio_minmax, count=count)
    else:
        box = rand_box_nd(sizes, lam, count=count)
    if correct_lam or ratio_minmax is not None:
        lam = _box_lam(box, sizes)
    return box, lam


def cutmix_bbox_and_lam(img_shape, lam, ratio_minmax=None, correct_lam: bool = True, count=None):
    """timm's ``cutmix_bbox_and_lam``: the box ``(y0, y1, x0, x1)`` and lam
    corrected to ``1 - area / (H * W)`` when ``correct_lam`` is on or
    ``ratio_minmax`` is given (otherwise lam is returned as drawn)."""
    return cutmix_box_and_lam_nd(tuple(img_shape[-2:]), lam, ratio_minmax, correct_lam, count)


def cutmix_boxes_per_row(spatial_shape, lam: np.ndarray, ratio_minmax=None, correct_lam: bool = True):
    """:func:`cutmix_box_and_lam_nd` for each entry of ``lam`` in turn, as
    timm's per-sample loop calls it (the same draws in the same order, the same
    arithmetic), computed for all rows at once. Returns ``(boxes, lam)``:
    int64 ``[n, 2 * dims]`` and float64 ``[n]``."""
    sizes = spatial_sizes(spatial_shape)
    n, dims = lam.shape[0], len(sizes)
    if ratio_minmax is not None:  # each row's second draws depend on its first: row by row
        rows = [cutmix_box_and_lam_nd(sizes, v, ratio_minmax, correct_lam) for v in lam]
        return np.array([r[0] for r in rows], dtype=np.int64).reshape(n, 2 * dims), np.array([r[1] for r in rows])
    # timm draws the centres row by row, dim by dim. With one bound for every
    # dim a single call draws exactly that sequence (numpy's legacy randint
    # fills an array with the same draws as the scalar calls, in order).
    if len(set(sizes)) == 1:
        centres = np.random.randint(0, sizes[0], size=(n, dims))
    else:
        centres = np.array([[np.random.randint(0, size) for size in sizes] for _ in range(n)], dtype=np.int64)
    boxes = _box_around(sizes, _cut_sides(sizes, lam), centres.reshape(n, dims))
    return boxes, (_box_lam(boxes, sizes) if correct_lam else lam.astype(np.float64))


def _one_box(sizes, lam: float, ratio_minmax, correct_lam: bool) -> tuple[tuple[int, ...], float]:
    """:func:`cutmix_boxes_per_row` for one lam (batch mode), in Python scalars:
    the same draws, the same arithmetic (lam as float64), without the array
    operations that only pay off over many rows. Returns ``(box, lam)``."""
    if ratio_minmax is not None:
        box, lam_c = cutmix_box_and_lam_nd(sizes, lam, ratio_minmax, correct_lam)
        return tuple(int(v) for v in box), float(lam_c)
    ratio = side_ratio(np.float64(lam), len(sizes))
    if len(set(sizes)) == 1:
        centres = np.random.randint(0, sizes[0], size=len(sizes)).tolist()
    else:
        centres = [int(np.random.randint(0, size)) for size in sizes]
    box = []
    for size, c in zip(sizes, centres, strict=True):
        cut = int(size * ratio)
        lo = c - cut // 2
        box += [min(max(lo, 0), size), min(max(lo + cut, 0), size)]
    if correct_lam:
        lam = _box_lam(tuple(box), sizes)
    return tuple(box), float(lam)


def batch_rows(pair: Pairing, lam: float, box: tuple[int, ...] | None) -> MixParams:
    """:func:`scatter_rows` for mode ``'batch'`` on host draws: every paired
    sample gets ``lam`` (and ``box``, which cuts: it is not ``NO_BOX``); a
    sample paired with itself (odd B) keeps lam = 1 and an empty box."""
    B = pair.perm.shape[0]
    lam_b = np.full(B, lam, dtype=np.float64)
    boxes = None
    if box is not None:
        boxes = np.empty((B, len(box)), dtype=np.int64)
        boxes[:] = box
    if 2 * pair.first.shape[0] < B:  # one sample without a partner
        alone = np.flatnonzero(pair.perm.numpy() == np.arange(B))
        lam_b[alone] = 1.0
        if boxes is not None:
            boxes[alone] = 0
    cuts = box is not None and all(box[2 * d + 1] > box[2 * d] for d in range(len(box) // 2))
    mixes = B > 1 and (lam != 1.0 or cuts)
    return MixParams(pair, torch.from_numpy(lam_b), None if boxes is None else torch.from_numpy(boxes), mixes)


def _cut_rows(sizes, lam_n: np.ndarray, cut: np.ndarray, cfg: MixupConfig) -> np.ndarray | None:
    """The boxes of the rows ``cut`` (int64 ``[n, 2 * dims]``, other rows
    unset), drawn as timm's per-sample loop draws them; their lam corrected
    in ``lam_n`` (float32, in place). None when no row cuts."""
    n = lam_n.shape[0]
    if NATIVE_ROWS and cfg.cutmix_minmax is None:
        box_n = np.empty((n, 2 * len(sizes)), dtype=np.int64)
        ratio = side_ratio(lam_n, len(sizes))
        with _GLOBAL_BITGEN.lock:  # as numpy's own calls: no other thread draws meanwhile
            cuts = _C.timm_boxes(_GLOBAL_BITGEN.capsule, lam_n, cut, ratio, sizes, cfg.correct_lam, box_n)
        return box_n if cuts else None
    rows = np.flatnonzero(cut)
    if not len(rows):
        return None
    if len(rows) == n:  # every draw cuts (CutMix only): no scatter into the rows
        box_n, lam_n[:] = cutmix_boxes_per_row(sizes, lam_n, cfg.cutmix_minmax, cfg.correct_lam)
    else:
        box_n = np.zeros((n, 2 * len(sizes)), dtype=np.int64)
        box_n[rows], lam_n[rows] = cutmix_boxes_per_row(sizes, lam_n[rows], cfg.cutmix_minmax, cfg.correct_lam)
    return box_n


def _host(t: torch.Tensor) -> np.ndarray:
    return (t if t.is_contiguous() else t.contiguous()).numpy()


def _rows(mode: str, pair: Pairing, lam_n: np.ndarray, cut: np.ndarray, box_n: np.ndarray | None) -> MixParams:
    """:func:`scatter_rows` of host draws (float32 ``lam_n``) for the per-sample modes."""
    if not NATIVE_ROWS:
        return scatter_rows(mode, pair, lam_n.astype(np.float64), cut, box_n, host_hints=True)
    B = pair.perm.shape[0]
    lam = np.empty(B, dtype=np.float64)
    boxes = None if box_n is None else np.empty((B, box_n.shape[1]), dtype=np.int64)
    perm, first, second = _host(pair.perm), _host(pair.first), _host(pair.second)
    mixes = _C.scatter_rows(_MODE_CODES[mode], perm, first, second, lam_n, cut, box_n, lam, boxes)
    return MixParams(pair, torch.from_numpy(lam), None if boxes is None else torch.from_numpy(boxes), mixes)


need_hw = need_spatial  # the former name (2-D only then); now 1 to 3 spatial sizes


def _params_per_batch(cfg: MixupConfig):
    # timm's Mixup._params_per_batch, draw for draw.
    lam, use_cutmix = 1.0, False
    if cfg.enabled and np.random.rand() < cfg.prob:
        if cfg.mixup_on and cfg.cutmix_on:
            use_cutmix = bool(np.random.rand() < cfg.switch_prob)
            alpha = cfg.cutmix_alpha if use_cutmix else cfg.mixup_alpha
            lam_mix = np.random.beta(alpha, alpha)
        elif cfg.mixup_on:
            lam_mix = np.random.beta(cfg.mixup_alpha, cfg.mixup_alpha)
        else:
            use_cutmix = True
            lam_mix = np.random.beta(cfg.cutmix_alpha, cfg.cutmix_alpha)
        lam = float(lam_mix)
    return lam, use_cutmix


def _params_per_elem(cfg: MixupConfig, n: int):
    # timm's Mixup._params_per_elem, draw for draw.
    lam = np.ones(n, dtype=np.float32)
    if not cfg.enabled:
        return lam, np.zeros(n, dtype=bool)
    if cfg.mixup_on and cfg.cutmix_on:
        use_cutmix = np.random.rand(n) < cfg.switch_prob
        lam_mix = np.where(
            use_cutmix,
            np.random.beta(cfg.cutmix_alpha, cfg.cutmix_alpha, size=n),
            np.random.beta(cfg.mixup_alpha, cfg.mixup_alpha, size=n),
        )
    elif cfg.mixup_on:
        use_cutmix = np.zeros(n, dtype=bool)
        lam_mix = np.random.beta(cfg.mixup_alpha, cfg.mixup_alpha, size=n)
    else:
        use_cutmix = np.ones(n, dtype=bool)
        lam_mix = np.random.beta(cfg.cutmix_alpha, cfg.cutmix_alpha, size=n)
    return np.where(np.random.rand(n) < cfg.prob, lam_mix.astype(np.float32), lam), use_cutmix


class NumpySampler:
    """timm's draws from numpy's global RNG, in timm's order.

    ``'batch'``: ``Mixup._params_per_batch``, then the box. ``'elem'``:
    ``Mixup._params_per_elem(B)``, then one box per cut sample in index
    order. ``'pair'``: ``_params_per_elem(B // 2)``, then one box per cut
    pair. ``'half'``: as ``FastCollateMixup``'s ``'half'``. A random pairing
    (``pairing='random'``, not in timm) is drawn after all of these.
    """

    def sample(self, cfg: MixupConfig, mode: str, batch_size: int, img_size=None, pairing: str = "flip") -> MixParams:
        cfg.check()
        if mode == "batch":
            lam_b, use_cut_b = _params_per_batch(cfg)
            box = None
            if use_cut_b and lam_b != 1.0:  # timm returns before the box when lam == 1
                box, lam_b = _one_box(need_spatial(img_size), lam_b, cfg.cutmix_minmax, cfg.correct_lam)
            return batch_rows(self._pairing(mode, batch_size, pairing), lam_b, box)
        # lam stays float32, as in timm's arrays: it sets the box arithmetic and the rounding.
        lam_n, use_cut_n = _params_per_elem(cfg, draws_per_row(mode, batch_size))
        box_n = None
        if cfg.cutmix_on:
            use_cut_n = use_cut_n & (lam_n != 1.0)  # timm draws no box for a sample that is not mixed
            box_n = _cut_rows(need_spatial(img_size), lam_n, use_cut_n, cfg)
        return _rows(mode, self._pairing(mode, batch_size, pairing), lam_n, use_cut_n, box_n)

    @staticmethod
    def _pairing(mode: str, batch_size: int, pairing: str) -> Pairing:
        # Drawn after lam and the boxes, as in timm's order.
        if pairing == "random":
            if mode == "half":
                return half_pairing(batch_size, shuffle=True)
            return random_pairing(batch_size, numpy_rng=True)
        return flip_pairing(batch_size)
