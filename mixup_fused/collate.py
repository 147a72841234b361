"""``FastCollateMixup``: a drop-in replacement for ``timm.data.FastCollateMixup``.

timm's default training path (its prefetching loader) mixes in the DataLoader
workers: ``FastCollateMixup(**mixup_args)`` is the ``collate_fn``, it takes a
list of ``(uint8 CHW image, label)`` samples and returns a uint8 batch and the
mixed, smoothed targets. This one takes the same constructor arguments and
samples, draws the same lam, boxes and pairing from numpy's global RNG, and
returns the same uint8 batch and targets, bit for bit; the batch is gathered,
mixed and rounded in one C++ call (``mixup_fused::collate_mix``).

Differences from timm, on purpose: odd batch sizes work (the middle sample
is paired with itself and kept), and the input samples are never written
(timm's 'half' and 'pair' modes modify some of them in place).

The better path, where the GPU is the bottleneck's far side: collate the raw
uint8 batch, then normalise and mix it on the device in one pass with
``Mixup(mean=..., std=..., out_dtype=torch.bfloat16)`` (and
:class:`mixup_fused.loader.PrefetchLoader`).
"""

from __future__ import annotations

import numpy as np
import torch

from . import _checks
from ._registration import CPP_IMPORT_ERROR, HAS_CPP
from .mixup import Mixup

if HAS_CPP:
    from . import _C

__all__ = ["FastCollateMixup"]


def _as_uint8_chw(image, i: int) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"mixup_fused: batch[{i}] image must be uint8, got a {image.dtype} array")
        image = torch.from_numpy(image)
    elif not isinstance(image, torch.Tensor):
        kind = type(image).__name__
        raise TypeError(f"mixup_fused: batch[{i}] image must be a uint8 numpy array or tensor, got {kind}")
    if image.dtype != torch.uint8:
        raise TypeError(f"mixup_fused: batch[{i}] image must be uint8, got {image.dtype}")
    if image.dim() != 3:
        raise ValueError(f"mixup_fused: batch[{i}] image must have shape [C, H, W], got {list(image.shape)}")
    return image


def _problem(batch, num_classes: int, multi_label: bool) -> Exception | None:
    """What is wrong with ``batch``, said in its terms (``batch[i]``), or None.

    The op checks every sample and label itself; this runs only once it has
    refused a batch, so that the error names the sample the caller gave."""
    try:
        for i, s in enumerate(batch):
            if not isinstance(s, (tuple, list)) or len(s) < 2:
                raise TypeError(f"mixup_fused: batch[{i}] must be an (image, label) pair, got {type(s).__name__}")
        images = [_as_uint8_chw(s[0], i) for i, s in enumerate(batch)]
        for i, im in enumerate(images):
            if im.shape != images[0].shape:
                raise ValueError(
                    f"mixup_fused: batch[{i}] image has shape {list(im.shape)} but batch[0] has "
                    f"{list(images[0].shape)}; a batch needs images of one shape"
                )
        _labels(batch, num_classes, multi_label)
    except (TypeError, ValueError) as err:
        return err
    return None


def _labels(batch, num_classes: int, multi_label: bool) -> torch.Tensor:
    """The labels: float32 multi-hot rows (as the op takes them), or int64
    class ids checked here, naming the sample (class ids reach the op through
    ``_C.collate_batch``, which reads them itself)."""
    if multi_label:
        target = torch.stack([torch.as_tensor(s[1]) for s in batch]).float()
        if target.dim() != 2 or target.shape[1] != num_classes:
            raise ValueError(
                f"mixup_fused: multi-label targets must have num_classes = {num_classes} values each, "
                f"got a batch of shape {list(target.shape)}"
            )
        return target
    target = torch.from_numpy(np.array([s[1] for s in batch], dtype=np.int64))
    _checks.check_class_ids(target, num_classes, name="the label of batch")
    return target


class FastCollateMixup(Mixup):
    """Mixup / CutMix while collating uint8 samples (timm's ``FastCollateMixup``).

    Constructor: :class:`mixup_fused.Mixup`'s (timm's arguments and defaults,
    plus ``pairing`` and ``generator``; the options that concern the device
    batch, such as ``mean`` or ``sampler``, are refused); the draws come from
    numpy's global RNG as in timm.

    ``collate_fn(batch)``: ``batch`` is a list of ``(image, label)`` with
    ``image`` a uint8 ``[C, H, W]`` numpy array or tensor and ``label`` a
    class id (or, with ``multi_label``, a dense ``[K]`` row). Returns
    ``(images, target)``: uint8 ``[n, C, H, W]`` and float32 ``[n, K]``, with
    ``n = len(batch)`` or, in mode ``'half'``, ``ceil(len(batch) / 2)``.
    """

    def _check_settings(self) -> None:
        super()._check_settings()
        # The batch leaves as uint8, mixed by the C++ collate op from host draws.
        unused = {"backend": "auto", "sampler": "host", "mean": None, "std": None, "out_dtype": None,
                  "memory_format": None, "return_params": False}  # fmt: skip
        for name, default in unused.items():
            if getattr(self, name) != default:
                raise ValueError(
                    f"mixup_fused: FastCollateMixup does not take {name} (got {getattr(self, name)!r}): it returns "
                    "the uint8 batch as timm's does; normalise and mix on the device with Mixup instead"
                )

    def __call__(self, batch, _=None):
        if not HAS_CPP:
            raise RuntimeError(f"mixup_fused: FastCollateMixup needs the C++ extension: {CPP_IMPORT_ERROR}")
        if not isinstance(batch, (list, tuple)) or not batch:
            raise ValueError("mixup_fused: batch must be a non-empty list of (image, label) samples")
        try:
            return self._collate(batch)
        except (TypeError, ValueError, RuntimeError, IndexError, AttributeError):
            problem = _problem(batch, self.num_classes, self.multi_label)
            if problem is None:
                raise
        raise problem

    def _collate(self, batch):
        # The op checks each sample, label and draw.
        B = len(batch)
        rows = B - B // 2 if self.mode == "half" else B
        if self.mixup_enabled:
            params = self.sample_params(B, tuple(batch[0][0].shape[-2:]))
            perm, lam, boxes = params.perm, params.lam, params.boxes
        else:
            perm, lam, boxes = torch.arange(B), torch.ones(B, dtype=torch.float64), None
        if not self.multi_label:
            # Class ids: straight on the samples, without a tensor per sample first.
            return _C.collate_batch(batch, perm, lam, boxes, rows, self.num_classes, float(self.label_smoothing))
        # Multi-hot rows: timm smooths them towards 0.5; the op then mixes them as given.
        images = [torch.from_numpy(s[0]) if isinstance(s[0], np.ndarray) else s[0] for s in batch]
        eps = self.label_smoothing
        target = _labels(batch, self.num_classes, True) * (1.0 - eps) + 0.5 * eps
        return torch.ops.mixup_fused.collate_mix.default(images, perm, lam, boxes, rows, target, self.num_classes, 0.0)
