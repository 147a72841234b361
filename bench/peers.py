"""The ways people mix a batch today, written as they are used.

Each peer is loaded or written here once, as plain functions that the
benchmark's providers time and the tests compare against. A peer that cannot
be imported raises ImportError; the benchmark reports it as skipped, never
fakes it.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

# ---------------------------------------------------------------------------
# timm, loaded by file path: ``import timm`` pulls torchvision, which cannot be
# installed beside this torch.
# ---------------------------------------------------------------------------


def load_timm(relpath: str = "data/mixup.py"):
    """The module ``timm/<relpath>`` of the installed timm: imported normally
    where timm imports (it needs torchvision), otherwise loaded from its file
    (the lighter environment installs timm with --no-deps).

    Raises ImportError if timm is not installed or lacks the file.
    """
    try:
        return importlib.import_module("timm." + relpath.removesuffix(".py").replace("/", "."))
    except Exception:  # timm without torchvision fails to import, with several error types
        pass
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("timm is not installed (pip install --no-deps timm==1.0.31)")
    path = os.path.join(list(spec.submodule_search_locations)[0], relpath)
    if not os.path.exists(path):
        raise ImportError(f"timm is installed but {path} is missing")
    name = "_bench_timm_" + relpath.removesuffix(".py").replace("/", "_")
    mod_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def timm_version() -> str | None:
    """The installed timm's version, or None."""
    try:
        from importlib.metadata import version

        return version("timm")
    except Exception:
        return None


def timm_uint8_mix(mixer, x_uint8: torch.Tensor, target: torch.Tensor, mean, std, out_dtype: torch.dtype):
    """timm's input pipeline on a uint8 batch: ``PrefetchLoader`` normalises
    (``x.float().sub_(mean).div_(std)``), ``mixer`` (a timm ``Mixup``) mixes in
    float32, then the training step casts to ``out_dtype``."""
    x = x_uint8.float().sub_(mean).div_(std)
    x, y = mixer(x, target)
    return x.to(out_dtype), y


# ---------------------------------------------------------------------------
# torchvision.transforms.v2 MixUp / CutMix: the op sequence of
# torchvision/transforms/v2/_augment.py, rewritten (torchvision cannot be
# installed beside this torch). Pairing is ``roll(1, 0)``: sample i is mixed
# with sample i - 1. No label smoothing.
# ---------------------------------------------------------------------------


def torchvision_v2():
    """``torchvision.transforms.v2``; ImportError where torchvision is not installed (the lighter environment)."""
    try:
        from torchvision.transforms import v2
    except Exception as err:  # absent, or a build that does not match this torch
        raise ImportError(f"torchvision is not installed here ({type(err).__name__}: {err})") from err
    return v2


def tv_lam_dist(alpha: float) -> torch.distributions.Beta:
    """The ``Beta(alpha, alpha)`` that torchvision's MixUp and CutMix build once, in ``__init__``."""
    return torch.distributions.Beta(torch.tensor([alpha]), torch.tensor([alpha]))


def _replay_draws(state: torch.Tensor, draw):
    """What ``draw()`` returns from torch's global RNG at ``state``; the RNG is left where it was."""
    after = torch.get_rng_state()
    torch.set_rng_state(state)
    try:
        return draw()
    finally:
        torch.set_rng_state(after)


def tv_mixup(x: torch.Tensor, labels: torch.Tensor, *, alpha: float = 1.0, num_classes=None, transform=None):
    """The real ``v2.MixUp(alpha=alpha, num_classes=num_classes)(x, labels)``.

    Returns ``(mixed x, mixed labels, params)`` with the draw torchvision made,
    ``{"lam": lam}``, read by replaying its one Beta draw from the same RNG
    state. ``transform``: a prebuilt ``v2.MixUp`` (default: built here).
    """
    transform = transform or torchvision_v2().MixUp(alpha=alpha, num_classes=num_classes)
    state = torch.get_rng_state()
    out, y = transform(x, labels)
    lam = _replay_draws(state, lambda: float(tv_lam_dist(alpha).sample(())))
    return out, y, {"lam": lam}


def tv_cutmix(x: torch.Tensor, labels: torch.Tensor, *, alpha: float = 1.0, num_classes=None, transform=None):
    """The real ``v2.CutMix(alpha=alpha, num_classes=num_classes)(x, labels)``.

    Returns ``(mixed x, mixed labels, params)`` with the draws torchvision made,
    ``{"box": (x1, y1, x2, y2), "lam_adjusted": lam}``, read by replaying them
    (lam, then the centre's x and y) and clamping the box as torchvision does.
    """
    transform = transform or torchvision_v2().CutMix(alpha=alpha, num_classes=num_classes)
    state = torch.get_rng_state()
    out, y = transform(x, labels)
    height, width = x.shape[-2:]

    def draws():
        lam = float(tv_lam_dist(alpha).sample(()))
        r_x, r_y = int(torch.randint(width, size=(1,))), int(torch.randint(height, size=(1,)))
        r = 0.5 * math.sqrt(1.0 - lam)
        r_w_half, r_h_half = int(r * width), int(r * height)
        x1, y1 = max(r_x - r_w_half, 0), max(r_y - r_h_half, 0)
        x2, y2 = min(r_x + r_w_half, width), min(r_y + r_h_half, height)
        return (x1, y1, x2, y2), float(1.0 - (x2 - x1) * (y2 - y1) / (width * height))

    box, lam_adjusted = _replay_draws(state, draws)
    return out, y, {"box": box, "lam_adjusted": lam_adjusted}


def tv_perm(batch: int, device) -> torch.Tensor:
    """torchvision's ``roll(1, 0)`` pairing as a permutation: row i takes row i - 1."""
    return (torch.arange(batch, device=device) - 1) % batch


# ---------------------------------------------------------------------------
# kornia RandomMixUpV2 / RandomCutMixV2, if installed (pip install --no-deps
# kornia kornia_rs)
# ---------------------------------------------------------------------------


def load_kornia():
    """kornia's ``(RandomMixUpV2, RandomCutMixV2)`` classes; ImportError if kornia is missing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from kornia.augmentation import RandomCutMixV2, RandomMixUpV2
    return RandomMixUpV2, RandomCutMixV2


def kornia_version() -> str | None:
    """The installed kornia's version, or None."""
    try:
        import kornia

        return kornia.__version__
    except Exception:
        return None


def kornia_boxes(crop_src: torch.Tensor) -> torch.Tensor:
    """kornia's cut boxes ``[B, 4, 2]`` corners ``(x, y)``, inclusive, as
    half-open ``(y0, y1, x0, x1)`` rows."""
    c = crop_src.long()
    return torch.stack([c[:, 0, 1], c[:, 2, 1] + 1, c[:, 0, 0], c[:, 2, 0] + 1], dim=1)


def kornia_dense_targets(triples: torch.Tensor, num_classes: int) -> torch.Tensor:
    """kornia's class output ``(label, paired label, weight of the pair)`` as dense ``[B, K]`` targets."""
    a = F.one_hot(triples[:, 0].long(), num_classes).float()
    b = F.one_hot(triples[:, 1].long(), num_classes).float()
    w = triples[:, 2:3].float()
    return a * (1.0 - w) + b * w


# ---------------------------------------------------------------------------
# The article-style per-sample Dataset: __getitem__ mixes sample i with
# sample i + 1, a DataLoader batches the results.
# ---------------------------------------------------------------------------


class MixupDataset(Dataset):
    """Wraps a dataset of ``(image, label)``; item i is the mix of items i and
    i + 1 with its own ``lam ~ Beta(alpha, alpha)``, and a mixed one-hot target."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int, alpha: float = 1.0, seed=0):
        self.images, self.labels = images, labels
        self.num_classes = num_classes
        self.alpha = alpha
        self.rng = np.random.default_rng(seed)
        self.fixed_lams: np.ndarray | None = None  # set to make the draws known (verification)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        j = (i + 1) % len(self)
        lam = float(self.fixed_lams[i]) if self.fixed_lams is not None else float(self.rng.beta(self.alpha, self.alpha))
        image = self.images[i] * lam + self.images[j] * (1.0 - lam)
        eye_i = F.one_hot(self.labels[i], self.num_classes).float()
        eye_j = F.one_hot(self.labels[j], self.num_classes).float()
        return image, eye_i * lam + eye_j * (1.0 - lam)


def dataset_loader(dataset: MixupDataset) -> DataLoader:
    """One batch of the whole dataset, in order, in this process."""
    return DataLoader(dataset, batch_size=len(dataset), shuffle=False, num_workers=0)


def next_batch(loader: DataLoader):
    """The loader's first batch: ``(mixed images, mixed targets)``."""
    return next(iter(loader))


def dataset_perm(batch: int, device) -> torch.Tensor:
    """``MixupDataset``'s pairing as a permutation: row i takes row i + 1."""
    return (torch.arange(batch, device=device) + 1) % batch


# ---------------------------------------------------------------------------
# Naive torch: what people write by hand, several passes and launches.
# ---------------------------------------------------------------------------


def naive_smoothed_one_hot(target: torch.Tensor, num_classes: int, label_smoothing: float) -> torch.Tensor:
    """Float one-hot rows of ``target``, label-smoothed."""
    y = F.one_hot(target, num_classes).float()
    return y * (1.0 - label_smoothing) + label_smoothing / num_classes


def naive_mix(x, target, perm, lam, num_classes: int, label_smoothing: float = 0.0):
    """Mixup with one lam (a float or a 0-d tensor): ``(mixed x, mixed targets)``."""
    x_out = lam * x + (1 - lam) * x[perm]
    y = naive_smoothed_one_hot(target, num_classes, label_smoothing)
    return x_out, lam * y + (1 - lam) * y[perm]


def naive_mix_per_sample(x, target, perm, lam, num_classes: int, label_smoothing: float = 0.0):
    """``naive_mix`` with one lam per sample (a float tensor ``[B]``)."""
    lam_x = lam.view((-1,) + (1,) * (x.dim() - 1)).to(x.dtype)
    x_out = lam_x * x + (1 - lam_x) * x[perm]
    y = naive_smoothed_one_hot(target, num_classes, label_smoothing)
    lam_y = lam.view(-1, 1).float()
    return x_out, lam_y * y + (1 - lam_y) * y[perm]


def naive_cutmix(x, target, perm, box, lam: float, num_classes: int, label_smoothing: float = 0.0):
    """CutMix with one half-open box ``(y0, y1, x0, x1)`` on every sample; ``lam``
    is 1 - box area / image area."""
    y0, y1, x0, x1 = box
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    y = naive_smoothed_one_hot(target, num_classes, label_smoothing)
    return out, lam * y + (1 - lam) * y[perm]


def naive_normalize_mix(x, target, perm, lam, mean, std, out_dtype, num_classes: int, label_smoothing: float = 0.0):
    """uint8 in, normalised, mixed, cast: the naive pipeline as one function (for torch.compile)."""
    xf = (x.float() - mean) / std
    x_out, y = naive_mix(xf, target, perm, lam, num_classes, label_smoothing)
    return x_out.to(out_dtype), y


def naive_features(h, perm, lam):
    """Manifold-Mixup-style feature mixing with plain tensor ops (autograd through it)."""
    return lam * h + (1 - lam) * h[perm]


# ---------------------------------------------------------------------------
# Per-sample loops: what research code for segmentation (CutMix-Seg, ClassMix)
# and for audio / video CutMix writes, one Python iteration per sample on
# clones of the batch.
# ---------------------------------------------------------------------------


def cutmix_draw_nd(spatial: tuple[int, ...], alpha: float = 1.0):
    """One CutMix box for the batch in ``len(spatial)`` dims, from numpy's
    global RNG in timm's batch-mode order (the ``prob`` test, lam ~ Beta,
    then a uniform centre per dim): side ratio ``(1 - lam) ** (1 / n)``, the
    cut ``int(size * ratio)`` around the centre, clipped. Returns ``(box,
    lam)`` with ``box = (lo0, hi0, lo1, hi1, ...)`` and lam corrected to
    ``1 - cut volume / total volume``."""
    np.random.rand()  # timm's `np.random.rand() < mix_prob`, prob = 1
    lam = np.random.beta(alpha, alpha)
    ratio = (1 - lam) ** (1 / len(spatial))
    centres = [int(np.random.randint(0, size)) for size in spatial]
    box = []
    for size, c in zip(spatial, centres, strict=True):
        cut = int(size * ratio)
        box += (min(max(c - cut // 2, 0), size), min(max(c + (cut + 1) // 2, 0), size))
    volume = math.prod(box[2 * d + 1] - box[2 * d] for d in range(len(spatial)))
    return tuple(box), 1.0 - volume / math.prod(spatial)


def _box_slices(box) -> tuple[slice, ...]:
    return tuple(slice(box[2 * d], box[2 * d + 1]) for d in range(len(box) // 2))


def loop_cut_boxes(x: torch.Tensor, partners: list[int], boxes: list[tuple], maps: torch.Tensor | None = None):
    """CutMix by slicing, sample by sample, out of place: for each i,
    ``out[i, :, box_i] = x[partners[i], :, box_i]`` (any spatial rank), and
    the same for the label maps ``[B, *spatial]`` when given. Returns ``out``
    or ``(out, maps_out)``."""
    out = x.clone()
    maps_out = None if maps is None else maps.clone()
    for i, (j, box) in enumerate(zip(partners, boxes, strict=True)):
        cut = _box_slices(box)
        out[(i, slice(None), *cut)] = x[(j, slice(None), *cut)]
        if maps is not None:
            maps_out[(i, *cut)] = maps[(j, *cut)]
    return out if maps is None else (out, maps_out)


def loop_cutmix(x, target, partners: list[int], box, lam: float, num_classes: int, label_smoothing: float):
    """Batch CutMix with one box, per-sample slicing loop (out of place), and
    the mixed, smoothed one-hot targets: ``(mixed x, targets)``."""
    out = loop_cut_boxes(x, partners, [box] * len(partners))
    y = naive_smoothed_one_hot(target, num_classes, label_smoothing)
    return out, lam * y + (1 - lam) * y[partners]


def loop_classmix(x: torch.Tensor, maps: torch.Tensor, partners: list[int], cut_mask: torch.Tensor):
    """ClassMix's per-sample mix (out of place): image i is
    ``where(cut_mask[i], x[partners[i]], x[i])`` over all channels, its map
    likewise. Returns ``(mixed x, mixed maps)``."""
    pairs = list(enumerate(partners))
    out = torch.stack([torch.where(cut_mask[i], x[j], x[i]) for i, j in pairs])
    maps_out = torch.stack([torch.where(cut_mask[i], maps[j], maps[i]) for i, j in pairs])
    return out, maps_out
