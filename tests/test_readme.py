"""The README's examples run as written (on small tensors defined here)."""

from __future__ import annotations

import os
import re

import numpy as np
import torch
import torch.nn.functional as F

import mixup_fused as mf

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _block(marker: str) -> str:
    """The README's python code block that contains ``marker``."""
    with open(README) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"{marker!r} is in {len(found)} README blocks"
    return found[0]


def test_segmentation_example():
    B, K, H, W = 4, 5, 16, 12
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, 3, H, W, generator=g)
    target = torch.randint(0, K, (B,), generator=g)
    maps = torch.randint(0, K, (B, H, W), generator=g)
    maps[:, 0] = 255
    ns = {"mf": mf, "x": x, "target": target, "maps": maps, "K": K, "B": B}
    np.random.seed(0)
    exec(_block("classmix_masks"), ns)
    assert ns["maps"].shape == (B, H, W) and ns["x"].shape == (B, 3, H, W)
    assert set(ns["maps"].unique().tolist()) <= set(range(K)) | {255}


def test_audio_and_video_example():
    B, K = 4, 6
    g = torch.Generator().manual_seed(1)
    wave = torch.randn(B, 1, 400, generator=g)
    video = torch.randn(B, 3, 4, 10, 12, generator=g)
    target = torch.randint(0, K, (B,), generator=g)
    out = torch.randn(B, K, generator=g)
    ns = {"mf": mf, "F": F, "wave": wave, "video": video, "target": target, "out": out, "K": K}
    np.random.seed(1)
    exec(_block("wave, y, p"), ns)
    assert ns["loss"].shape == (B,) and bool(torch.isfinite(ns["loss"]).all())
    p = ns["p"]
    assert p.boxes is None or p.boxes.shape == (B, 6)
