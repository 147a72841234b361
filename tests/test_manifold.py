"""Manifold Mixup: ``mix_features`` on hidden features, its gradients, and a
tiny model that trains with it."""

from __future__ import annotations

import numpy as np
import torch

import mixup_fused as mf
from mixup_fused.reference import mix_reference


def test_mix_features_gradcheck(device, backend):
    h = torch.randn(5, 4, 3, dtype=torch.float64, device=device, requires_grad=True)
    perm = torch.tensor([2, 0, 4, 1, 3], device=device)
    lam = torch.rand(5, dtype=torch.float64, device=device)
    assert torch.autograd.gradcheck(lambda h: mf.mix_features(h, perm, lam, backend=backend), (h,))


def test_mix_features_with_targets():
    h = torch.randn(4, 6)
    perm = torch.tensor([1, 0, 3, 2])
    t = torch.tensor([0, 1, 2, 0])
    hm, y = mf.mix_features(h, perm, 0.25, t, num_classes=3)
    ref, ref_y = mix_reference(h, t, perm, 0.25, num_classes=3)
    assert torch.equal(hm, ref) and torch.allclose(y, ref_y)


def test_manifold_mixup_trains_a_tiny_model():
    torch.manual_seed(0)
    K, B = 3, 32
    centers = torch.randn(K, 10) * 3
    blocks = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU()),
                                  torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU())])  # fmt: skip
    head = torch.nn.Linear(32, K)
    params = list(blocks.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    gen = np.random.default_rng(0)

    def batch():
        t = torch.randint(0, K, (B,))
        return centers[t] + torch.randn(B, 10), t

    def evaluate():
        x, t = batch()
        with torch.no_grad():
            h = x
            for blk in blocks:
                h = blk(h)
            return (head(h).argmax(1) == t).float().mean().item()

    losses = []
    for _ in range(60):
        x, t = batch()
        k = int(gen.integers(0, len(blocks) + 1))  # 0: mix the inputs, else after block k-1
        lam = float(gen.beta(2.0, 2.0))
        perm = torch.randperm(B)
        h, y = (x, None)
        for j, blk in enumerate(blocks):
            if j == k:
                h, y = mf.mix_features(h, perm, lam, t, num_classes=K)
            h = blk(h)
        if y is None:
            h, y = mf.mix_features(h, perm, lam, t, num_classes=K)
        loss = mf.soft_target_cross_entropy(head(h), y)
        opt.zero_grad()
        loss.backward()
        assert blocks[0][0].weight.grad is not None and torch.isfinite(blocks[0][0].weight.grad).all()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert evaluate() > 0.8
