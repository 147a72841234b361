"""What a batch of the training example goes through: gathered, cropped, flipped and normalised on the device
(:class:`BatchMaker`), mixed (:class:`Mixer`: ours, timm's or none), scored against its targets (:func:`loss_fn`)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch
import torch.nn.functional as F

import mixup_fused

BACKENDS = ("fused", "timm", "reference", "none")


def load_timm_mixup():
    """timm's ``Mixup`` class, loaded from its file: ``import timm`` would import torchvision."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("--backend timm needs timm installed (pip install --no-deps timm)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "mixup.py")
    mod_spec = importlib.util.spec_from_file_location("_timm_data_mixup", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.Mixup


class Mixer:
    """The ``--backend`` choice behind one call: ``(x, class ids) -> (x, targets)``.

    ``targets`` are soft ``[B, K]`` rows, or the class ids themselves when
    nothing is mixed (``--backend none`` or both alphas 0): the loss then is
    plain cross-entropy with ``label_smoothing``.
    """

    def __init__(self, args, num_classes: int, device: torch.device):
        self.backend = args.backend
        if args.mixup_alpha <= 0 and args.cutmix_alpha <= 0:
            self.backend = "none"
        self.device = device
        kwargs = dict(
            mixup_alpha=args.mixup_alpha,
            cutmix_alpha=args.cutmix_alpha,
            prob=args.mix_prob,
            switch_prob=args.switch_prob,
            mode=args.mode,
            label_smoothing=args.label_smoothing,
            num_classes=num_classes,
        )
        if self.backend == "timm":
            self.mixup = load_timm_mixup()(**kwargs)
        elif self.backend in ("fused", "reference"):
            # A generator on the batch's device: the draws need no host round trip.
            self.generator = torch.Generator(device=device)
            self.mixup = mixup_fused.Mixup(
                **kwargs, generator=self.generator, backend="auto" if self.backend == "fused" else "reference"
            )
        else:
            self.mixup = None

    def reseed(self, seed: int):
        if self.backend == "timm":
            np.random.seed(seed % 2**32)  # timm draws from numpy's global RNG
        elif self.mixup is not None:
            self.generator.manual_seed(seed)

    def __call__(self, x, y):
        if self.mixup is None:
            return x, y
        return self.mixup(x, y)


def loss_fn(logits, target, label_smoothing: float):
    """Cross-entropy against class ids (with ``label_smoothing``) or against the soft targets of a mixed batch."""
    if target.dim() == 1:  # class ids: nothing was mixed
        return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)
    return mixup_fused.soft_target_cross_entropy(logits.float(), target)


class BatchMaker:
    """Batches of a uint8 image set held on the device: gathered by index, randomly cropped (4-pixel zero padding)
    and flipped when ``augment``, normalised with the training set's channel statistics."""

    def __init__(self, x_u8, mean, std, device, augment: bool, channels_last: bool):
        self.x = x_u8.to(device)  # the whole (small) data set lives on the device
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.augment = augment
        self.channels_last = channels_last
        self.pad = 4

    def __call__(self, idx: torch.Tensor, gen: torch.Generator | None = None):
        x = self.x.index_select(0, idx)
        if self.augment:
            x = self.crop_flip(x, gen)
        x = (x.float() - self.mean) * self.inv_std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def crop_flip(self, x: torch.Tensor, gen):
        """Random crops of the zero-padded images and horizontal flips, one draw per image, vectorised."""
        B, C, H, W = x.shape
        p, dev = self.pad, x.device
        xp = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (B, 1), device=dev, generator=gen)
        ox = torch.randint(0, 2 * p + 1, (B, 1), device=dev, generator=gen)
        flip = torch.rand(B, 1, device=dev, generator=gen) < 0.5
        cols = torch.arange(W, device=dev).expand(B, W)
        cols = torch.where(flip, W - 1 - cols, cols) + ox
        rows = torch.arange(H, device=dev).expand(B, H) + oy
        b = torch.arange(B, device=dev).view(B, 1, 1, 1)
        c = torch.arange(C, device=dev).view(1, C, 1, 1)
        return xp[b, c, rows.view(B, 1, H, 1), cols.view(B, 1, 1, W)]
