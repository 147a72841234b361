"""The ways people mix a batch today, written as they are used.

Each peer is loaded or written here once; ``providers.py`` wraps them into
timed, verified providers. A peer that cannot be imported is reported as
skipped, never faked.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

# ---------------------------------------------------------------------------
# timm: load timm/data/mixup.py by path (``import timm`` pulls torchvision)
# ---------------------------------------------------------------------------


def load_timm_mixup():
    """timm's ``mixup`` module, loaded by file path, or raise ImportError."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("timm is not installed (pip install --no-deps timm==1.0.31)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "mixup.py")
    if not os.path.exists(path):
        raise ImportError(f"timm is installed but {path} is missing")
    mod_spec = importlib.util.spec_from_file_location("_bench_timm_mixup", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def timm_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("timm")
    except Exception:
        return None


def timm_uint8_path(mixer, mean: torch.Tensor, std: torch.Tensor, out_dtype: torch.dtype):
    """timm's input pipeline on uint8 batches: ``PrefetchLoader`` normalises
    (``x.float().sub_(mean).div_(std)``), ``Mixup`` mixes in float32, then the
    training step casts to half precision."""

    def run(x_uint8: torch.Tensor, target: torch.Tensor):
        x = x_uint8.float().sub_(mean).div_(std)
        x, y = mixer(x, target)
        return x.to(out_dtype), y

    return run


# ---------------------------------------------------------------------------
# torchvision.transforms.v2 MixUp / CutMix: the op sequence of
# torchvision/transforms/v2/_augment.py, rewritten (torchvision cannot be
# installed beside this torch). Pairing is ``roll(1, 0)``: sample i is mixed
# with sample i - 1. No label smoothing.
# ---------------------------------------------------------------------------


def tv_mixup_label(labels: torch.Tensor, lam: float, num_classes: int) -> torch.Tensor:
    onehot = F.one_hot(labels, num_classes=num_classes)
    if not onehot.dtype.is_floating_point:
        onehot = onehot.float()
    return onehot.roll(1, 0).mul_(1.0 - lam).add_(onehot.mul(lam))


def tv_mixup_apply(x: torch.Tensor, labels: torch.Tensor, lam: float, num_classes: int):
    out = x.roll(1, 0).mul_(1.0 - lam).add_(x.mul(lam))
    return out, tv_mixup_label(labels, lam, num_classes)


def tv_cutmix_params(lam: float, height: int, width: int):
    """torchvision's CutMix box: centre uniform in the image, half-sides
    ``0.5 * sqrt(1 - lam)`` times the sides, clamped; lam adjusted to the area."""
    r_x = torch.randint(width, size=(1,))
    r_y = torch.randint(height, size=(1,))
    r = 0.5 * math.sqrt(1.0 - lam)
    r_w_half, r_h_half = int(r * width), int(r * height)
    x1 = int(torch.clamp(r_x - r_w_half, min=0))
    y1 = int(torch.clamp(r_y - r_h_half, min=0))
    x2 = int(torch.clamp(r_x + r_w_half, max=width))
    y2 = int(torch.clamp(r_y + r_h_half, max=height))
    lam_adjusted = float(1.0 - (x2 - x1) * (y2 - y1) / (width * height))
    return (x1, y1, x2, y2), lam_adjusted


def tv_cutmix_apply(x: torch.Tensor, labels: torch.Tensor, box, lam_adjusted: float, num_classes: int):
    x1, y1, x2, y2 = box
    rolled = x.roll(1, 0)
    out = x.clone()
    out[..., y1:y2, x1:x2] = rolled[..., y1:y2, x1:x2]
    return out, tv_mixup_label(labels, lam_adjusted, num_classes)


class TorchvisionMixUp:
    """``v2.MixUp(alpha, num_classes)(x, labels)``: lam from ``Beta(alpha, alpha)`` on the CPU."""

    def __init__(self, alpha: float, num_classes: int):
        self.dist = torch.distributions.Beta(torch.tensor([alpha]), torch.tensor([alpha]))
        self.num_classes = num_classes

    def __call__(self, x, labels):
        lam = float(self.dist.sample(()))
        return tv_mixup_apply(x, labels, lam, self.num_classes)


class TorchvisionCutMix(TorchvisionMixUp):
    """``v2.CutMix(alpha, num_classes)(x, labels)``."""

    def __call__(self, x, labels):
        lam = float(self.dist.sample(()))
        box, lam_adjusted = tv_cutmix_params(lam, x.shape[-2], x.shape[-1])
        return tv_cutmix_apply(x, labels, box, lam_adjusted, self.num_classes)


def tv_perm(batch: int, device) -> torch.Tensor:
    """``roll(1, 0)`` as a permutation: row i takes row i - 1."""
    return (torch.arange(batch, device=device) - 1) % batch


# ---------------------------------------------------------------------------
# kornia RandomMixUpV2 / RandomCutMixV2, if installed (pip install --no-deps
# kornia kornia_rs)
# ---------------------------------------------------------------------------


def load_kornia():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from kornia.augmentation import RandomCutMixV2, RandomMixUpV2
    return RandomMixUpV2, RandomCutMixV2


def kornia_version() -> str | None:
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
    return DataLoader(dataset, batch_size=len(dataset), shuffle=False, num_workers=0)


def next_batch(loader: DataLoader):
    return next(iter(loader))


def dataset_perm(batch: int, device) -> torch.Tensor:
    return (torch.arange(batch, device=device) + 1) % batch


# ---------------------------------------------------------------------------
# Naive torch: what people write by hand. Scalar lam: mixup_fused.reference.naive_mix.
# ---------------------------------------------------------------------------


def naive_mix_per_sample(x, target, perm, lam, num_classes: int, label_smoothing: float = 0.0):
    """``naive_mix`` with one lam per sample (a float tensor ``[B]``)."""
    lam_x = lam.view((-1,) + (1,) * (x.dim() - 1)).to(x.dtype)
    x_out = lam_x * x + (1 - lam_x) * x[perm]
    y = F.one_hot(target, num_classes).float()
    y = y * (1.0 - label_smoothing) + label_smoothing / num_classes
    lam_y = lam.view(-1, 1).float()
    return x_out, lam_y * y + (1 - lam_y) * y[perm]


def naive_normalize_mix(x, target, perm, lam, mean, std, out_dtype, num_classes: int, label_smoothing: float = 0.0):
    """uint8 in, normalised, mixed, cast: the naive pipeline as one function (for torch.compile)."""
    from mixup_fused.reference import naive_mix

    xf = (x.float() - mean) / std
    x_out, y = naive_mix(xf, target, perm, lam, num_classes, label_smoothing)
    return x_out.to(out_dtype), y


def naive_features(h, perm, lam):
    """Manifold-Mixup-style feature mixing with plain tensor ops (autograd through it)."""
    return lam * h + (1 - lam) * h[perm]
