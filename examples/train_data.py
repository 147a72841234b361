"""Data sets for the training example, all held in memory as uint8 ``[N, 3, H, W]`` tensors.

* ``shapes`` (the default, embedded): ten classes of procedurally drawn shapes
  on noisy, cluttered backgrounds, generated from a seed in a second or two.
  Nothing is downloaded and nothing needs installing. The ``plain`` style
  draws the same shapes without clutter or low contrast, on quieter
  backgrounds: an easier task, for experiments on small budgets.
* CIFAR-10 in torchvision's format (the ``cifar-10-batches-py`` folder: python
  pickles ``data_batch_1..5`` and ``test_batch``), read with pickle and numpy.
* An ImageFolder (``root/train/<class>/*`` and ``root/val/<class>/*`` or
  ``root/test/<class>/*``): images read with Pillow (any format it opens, a
  dependency of matplotlib) or ``.npy`` arrays (``H x W x 3`` uint8), resized
  so that the shorter side is ``image_size`` and centre-cropped to a square.
  Every image is decoded once, at start-up: this reader is meant for small
  data sets, not ImageNet.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DataSet", "SHAPE_CLASSES", "load_data", "make_shapes"]

SHAPE_CLASSES = (
    "disk",
    "ring",
    "square",
    "frame",
    "triangle",
    "plus",
    "cross",
    "diamond",
    "crescent",
    "bars",
)

# matplotlib's tab10 colours, one per shape class.
CLASS_COLOURS = (
    np.array(
        [
            (31, 119, 180),
            (255, 127, 14),
            (44, 160, 44),
            (214, 39, 40),
            (148, 103, 189),
            (140, 86, 75),
            (227, 119, 194),
            (127, 127, 127),
            (188, 189, 34),
            (23, 190, 207),
        ],
        dtype=np.float32,
    )
    / 255.0
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp", ".npy")


@dataclass
class DataSet:
    """A train / test split held in memory."""

    name: str
    train_x: torch.Tensor  # uint8 [N, 3, H, W]
    train_y: torch.Tensor  # int64 [N]
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, float, float]  # per channel, in 0..255 units, from the training images
    std: tuple[float, float, float]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> str:
        _, c, h, w = self.train_x.shape
        return (
            f"{self.name}: {len(self.train_y)} train / {len(self.test_y)} test images, "
            f"{c}x{h}x{w}, {self.num_classes} classes"
        )


def _channel_stats(x: torch.Tensor):
    xf = x.double()
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _finish(name, train_x, train_y, test_x, test_y, classes) -> DataSet:
    train_x = torch.as_tensor(np.ascontiguousarray(train_x), dtype=torch.uint8)
    test_x = torch.as_tensor(np.ascontiguousarray(test_x), dtype=torch.uint8)
    mean, std = _channel_stats(train_x)
    return DataSet(
        name,
        train_x,
        torch.as_tensor(np.asarray(train_y), dtype=torch.int64),
        test_x,
        torch.as_tensor(np.asarray(test_y), dtype=torch.int64),
        tuple(classes),
        mean,
        std,
    )


def corrupt_labels(labels: torch.Tensor, num_classes: int, share: float, seed: int):
    """Label noise as in Zhang et al. (2017) and the Mixup paper: ``round(share * N)`` labels, chosen at random,
    are each replaced by a class drawn uniformly from all ``num_classes`` (so about one in ``num_classes`` keeps
    its class). Deterministic in ``seed``. Returns the new labels and the (sorted) indices of those that changed."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"label noise: the share of corrupted labels must be in [0, 1], got {share}")
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(labels.shape[0], generator=gen)[: round(share * labels.shape[0])]
    noisy = labels.clone()
    noisy[chosen] = torch.randint(0, num_classes, (chosen.numel(),), generator=gen, dtype=labels.dtype)
    return noisy, torch.nonzero(noisy != labels).flatten()


# ----------------------------------------------------------------------------
# Embedded data: procedurally drawn shapes
# ----------------------------------------------------------------------------


def _shape_mask(k: int, u: np.ndarray, v: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Inside-mask of shape class ``k`` in the shapes' own frames (``u`` right,
    ``v`` down, unit = the shape's radius); ``p`` is a per-image shape
    parameter in [0, 1) (thickness, bar count, crescent opening)."""
    name = SHAPE_CLASSES[k]
    if name in ("disk", "ring", "crescent"):
        r = np.hypot(u, v)
    if name in ("square", "frame", "bars"):
        a = np.maximum(np.abs(u), np.abs(v))
    if name == "disk":
        return r < 1.0
    if name == "ring":
        thick = 0.16 + 0.14 * p
        return np.abs(r - (1.0 - thick)) < thick
    if name == "square":
        return a < 0.85
    if name == "frame":
        thick = 0.16 + 0.14 * p
        return np.abs(a - (0.85 - thick)) < thick
    if name == "triangle":  # pointing up
        return (v < 0.6) & (v > 1.75 * np.abs(u) - 1.0)
    if name in ("plus", "cross"):
        if name == "cross":
            u, v = (u - v) * np.float32(0.5**0.5), (u + v) * np.float32(0.5**0.5)
        arm = 0.22 + 0.12 * p
        au, av = np.abs(u), np.abs(v)
        return ((au < arm) & (av < 1.0)) | ((av < arm) & (au < 1.0))
    if name == "diamond":
        return np.abs(u) + np.abs(v) < 1.05
    if name == "crescent":  # a disk minus a disk shifted in a direction set by p
        ang = 2 * np.pi * p
        return (r < 1.0) & (np.hypot(u - 0.55 * np.cos(ang), v - 0.55 * np.sin(ang)) > 0.8)
    if name == "bars":  # 2 to 4 horizontal bars filling a square
        nbars = np.floor(2 + 3 * p)
        return (a < 0.9) & (np.mod((v + 1.0) * nbars / 2.0, 1.0) < 0.5)
    raise ValueError(name)


def _shape_masks(label: np.ndarray, u: np.ndarray, v: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Inside-masks ``[n, S, S]`` of each image's shape (class ``label[i]``)."""
    out = np.zeros(u.shape, dtype=bool)
    for k in range(len(SHAPE_CLASSES)):
        sel = np.flatnonzero(label == k)
        if sel.size:
            out[sel] = _shape_mask(k, u[sel], v[sel], p[sel])
    return out


def _smooth_field(rng: np.random.Generator, n: int, size: int, grid: int, channels: int) -> np.ndarray:
    """Low-frequency random fields ``[n, channels, size, size]`` in [0, 1): bilinear upsampling of a coarse grid."""
    coarse = rng.random((n, channels, grid, grid), dtype=np.float32)
    t = torch.nn.functional.interpolate(
        torch.from_numpy(coarse), size=(size, size), mode="bilinear", align_corners=True
    )
    return t.numpy()


# Per style: (probability of each of the two clutter shapes, largest pull of the object's colour towards the
# background, weight of the background field against a flat grey).
SHAPE_STYLES = {"cluttered": (0.5, 0.5, 1.0), "plain": (0.0, 0.0, 0.3)}


def _render_shapes(
    rng: np.random.Generator, label: np.ndarray, size: int, style: str = "cluttered", supersample: int = 2
) -> np.ndarray:
    """Draw one shape per image (class ``label``) on a noisy background, cluttered and of varying contrast in the
    default style (see ``SHAPE_STYLES``). Returns float32 [n, 3, S, S]."""
    clutter_prob, max_pull, background = SHAPE_STYLES[style]
    n = label.shape[0]
    S = size * supersample
    coords = (np.arange(S, dtype=np.float32) + 0.5) / S * 2.0 - 1.0  # pixel centres in [-1, 1]
    gy, gx = np.meshgrid(coords, coords, indexing="ij")

    def frame(cx, cy, radius, theta):
        cx, cy, radius, theta = (np.asarray(t, dtype=np.float32)[:, None, None] for t in (cx, cy, radius, theta))
        c, s = np.cos(theta), np.sin(theta)
        dx, dy = gx[None] - cx, gy[None] - cy
        return (c * dx + s * dy) / radius, (-s * dx + c * dy) / radius

    def coverage(mask):  # anti-aliasing: the fraction of each pixel's sub-samples inside the shape
        k = mask.shape[0]
        return mask.reshape(k, 1, size, supersample, size, supersample).mean(axis=(3, 5), dtype=np.float32)

    def param(k):
        return rng.random(k, dtype=np.float32)[:, None, None]

    # Background: a smooth colour field plus a finer texture.
    img = 0.9 * _smooth_field(rng, n, size, 3, 3) + 0.1 * _smooth_field(rng, n, size, 9, 3)
    if background < 1.0:
        img = background * img + (1.0 - background) * 0.5

    # Clutter: 0 to 2 small shapes of random classes, drawn before the object (the object may hide them).
    for _ in range(2):
        idx = np.flatnonzero(rng.random(n) < clutter_prob)
        k = idx.size
        c_label = rng.integers(0, len(SHAPE_CLASSES), k)
        centre = rng.uniform(-0.9, 0.9, (2, k))
        u, v = frame(centre[0], centre[1], rng.uniform(0.07, 0.14, k), rng.normal(0, 0.3, k))
        cov = coverage(_shape_masks(c_label, u, v, param(k)))
        colour = rng.random((k, 3, 1, 1), dtype=np.float32)
        img[idx] = cov * colour + (1 - cov) * img[idx]

    # The object: random radius, position (mostly inside the image), small rotation, random colour.
    radius = rng.uniform(0.35, 0.65, n)
    cx = rng.uniform(-1.0, 1.0, n) * (1.0 - 0.8 * radius)
    cy = rng.uniform(-1.0, 1.0, n) * (1.0 - 0.8 * radius)
    u, v = frame(cx, cy, radius, rng.normal(0.0, 0.2, n))
    cov = coverage(_shape_masks(label, u, v, param(n)))
    # Each class leans towards a colour of its own (a weak cue, as sky is often blue): part palette, part random.
    lean = rng.uniform(0.2, 0.9, (n, 1, 1, 1)).astype(np.float32)
    colour = (1 - lean) * CLASS_COLOURS[label][:, :, None, None] + lean * rng.random((n, 3, 1, 1), dtype=np.float32)
    # Low contrast on purpose for some images: the colour is pulled towards the background.
    pull = rng.uniform(0.0, max_pull, (n, 1, 1, 1)).astype(np.float32)
    img = cov * ((1 - pull) * colour + pull * img) + (1 - cov) * img

    noise = rng.uniform(0.02, 0.06, (n, 1, 1, 1)).astype(np.float32)
    return img + noise * rng.standard_normal(img.shape, dtype=np.float32)


def make_shapes(n_train: int, n_test: int, size: int = 32, seed: int = 0, chunk: int = 1000, style="cluttered"):
    """The embedded data set: ``n_train`` / ``n_test`` balanced images of ten shape classes, in ``style``.

    Deterministic in ``seed`` (train and test come from separate streams, so
    ``n_train`` does not change the test set)."""
    streams = np.random.SeedSequence([seed, 0x5A4E5]).spawn(2)

    def split(n, ss):
        rng = np.random.default_rng(ss)
        label = np.arange(n) % len(SHAPE_CLASSES)
        rng.shuffle(label)
        out = np.empty((n, 3, size, size), dtype=np.uint8)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            img = _render_shapes(rng, label[lo:hi], size, style)
            out[lo:hi] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return out, label

    train_x, train_y = split(n_train, streams[0])
    test_x, test_y = split(n_test, streams[1])
    name = f"shapes (seed {seed})" if style == "cluttered" else f"shapes, {style} (seed {seed})"
    return _finish(name, train_x, train_y, test_x, test_y, SHAPE_CLASSES)


# ----------------------------------------------------------------------------
# CIFAR-10 (torchvision's python pickles)
# ----------------------------------------------------------------------------


def _cifar_dir(path: str) -> str | None:
    for cand in (path, os.path.join(path, "cifar-10-batches-py")):
        if os.path.isfile(os.path.join(cand, "data_batch_1")) and os.path.isfile(os.path.join(cand, "test_batch")):
            return cand
    return None


def _read_cifar_batch(path: str):
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
    return x, y


def load_cifar10(path: str) -> DataSet:
    root = _cifar_dir(path)
    if root is None:
        raise FileNotFoundError(f"no CIFAR-10 batches (data_batch_1..5, test_batch) in {path}")
    parts = [_read_cifar_batch(os.path.join(root, f"data_batch_{i}")) for i in range(1, 6)]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _read_cifar_batch(os.path.join(root, "test_batch"))
    classes = tuple(str(i) for i in range(10))
    meta = os.path.join(root, "batches.meta")
    if os.path.isfile(meta):
        with open(meta, "rb") as f:
            classes = tuple(pickle.load(f, encoding="latin1")["label_names"])
    return _finish("CIFAR-10", train_x, train_y, test_x, test_y, classes)


# ----------------------------------------------------------------------------
# ImageFolder
# ----------------------------------------------------------------------------


def _load_image(path: str, size: int) -> np.ndarray:
    """One image as uint8 [3, size, size]: shorter side resized to ``size``, centre crop."""
    if path.endswith(".npy"):
        arr = np.load(path)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (1, 3) or arr.dtype != np.uint8:
            raise ValueError(f"{path}: expected an H x W x 3 (or H x W) uint8 array, got {arr.dtype} {arr.shape}")
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float()
        h, w = t.shape[-2:]
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        t = torch.nn.functional.interpolate(t, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (nh - size) // 2, (nw - size) // 2
        return t[0, :, top : top + size, left : left + size].round().clamp(0, 255).to(torch.uint8).numpy()
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(h, w)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def _scan_split(root: str, classes=None):
    if classes is None:
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    files, labels = [], []
    for k, c in enumerate(classes):
        cdir = os.path.join(root, c)
        if not os.path.isdir(cdir):
            continue
        for dirpath, _, names in sorted(os.walk(cdir)):
            for name in sorted(names):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(dirpath, name))
                    labels.append(k)
    return classes, files, labels


def load_image_folder(path: str, size: int, progress: bool = False) -> DataSet:
    train_root = os.path.join(path, "train")
    test_root = next((os.path.join(path, s) for s in ("val", "test") if os.path.isdir(os.path.join(path, s))), None)
    if not os.path.isdir(train_root) or test_root is None:
        raise FileNotFoundError(f"an ImageFolder needs {path}/train/<class>/* and {path}/val/<class>/* (or test/)")
    classes, train_files, train_labels = _scan_split(train_root)
    _, test_files, test_labels = _scan_split(test_root, classes)
    if not train_files or not test_files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {train_root} or {test_root}")
    from tqdm import tqdm

    def read(files, what):
        out = np.empty((len(files), 3, size, size), dtype=np.uint8)
        for i, f in enumerate(tqdm(files, desc=f"decoding {what}", disable=not progress, leave=False)):
            out[i] = _load_image(f, size)
        return out

    return _finish(
        f"ImageFolder {path}",
        read(train_files, "train"),
        train_labels,
        read(test_files, "test"),
        test_labels,
        classes,
    )


def load_data(path: str | None, *, image_size=32, n_train=8000, n_test=2000, seed=0, progress=False, style="cluttered"):
    """The embedded shapes (in ``style``) when ``path`` is None, else CIFAR-10 or an ImageFolder found at ``path``."""
    if path is None:
        return make_shapes(n_train, n_test, image_size, seed, style=style)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"--data {path}: not a directory")
    if _cifar_dir(path) is not None:
        return load_cifar10(path)
    return load_image_folder(path, image_size, progress)


def save_preview(path: str, per_class: int = 10, size: int = 32, seed: int = 0, style: str = "cluttered"):
    """A grid of embedded images, one row per class (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = make_shapes(per_class * len(SHAPE_CLASSES) * 2, 0, size, seed, style=style)
    fig, axes = plt.subplots(len(SHAPE_CLASSES), per_class, figsize=(per_class * 0.8, len(SHAPE_CLASSES) * 0.85))
    for k, name in enumerate(SHAPE_CLASSES):
        idx = torch.nonzero(ds.train_y == k).flatten()[:per_class]
        for j, i in enumerate(idx.tolist()):
            ax = axes[k, j]
            ax.imshow(ds.train_x[i].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[k, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=64)
    plt.close(fig)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a preview grid of the embedded shapes.")
    parser.add_argument("out", nargs="?", default=os.path.join(os.path.dirname(__file__), "results", "shapes.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--style", choices=sorted(SHAPE_STYLES), default="cluttered")
    parser.add_argument("--image-size", type=int, default=32)
    a = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    save_preview(a.out, size=a.image_size, seed=a.seed, style=a.style)
    print(f"wrote {a.out}")
