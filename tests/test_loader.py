"""PrefetchLoader: batches moved to the device, normalised and mixed there."""

from __future__ import annotations

import torch
from conftest import IMAGENET_MEAN as MEAN
from conftest import IMAGENET_STD as STD

import mixup_fused as mf
from mixup_fused.loader import PrefetchLoader
from mixup_fused.reference import normalize_reference


def test_prefetch_loader_cpu_normalises_and_mixes():
    g = torch.Generator().manual_seed(2)
    batches = [(torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8, generator=g), torch.arange(4)) for _ in range(3)]
    m = mf.Mixup(
        num_classes=4, mean=MEAN, std=STD, out_dtype=torch.bfloat16, generator=torch.Generator().manual_seed(1)
    )
    ref_m = mf.Mixup(num_classes=4, mean=MEAN, std=STD, out_dtype=torch.bfloat16,
                     generator=torch.Generator().manual_seed(1))  # fmt: skip
    out = list(PrefetchLoader(batches, m, device="cpu", channels_last=True))
    assert len(out) == 3
    for (x, y), (xb, tb) in zip(out, batches, strict=True):
        rx, ry = ref_m(xb.contiguous(memory_format=torch.channels_last), tb)
        assert x.dtype == torch.bfloat16 and torch.equal(x, rx) and torch.equal(y, ry)
        assert x.is_contiguous(memory_format=torch.channels_last)
    plain = list(PrefetchLoader(batches, device="cpu", mean=MEAN, std=STD))
    ref = normalize_reference(batches[0][0], torch.tensor(MEAN), torch.tensor(STD))
    assert torch.allclose(plain[0][0], ref)
