"""torchvision v2's draws (``MixUp`` / ``CutMix``), from torch's RNG in torchvision's order."""

from __future__ import annotations

import math

import torch

__all__ = ["torchvision_cutmix_box", "torchvision_lam"]


def torchvision_lam(alpha: float, *, generator: torch.Generator | None = None) -> float:
    """torchvision v2's draw: ``float(Beta(tensor([alpha]), tensor([alpha])).sample(()))``.

    Same float32 Dirichlet call on the CPU, so with ``generator=None`` it
    consumes torch's global RNG exactly as torchvision does.
    """
    if not alpha > 0:
        raise ValueError(f"mixup_fused: alpha must be > 0, got {alpha}")
    concentration = torch.tensor([[float(alpha), float(alpha)]])
    return float(torch._sample_dirichlet(concentration, generator=generator)[0, 0])


def torchvision_cutmix_box(
    height: int, width: int, lam: float, *, generator: torch.Generator | None = None
) -> tuple[tuple[int, int, int, int], float]:
    """torchvision v2 ``CutMix``'s box: returns ``((y0, y1, x0, x1), lam_adjusted)``.

    The centre is drawn as torchvision draws it (x first, then y); the box has
    half sides ``int(0.5 * sqrt(1 - lam) * side)``, is clipped to the image,
    and lam is corrected to the clipped area.
    """
    r_x = int(torch.randint(width, size=(1,), generator=generator))
    r_y = int(torch.randint(height, size=(1,), generator=generator))
    r = 0.5 * math.sqrt(1.0 - lam)
    r_w_half, r_h_half = int(r * width), int(r * height)
    x0, y0 = max(r_x - r_w_half, 0), max(r_y - r_h_half, 0)
    x1, y1 = min(r_x + r_w_half, width), min(r_y + r_h_half, height)
    lam_adjusted = float(1.0 - (x1 - x0) * (y1 - y0) / (width * height))
    return (y0, y1, x0, x1), lam_adjusted
