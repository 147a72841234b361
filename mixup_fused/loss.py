"""Losses for mixed batches.

- :class:`SoftTargetCrossEntropy` / :func:`soft_target_cross_entropy`: timm's
  ``sum(-target * log_softmax(x, -1), -1).mean()``, for the mixed soft targets
  of :class:`~mixup_fused.Mixup`.
- :class:`BinaryCrossEntropy`: timm's ``BinaryCrossEntropy``, per-class binary
  cross-entropy with logits on smoothed one-hot targets built from class ids or
  on dense targets (mixed or multi-hot) as given.
- :func:`mixed_segmentation_loss`: pixel-wise cross-entropy for blended
  segmentation rows, ``lam * CE(logits, m) + (1 - lam) * CE(logits, m[perm])``
  per row, for label maps that cannot be blended themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _checks

__all__ = ["BinaryCrossEntropy", "SoftTargetCrossEntropy", "mixed_segmentation_loss", "soft_target_cross_entropy"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction) -> None:
    if reduction not in _REDUCTIONS:
        _checks._fail(ValueError, f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _is_label_dtype(dtype: torch.dtype) -> bool:
    """Integer or bool: a dtype that holds class ids / labels."""
    return not (dtype.is_floating_point or dtype.is_complex)


def _check_logits(name: str, x) -> None:
    _checks.check_tensor(name, x)
    if not x.dtype.is_floating_point:
        _checks._fail(TypeError, f"{name} (logits) must be a floating tensor, got {x.dtype}")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


# ----------------------------------------------------------------------------
# Soft-target cross-entropy
# ----------------------------------------------------------------------------


def soft_target_cross_entropy(x: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of logits ``x [..., K]`` against probabilities ``target [..., K]``.

    ``reduction='mean'`` (timm's, the default) averages the per-sample losses
    ``sum(-target * log_softmax(x, -1), -1)``; ``'sum'`` adds them and
    ``'none'`` returns them.
    """
    _check_reduction(reduction)
    if not isinstance(x, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("mixup_fused: soft_target_cross_entropy expects tensors x (logits) and target")
    if x.shape != target.shape:
        raise ValueError(
            f"mixup_fused: logits x {list(x.shape)} and target {list(target.shape)} must have the same shape"
        )
    loss = torch.sum(-target * F.log_softmax(x, dim=-1), dim=-1)
    return _reduce(loss, reduction)


class SoftTargetCrossEntropy(torch.nn.Module):
    """timm's ``SoftTargetCrossEntropy`` (``forward(x, target)``), with an optional ``reduction``."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_target_cross_entropy(x, target, self.reduction)


# ----------------------------------------------------------------------------
# Binary cross-entropy
# ----------------------------------------------------------------------------


def _check_broadcasts_to(name: str, t: torch.Tensor | None, shape: torch.Size) -> None:
    if t is None:
        return
    try:
        ok = torch.broadcast_shapes(t.shape, shape) == shape
    except RuntimeError:
        ok = False
    if not ok:
        _checks._fail(
            ValueError,
            f"{name} of shape {list(t.shape)} must broadcast to the logits' shape {list(shape)} "
            f"(per class: [{shape[-1] if len(shape) else 1}])",
        )


class BinaryCrossEntropy(torch.nn.Module):
    """timm's ``BinaryCrossEntropy`` (``forward(x, target)``): binary cross-entropy
    with logits, one independent sigmoid per class.

    Args (timm's, same defaults):
        smoothing: eps in ``[0, 1)`` for class-id targets, which become
            smoothed one-hot rows in ``x``'s dtype: off value ``eps / K``, on
            value ``1 - eps + eps / K`` (timm's convention, the same as
            :class:`~mixup_fused.Mixup`'s targets). Dense targets are taken as
            already softened upstream (by Mixup / CutMix, say).
        target_threshold: when set, every target becomes ``1`` where it is
            ``> target_threshold`` and ``0`` elsewhere (after smoothing), e.g.
            ``0.2`` to train BCE on mixed targets with hard labels.
        weight: a tensor rescaling each element's loss, broadcast to ``x``'s
            shape (``[K]``: per class); a buffer.
        reduction: ``'mean'`` (the default) or ``'sum'`` over every element
            ``[B, K]``, or ``'none'`` for the elementwise losses.
        sum_classes: sum over classes, then average over the batch; as in timm
            this overrides ``reduction``.
        pos_weight: a number or a tensor weighting the positive term, broadcast
            to ``x``'s shape (``[K]``: per class); a buffer.
        smooth_dense: also smooth dense targets towards 0.5,
            ``target * (1 - eps) + eps / 2`` (multi-label; timm 1.0.31's
            argument).

    ``forward(x, target)``: logits ``x [B, K]`` and ``target`` int class ids
    ``[B]``, or dense targets of ``x``'s shape (probabilities such as mixed
    targets, or multi-hot rows; floating targets are used as they are, so the
    loss has their dtype as in torch, integer or bool multi-hot rows are cast to
    ``x``'s dtype). Class ids are checked to lie in ``[0, K)``, at the cost of
    one host-device synchronisation on a GPU.
    """

    def __init__(
        self,
        smoothing: float = 0.1,
        target_threshold: float | None = None,
        weight: torch.Tensor | None = None,
        reduction: str = "mean",
        sum_classes: bool = False,
        pos_weight: torch.Tensor | float | None = None,
        smooth_dense: bool = False,
    ):
        super().__init__()
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)):
            _checks._fail(TypeError, f"smoothing must be a float, got {type(smoothing).__name__}")
        if not 0.0 <= smoothing < 1.0:
            _checks._fail(ValueError, f"smoothing must be in [0, 1), got {smoothing}")
        if target_threshold is not None and (
            isinstance(target_threshold, bool) or not isinstance(target_threshold, (int, float))
        ):
            _checks._fail(TypeError, f"target_threshold must be a float or None, got {type(target_threshold).__name__}")
        _check_reduction(reduction)
        if weight is not None and not isinstance(weight, torch.Tensor):
            _checks._fail(TypeError, f"weight must be a tensor or None, got {type(weight).__name__}")
        if pos_weight is not None and not isinstance(pos_weight, torch.Tensor):
            if isinstance(pos_weight, bool) or not isinstance(pos_weight, (int, float)):
                _checks._fail(
                    TypeError, f"pos_weight must be a tensor, a number or None, got {type(pos_weight).__name__}"
                )
            pos_weight = torch.tensor(float(pos_weight))
        self.smoothing = smoothing
        self.target_threshold = target_threshold
        # As timm: with sum_classes the elementwise losses are summed over classes, then averaged.
        self.reduction = "none" if sum_classes else reduction
        self.sum_classes = sum_classes
        self.smooth_dense = smooth_dense
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def extra_repr(self) -> str:
        return (
            f"smoothing={self.smoothing}, target_threshold={self.target_threshold}, "
            f"reduction={self.reduction!r}, sum_classes={self.sum_classes}"
        )

    def _dense_target(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``target`` as the BCE target: class ids smoothed to one-hot rows, dense rows as given."""
        if target.shape == x.shape:
            if target.is_complex():
                _checks._fail(TypeError, f"target must be real, got {target.dtype}")
            if _is_label_dtype(target.dtype):  # multi-hot rows
                target = target.to(x.dtype)
            if self.smooth_dense and self.smoothing:
                target = target * (1.0 - self.smoothing) + 0.5 * self.smoothing
            return target
        B = x.shape[0]
        if target.dim() != 1 or target.shape[0] != B or x.dim() != 2:
            _checks._fail(
                ValueError,
                f"target must be class ids of shape [B] = [{B}] for logits x of shape [B, K], or dense targets of "
                f"x's shape {list(x.shape)}; got target {list(target.shape)} and x {list(x.shape)}",
            )
        if not _is_label_dtype(target.dtype) or target.dtype == torch.bool:
            _checks._fail(TypeError, f"target of shape [B] must hold integer class ids, got {target.dtype}")
        if target.device != x.device:
            _checks._fail(ValueError, f"target is on {target.device} but x is on {x.device}")
        K = x.shape[1]
        if not bool(((target >= 0) & (target < K)).all()):
            _checks.check_class_ids(target, K)
        off_value = self.smoothing / K
        on_value = 1.0 - self.smoothing + off_value
        onehot = torch.full((B, K), off_value, device=x.device, dtype=x.dtype)
        return onehot.scatter_(1, target.long().view(B, 1), on_value)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_logits("x", x)
        _checks.check_tensor("target", target)
        if x.dim() < 1:
            _checks._fail(ValueError, "x must have a batch dimension, got a 0-d tensor")
        target = self._dense_target(x, target)
        _check_broadcasts_to("weight", self.weight, x.shape)
        _check_broadcasts_to("pos_weight", self.pos_weight, x.shape)
        if self.target_threshold is not None:
            target = (target > self.target_threshold).to(target.dtype)
        loss = F.binary_cross_entropy_with_logits(
            x, target, self.weight, pos_weight=self.pos_weight, reduction=self.reduction
        )
        if self.sum_classes:
            return loss.sum(-1).mean()
        return loss


# ----------------------------------------------------------------------------
# Segmentation loss of blended rows
# ----------------------------------------------------------------------------


def _check_segmentation_args(logits, masks, perm, lam, ignore_index) -> None:
    """Metadata rules of :func:`mixed_segmentation_loss` (the values are checked after, in one read)."""
    _check_logits("logits", logits)
    if logits.dim() < 3:
        _checks._fail(
            ValueError,
            f"logits must have shape [B, K, *spatial] with at least one spatial dim, got {list(logits.shape)}",
        )
    B, spatial = logits.shape[0], tuple(logits.shape[2:])
    named = (("masks", masks), ("perm", perm)) + ((("lam", lam),) if isinstance(lam, torch.Tensor) else ())
    for name, t in named:
        _checks.check_tensor(name, t)
        if t.device != logits.device:
            _checks._fail(ValueError, f"{name} is on {t.device} but logits are on {logits.device}")
    if not _is_label_dtype(masks.dtype):
        _checks._fail(TypeError, f"masks must be an integer label map, got {masks.dtype}")
    if tuple(masks.shape) not in ((B, *spatial), (B, 1, *spatial)):
        _checks._fail(
            ValueError,
            f"masks must have shape [B, *spatial] = {[B, *spatial]} or [B, 1, *spatial] "
            f"(logits are {list(logits.shape)}), got {list(masks.shape)}",
        )
    if perm.dtype not in (torch.int64, torch.int32):
        _checks._fail(TypeError, f"perm must be an int64 tensor, got {perm.dtype}")
    if perm.dim() != 1 or perm.shape[0] != B:
        _checks._fail(ValueError, f"perm must have shape [B] = [{B}], got {list(perm.shape)}")
    if isinstance(lam, torch.Tensor):
        if not lam.dtype.is_floating_point:
            _checks._fail(TypeError, f"lam must be a float or a floating tensor, got {lam.dtype}")
        if lam.dim() != 1 or lam.shape[0] != B:
            _checks._fail(ValueError, f"lam must be a float or have shape [B] = [{B}], got {list(lam.shape)}")
    elif isinstance(lam, bool) or not isinstance(lam, (int, float)):
        _checks._fail(TypeError, f"lam must be a float or a floating tensor, got {type(lam).__name__}")
    elif not 0.0 <= lam <= 1.0:
        _checks._fail(ValueError, f"lam must be in [0, 1], got {lam}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        _checks._fail(TypeError, f"ignore_index must be an int, got {type(ignore_index).__name__}")


def _check_segmentation_values(masks, perm, lam, num_classes: int, ignore_index: int) -> None:
    """perm in ``[0, B)``, lam in ``[0, 1]``, labels in ``[0, K)`` or ``ignore_index``:
    reduced on the device and read back once, then the first failure is named."""
    B = perm.shape[0]
    labelled = masks != ignore_index
    flags = [
        ((perm >= 0) & (perm < B)).all(),
        (~labelled | ((masks >= 0) & (masks < num_classes))).all(),
    ]
    if isinstance(lam, torch.Tensor):
        flags.append(((lam >= 0) & (lam <= 1)).all())  # NaN fails both comparisons
    if B == 0 or bool(torch.stack(flags).all()):
        return
    for i, v in enumerate(perm.tolist()):
        if not 0 <= v < B:
            _checks._fail(ValueError, f"perm[{i}] = {v} is out of range [0, {B})")
    bad = labelled & ((masks < 0) | (masks >= num_classes))
    if bool(bad.any()):
        where = tuple(int(v) for v in bad.nonzero()[0])
        _checks._fail(
            ValueError,
            f"masks{list(where)} = {int(masks[where])} is neither a class id in [0, K = {num_classes}) "
            f"nor ignore_index = {ignore_index}",
        )
    for i, v in enumerate(lam.tolist()):
        if not 0.0 <= v <= 1.0:
            _checks._fail(ValueError, f"lam[{i}] = {v} must be in [0, 1]")


def mixed_segmentation_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    perm: torch.Tensor,
    lam,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Pixel-wise cross-entropy of blended rows against both of their label maps.

    Row ``i`` of the batch blends sample ``i`` (weight ``lam[i]``) with sample
    ``perm[i]``; a label map cannot be blended, so the row is scored against
    both maps: ``loss[i] = lam[i] * CE(logits[i], masks[i]) + (1 - lam[i]) *
    CE(logits[i], masks[perm[i]])``, where ``CE`` is torch's pixel-wise
    cross-entropy averaged over the row's pixels that are not
    ``ignore_index`` (what ``F.cross_entropy(..., reduction='mean')`` gives for
    one row). ``reduction='mean'`` (the default) averages ``loss`` over the
    rows, ``'sum'`` adds them and ``'none'`` returns them (``[B]``).

    A map with no labelled pixel (all ``ignore_index``) adds 0 to its row,
    where ``F.cross_entropy`` would give NaN; a row whose maps of nonzero
    weight are all unlabelled has loss 0 and is left out of the mean (and
    ``'mean'`` of a batch with no labelled pixel at all is 0).

    Args:
        logits: floating ``[B, K, *spatial]``, one or more spatial dims.
        masks: integer label maps ``[B, *spatial]`` or ``[B, 1, *spatial]``,
            values in ``[0, K)`` or ``ignore_index``.
        perm: int64 ``[B]``, each row's partner in ``[0, B)`` (``params.perm``
            of :class:`~mixup_fused.Mixup` with ``return_params=True``; the
            loss does not need it to be a permutation).
        lam: a float or a floating tensor ``[B]`` in ``[0, 1]``, the weight of
            each row's own map (``params.lam``). A row CutMix has cut already
            carries its partner's labels in its map (``Mixup`` moves the maps
            with the box): give it ``lam = 1``.
        ignore_index: the label of pixels that count for nothing.
        reduction: ``'mean'``, ``'sum'`` or ``'none'``.

    Arguments are checked (perm and lam in range, labels valid) with one
    host-device synchronisation on a GPU.
    """
    _check_reduction(reduction)
    _check_segmentation_args(logits, masks, perm, lam, ignore_index)
    if masks.dim() == logits.dim():
        masks = masks.squeeze(1)
    masks = masks.long()  # what nll_loss takes; also lets uint8 maps compare with a negative ignore_index
    _check_segmentation_values(masks, perm, lam, logits.shape[1], ignore_index)
    # Row sums of pixel losses in at least float32 whatever the logits' dtype.
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    B, pixel_dims = logits.shape[0], tuple(range(1, masks.dim()))
    if isinstance(lam, torch.Tensor):
        lam = lam.to(acc)
    else:
        lam = torch.full((B,), float(lam), dtype=acc, device=logits.device)
    log_probs = F.log_softmax(logits, dim=1)

    def row_cross_entropy(labels):
        """Per-row mean over labelled pixels (0 for a row with none), and whether the row has any."""
        pixel_loss = F.nll_loss(log_probs, labels, ignore_index=ignore_index, reduction="none")
        count = (labels != ignore_index).sum(pixel_dims)
        return pixel_loss.sum(pixel_dims, dtype=acc) / count.clamp(min=1), count > 0

    own, own_labelled = row_cross_entropy(masks)
    partner, partner_labelled = row_cross_entropy(masks[perm.long()])
    loss = lam * own + (1 - lam) * partner
    if reduction == "none":
        return loss.to(logits.dtype)
    if reduction == "sum":
        return loss.sum().to(logits.dtype)
    counted = (own_labelled & (lam > 0)) | (partner_labelled & (lam < 1))
    return (loss.sum() / counted.sum().clamp(min=1)).to(logits.dtype)
