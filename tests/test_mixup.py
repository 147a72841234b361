"""The Mixup class beyond timm: 'half' mode, odd batches, one launch per call,
generators, random pairing, autograd, features with soft targets, every
backend, in place on any layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import MIXUP_CONFIGS as CONFIGS

import mixup_fused
from mixup_fused import Mixup
from mixup_fused.reference import NO_BOX, mix_images_reference, smooth_targets

B, C, H, W = 10, 3, 16, 16
K = 10


@pytest.mark.parametrize("batch_size", [1, 2, 5, 8])
def test_half_semantics(batch_size):
    """Sample k < ceil(B/2) mixes with B-1-k; an odd batch's middle sample pairs with itself."""
    x = torch.randn(batch_size, C, H, W)
    target = torch.randint(0, K, (batch_size,))
    m = Mixup(mode="half", mixup_alpha=1.0, cutmix_alpha=1.0, num_classes=K, label_smoothing=0.1)
    np.random.seed(1)
    params = m.sample_params(batch_size, (H, W))
    xo, yo = m.apply(x.clone(), target, params)
    n = batch_size - batch_size // 2
    assert xo.shape[0] == yo.shape[0] == n
    full_x = mix_images_reference(x, params.perm, params.lam, params.boxes)
    torch.testing.assert_close(xo, full_x[:n], rtol=0, atol=1e-6)
    if batch_size % 2:
        mid = batch_size // 2
        assert torch.equal(xo[mid], x[mid])
        torch.testing.assert_close(yo[mid], smooth_targets(target[mid : mid + 1], K, 0.1)[0], rtol=0, atol=0)


def test_half_random_pairing_stays_in_second_half():
    m = Mixup(mode="half", num_classes=K, pairing="random", generator=torch.Generator().manual_seed(0))
    for batch_size in (6, 7, 10):
        perm = m.sample_params(batch_size).perm
        h = batch_size // 2
        assert (perm[:h] >= batch_size - h).all()
        assert torch.equal(perm[perm], torch.arange(batch_size))


# ----------------------------------------------------------------------------
# Beyond timm: odd batches, one launch, generator, random pairing, autograd
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", ["switch", "switch_prob", "switch_minmax"])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
@pytest.mark.parametrize("batch_size", [1, 3, 7])
@pytest.mark.parametrize("source", ["numpy", "generator"])
def test_odd_batches(mode, batch_size, cfg, source):
    gen = torch.Generator().manual_seed(batch_size) if source == "generator" else None
    m = Mixup(mode=mode, num_classes=K, label_smoothing=0.1, generator=gen, **CONFIGS[cfg])
    x = torch.randn(batch_size, C, H, W)
    target = torch.randint(0, K, (batch_size,))
    np.random.seed(batch_size)
    for _ in range(3):
        params = m.sample_params(batch_size, (H, W))
        xo, yo = m.apply(x.clone(), target, params)
        mid = batch_size // 2
        assert params.perm[mid] == mid and params.lam[mid] == 1.0
        assert torch.equal(params.perm[params.perm], torch.arange(batch_size))
        n = batch_size - batch_size // 2 if mode == "half" else batch_size
        exact = mix_images_reference(x, params.perm, params.lam, params.boxes)[:n]
        torch.testing.assert_close(xo, exact, rtol=0, atol=1e-6)
        assert torch.equal(xo[mid], x[mid]), "the self-paired sample is unchanged"
        s = smooth_targets(target, K, 0.1)
        y = params.lam.float().unsqueeze(1) * s + (1 - params.lam.float().unsqueeze(1)) * s[params.perm]
        torch.testing.assert_close(yo, y[:n], rtol=0, atol=2**-22)
        torch.testing.assert_close(yo[mid], s[mid], rtol=0, atol=0)


@pytest.mark.parametrize("cfg", CONFIGS.keys())
@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_one_launch_per_call(monkeypatch, mode, cfg):
    """Every mode is at most one call of the fused op, also with Mixup and CutMix samples in one batch."""
    from mixup_fused import _backend as ops

    calls = []
    for name in ("run_mix", "run_mix_"):
        real = getattr(ops, name)

        def counting(*args, _real=real):
            calls.append(args[5])  # boxes
            return _real(*args)

        monkeypatch.setattr(ops, name, counting)
    m = Mixup(mode=mode, num_classes=K, **CONFIGS[cfg])
    both_kinds = 0
    np.random.seed(0)
    for _ in range(8):
        x = torch.randn(B, C, H, W)
        params = m.sample_params(B, (H, W))
        before = len(calls)
        m.apply(x, torch.randint(0, K, (B,)), params)
        assert len(calls) - before == (1 if params.mixes else 0)
        if params.boxes is not None:
            rows = [tuple(r) for r in params.boxes.tolist()]
            both_kinds += NO_BOX in rows and any(r not in (NO_BOX, (0, 0, 0, 0)) for r in rows)
    if mode in ("pair", "elem") and cfg in ("switch", "switch_minmax", "switch_nocorrect"):
        assert both_kinds > 0, "expected batches that mix some samples and cut others"


@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_generator_reproducible_and_leaves_numpy_alone(mode):
    x = torch.randn(B, C, H, W)
    target = torch.randint(0, K, (B,))
    outs = []
    for _ in range(2):
        np.random.seed(123)
        state = np.random.get_state()[1].copy()
        m = Mixup(
            mode=mode, mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K, generator=torch.Generator().manual_seed(9)
        )
        outs.append(m(x.clone(), target))
        assert np.array_equal(np.random.get_state()[1], state) and np.random.get_state()[2] == 624
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("source", ["numpy", "generator"])
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_random_pairing(mode, source):
    gen = torch.Generator().manual_seed(3) if source == "generator" else None
    m = Mixup(mode=mode, mixup_alpha=1.0, cutmix_alpha=1.0, num_classes=K, pairing="random", generator=gen)
    x = torch.randn(B, C, H, W)
    target = torch.randint(0, K, (B,))
    np.random.seed(3)
    perms = set()
    for _ in range(6):
        params = m.sample_params(B, (H, W))
        perm = params.perm
        assert torch.equal(perm[perm], torch.arange(B)) and (perm != torch.arange(B)).all()
        perms.add(tuple(perm.tolist()))
        xo, yo = m.apply(x.clone(), target, params)
        torch.testing.assert_close(xo, mix_images_reference(x, perm, params.lam, params.boxes), rtol=0, atol=1e-6)
        if mode == "pair":
            assert torch.equal(params.lam, params.lam[perm]), "both samples of a pair share lam"
    assert len(perms) > 1


def test_requires_grad_mixes_out_of_place():
    """Manifold-Mixup style use: x that requires grad is not written; gradients flow."""
    x = torch.randn(B, 5, 7, requires_grad=True)
    target = torch.randint(0, K, (B,))
    m = Mixup(mixup_alpha=1.0, mode="elem", num_classes=K)
    np.random.seed(0)
    params = m.sample_params(B)
    xo, _ = m.apply(x, target, params)
    assert xo is not x
    xo.sum().backward()
    # d/dx_k of sum_i (lam_i x_i + (1 - lam_i) x_perm(i)) = lam_k + 1 - lam_{perm^-1(k)}
    lam = params.lam.float()
    expected = (lam + 1 - lam[params.perm]).view(B, 1, 1).expand_as(x)
    torch.testing.assert_close(x.grad, expected)


def test_features_and_soft_targets():
    """Mixup of [B, T, D] features with soft [B, K] targets (beyond timm's single-label path)."""
    x = torch.randn(B, 4, 6)
    soft = torch.softmax(torch.randn(B, K), -1)
    m = Mixup(mixup_alpha=1.0, mode="elem", num_classes=K, label_smoothing=0.2)
    np.random.seed(0)
    params = m.sample_params(B)
    xo, yo = m.apply(x.clone(), soft, params)
    lam = params.lam.float().unsqueeze(1)
    s = soft * 0.8 + 0.2 / K
    torch.testing.assert_close(yo, lam * s + (1 - lam) * s[params.perm])
    torch.testing.assert_close(xo, mix_images_reference(x, params.perm, params.lam))


@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_backends_agree(mode, backend):
    x = torch.randn(B, C, H, W)
    try:
        mixup_fused._backend.resolve_backend(backend, x)
    except ValueError as err:
        pytest.skip(str(err))
    target = torch.randint(0, K, (B,))
    kw = dict(mode=mode, mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K)
    for seed in range(3):
        np.random.seed(seed)
        xa, ya = Mixup(**kw)(x.clone(), target)
        np.random.seed(seed)
        xb, yb = Mixup(backend=backend, **kw)(x.clone(), target)
        torch.testing.assert_close(xa, xb, rtol=0, atol=1e-6)
        torch.testing.assert_close(ya, yb, rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
@pytest.mark.parametrize("mode", ["batch", "elem", "half"])
def test_in_place_on_any_layout(mode, layout):
    """x keeps its object, layout and storage; the mix is the same as on a contiguous batch."""
    if layout == "channels_last":
        x = torch.randn(B, C, H, W).contiguous(memory_format=torch.channels_last)
    else:
        x = torch.randn(B, C, H, 2 * W)[..., ::2]
    x0 = x.clone()
    target = torch.randint(0, K, (B,))
    m = Mixup(mode=mode, mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K)
    np.random.seed(2)
    params = m.sample_params(B, (H, W))
    ptr, strides = x.data_ptr(), x.stride()
    xo, _ = m.apply(x, target, params)
    assert xo.data_ptr() == ptr and x.stride() == strides
    n = xo.shape[0]
    torch.testing.assert_close(xo, mix_images_reference(x0, params.perm, params.lam, params.boxes)[:n], rtol=0, atol=0)
