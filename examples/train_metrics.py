"""Measurements of the training example: time per section of a step, and test error, NLL and calibration."""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from train_distributed import all_reduce_

ECE_BINS = 15


class SectionTimer:
    """Seconds per named section of a step.

    On CPU a section is host wall time. On CUDA, ``mode='sync'`` synchronises
    the device before and after the section (exact wall time attributed to
    the section, at the price of a few syncs per step); ``mode='events'``
    records CUDA events instead and adds up their GPU-side times at
    :meth:`flush` (no sync inside the step; a section's time then includes
    any GPU idle time between its events)."""

    def __init__(self, device: torch.device, mode: str = "sync"):
        self.cuda = device.type == "cuda"
        self.mode = mode if self.cuda else "host"
        self.steps: dict[str, list[float]] = {}
        self._pending: list[tuple[str, object, object]] = []

    @contextlib.contextmanager
    def section(self, name: str):
        if self.mode == "events":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._pending.append((name, start, end))
            return
        if self.mode == "sync":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        yield
        if self.mode == "sync":
            torch.cuda.synchronize()
        self.steps.setdefault(name, []).append(time.perf_counter() - t0)

    def flush(self):
        if self._pending:
            torch.cuda.synchronize()
            for name, start, end in self._pending:
                self.steps.setdefault(name, []).append(start.elapsed_time(end) / 1000.0)
            self._pending.clear()

    def reset(self):
        self.flush()
        self.steps = {}


def _logits_by_shard(model, data, index: torch.Tensor, rank: int, world: int, amp_dtype, batch_size: int):
    """``(images, logits)`` batch by batch over this rank's share of ``index``: the images ``index[rank::world]``
    (no padding, no image twice), in eval mode; the model is back in train mode after the last batch."""
    model.eval()
    shard = index[rank::world]
    for lo in range(0, shard.shape[0], batch_size):
        idx = shard[lo : lo + batch_size]
        with autocast(idx.device, amp_dtype):
            logits = model(data(idx))
        yield idx, logits.float()
    model.train()


@torch.no_grad()
def evaluate(model, data, y_all: torch.Tensor, rank: int, world: int, amp_dtype, batch_size: int = 500):
    """Test error, NLL and ECE of ``model`` on the images of ``data`` (a :class:`BatchMaker`) with labels ``y_all``.

    Each rank scores images ``rank, rank + world, ...``; the sums are all-reduced."""
    dev = data.x.device
    # [nll sum, correct, count] and per confidence bin [count, confidence sum, correct]
    totals = torch.zeros(3, dtype=torch.float64, device=dev)
    bins = torch.zeros(3, ECE_BINS, dtype=torch.float64, device=dev)
    index = torch.arange(y_all.shape[0], device=dev)
    for idx, logits in _logits_by_shard(model, data, index, rank, world, amp_dtype, batch_size):
        y = y_all.index_select(0, idx)
        logp = F.log_softmax(logits, dim=1)
        conf, pred = logp.max(dim=1)
        conf = conf.exp()
        correct = (pred == y).double()
        totals += torch.stack(
            [F.nll_loss(logp, y, reduction="sum").double(), correct.sum(), torch.tensor(float(y.numel()), device=dev)]
        )
        b = (conf.double() * ECE_BINS).ceil().long().clamp(1, ECE_BINS) - 1  # bins (k/15, (k+1)/15]
        bins[0].index_add_(0, b, torch.ones_like(correct))
        bins[1].index_add_(0, b, conf.double())
        bins[2].index_add_(0, b, correct)
    all_reduce_(totals, world)
    all_reduce_(bins, world)
    nll, correct, n = totals.tolist()
    count, conf_sum, acc_sum = bins
    ece = float(((conf_sum - acc_sum).abs()).sum() / n)  # sum_b n_b / N * |conf_b - acc_b|
    return {"test_error": 1.0 - correct / n, "test_nll": nll / n, "test_ece": ece, "test_images": int(n)}


@torch.no_grad()
def label_agreement(model, data, index: torch.Tensor, labels: dict, rank: int, world: int, amp_dtype, batch_size=500):
    """For each ``name: y`` of ``labels`` (class ids of all images of ``data``), the share of the images ``index``
    whose predicted class is ``y``: e.g. how many corrupted training labels the model reproduces."""
    hits = torch.zeros(len(labels) + 1, dtype=torch.float64, device=index.device)
    for idx, logits in _logits_by_shard(model, data, index, rank, world, amp_dtype, batch_size):
        pred = logits.argmax(dim=1)
        hits[:-1] += torch.stack([(pred == y.index_select(0, idx)).sum() for y in labels.values()]).double()
        hits[-1] += idx.numel()
    all_reduce_(hits, world)
    *counts, n = hits.tolist()
    return {name: c / n for name, c in zip(labels, counts, strict=True)}


def autocast(device: torch.device, amp_dtype):
    """torch.autocast to ``amp_dtype`` on ``device``, or nothing when ``amp_dtype`` is None."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)
