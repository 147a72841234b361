"""Soft-target cross-entropy: the loss that goes with mixed targets.

timm's ``SoftTargetCrossEntropy``: ``sum(-target * log_softmax(x, -1), -1).mean()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["SoftTargetCrossEntropy", "soft_target_cross_entropy"]

_REDUCTIONS = ("mean", "sum", "none")


def soft_target_cross_entropy(x: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of logits ``x [..., K]`` against probabilities ``target [..., K]``.

    ``reduction='mean'`` (timm's, the default) averages the per-sample losses
    ``sum(-target * log_softmax(x, -1), -1)``; ``'sum'`` adds them and
    ``'none'`` returns them.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"mixup_fused: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not isinstance(x, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("mixup_fused: soft_target_cross_entropy expects tensors x (logits) and target")
    if x.shape != target.shape:
        raise ValueError(
            f"mixup_fused: logits x {list(x.shape)} and target {list(target.shape)} must have the same shape"
        )
    loss = torch.sum(-target * F.log_softmax(x, dim=-1), dim=-1)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class SoftTargetCrossEntropy(torch.nn.Module):
    """timm's ``SoftTargetCrossEntropy`` (``forward(x, target)``), with an optional ``reduction``."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"mixup_fused: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_target_cross_entropy(x, target, self.reduction)
