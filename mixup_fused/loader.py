"""A prefetching loader for uint8 pipelines, in the spirit of timm's PrefetchLoader.

It wraps a DataLoader that yields ``(uint8 images, targets)`` batches, copies
each batch to the device on a side stream (pinned memory, ``non_blocking``)
while the previous batch is being used, and yields batches that are
normalised and mixed in one fused pass: the uint8 batch is read once and the
normalised, mixed ``out_dtype`` batch is written once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import torch


class PrefetchLoader:
    """Wrap ``loader`` (yielding uint8 ``[B, C, H, W]`` images and targets).

    Args:
        loader: any iterable of ``(images, targets)``; images uint8 (or float).
        mixup: a callable ``(x, target) -> (x, y)`` that accepts uint8 ``x``,
            typically ``mixup_fused.Mixup(..., mean=..., std=..., out_dtype=...)``.
            With ``None``, batches are only normalised (``(x - mean) / std``)
            and targets pass through.
        device: where batches go; default CUDA if available, else CPU.
        mean, std: per-channel statistics in the units of the images (0..255
            for uint8), used when ``mixup`` is None.
        out_dtype: dtype of the normalised images when ``mixup`` is None.
        channels_last: move images to channels_last before mixing.
    """

    def __init__(
        self,
        loader: Iterable,
        mixup: Callable | None = None,
        *,
        device: torch.device | str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        out_dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ):
        self.loader = loader
        self.mixup = mixup
        self.device = torch.device(device) if device is not None else _default_device()
        self.out_dtype = out_dtype
        self.channels_last = channels_last
        if mixup is None and (mean is None) != (std is None):
            raise ValueError("mixup_fused: PrefetchLoader needs mean and std together")
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1) if mean else None
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1) if std else None

    def __len__(self):
        return len(self.loader)

    def _to_device(self, x, t):
        non_blocking = self.device.type == "cuda"
        if non_blocking and not x.is_pinned():
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=non_blocking)
        t = t.to(self.device, non_blocking=non_blocking)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, t

    def _finish(self, x, t):
        if self.mixup is not None:
            return self.mixup(x, t)
        if self.mean is not None:
            x = (x.float() - self.mean) / self.std
        return x.to(self.out_dtype), t

    def __iter__(self):
        if self.device.type != "cuda":
            for x, t in self.loader:
                yield self._finish(*self._to_device(x, t))
            return
        side = torch.cuda.Stream(device=self.device)
        pending = None
        for x, t in self.loader:
            # The copy and the mix of the next batch start only after the work
            # already queued on the consumer's stream, which may still write
            # tensors they read (the loader's or the mixer's own).
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                nxt = self._finish(*self._to_device(x, t))
            if pending is not None:
                yield pending
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(side)
            # Made on the side stream, used on the consumer's: every tensor of
            # the batch, at any depth, is recorded there before it is handed out.
            record_stream(nxt, main)
            pending = nxt
        if pending is not None:
            yield pending


def record_stream(obj, stream) -> None:
    """``Tensor.record_stream(stream)`` for every tensor in ``obj``: tensors in
    tuples, lists, dicts and dataclasses (such as the draws of
    ``Mixup(..., return_params=True)``), at any depth."""
    if isinstance(obj, torch.Tensor):
        obj.record_stream(stream)
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            record_stream(item, stream)
    elif isinstance(obj, dict):
        for item in obj.values():
            record_stream(item, stream)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            record_stream(getattr(obj, f.name), stream)


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
