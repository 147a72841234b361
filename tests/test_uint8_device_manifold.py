"""Issue 5: uint8 in / normalised mixed out, device-side sampling, Manifold Mixup."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mixup_fused as mf
from mixup_fused import sampling
from mixup_fused.loader import PrefetchLoader
from mixup_fused.reference import NO_BOX, mix_reference, normalize_reference

MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)  # timm's IMAGENET_DEFAULT_MEAN in 0..255 units
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
OUT_TOL = {torch.float32: 1e-5, torch.bfloat16: 2**-7, torch.float16: 2**-10}


def _triton_ok():
    try:
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        mf._backend.resolve_backend("triton", torch.empty(1, device=dev))
        return True
    except ValueError:
        return False


BACKENDS = ["cpp", "reference"] + (["triton"] if _triton_ok() else [])


def _dev(backend):
    return "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"


def _close(out, ref, dtype):
    # Relative to the magnitude of normalised pixels (|v| <= ~2.7).
    tol = OUT_TOL[dtype] * 4
    assert out.dtype == dtype
    assert torch.allclose(out.float(), ref.float(), atol=tol, rtol=OUT_TOL[dtype]), (
        (out.float() - ref.float()).abs().max()
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cut", [False, True])
def test_uint8_normalise_and_mix_matches_two_step(backend, out_dtype, channels_last, cut):
    g = torch.Generator().manual_seed(5)
    B, H, W = 5, 7, 9
    dev = _dev(backend)
    x = torch.randint(0, 256, (B, 3, H, W), dtype=torch.uint8, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t = torch.randint(0, 10, (B,), generator=g)
    perm = torch.randperm(B, generator=g)
    lam = torch.rand(B, generator=g)
    boxes = torch.tensor([[1, 5, 2, 7], list(NO_BOX), [0, H, 0, W], [3, 3, 0, W], [0, 2, 7, 9]]) if cut else None
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    out, y = mf.mix(
        x.to(dev),
        t.to(dev),
        perm.to(dev),
        lam.to(dev),
        num_classes=10,
        label_smoothing=0.1,
        boxes=None if boxes is None else boxes.to(dev),
        mean=MEAN,
        std=STD,
        out_dtype=out_dtype,
        backend=backend,
    )
    # Two steps: normalise in float32, then mix; cast once.
    xn = normalize_reference(x, mean, std)
    ref, ref_y = mix_reference(xn, t, perm, lam, num_classes=10, label_smoothing=0.1, boxes=boxes)
    _close(out.cpu(), ref.to(out_dtype), out_dtype)
    assert torch.allclose(y.cpu(), ref_y, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_uint8_memory_format_argument_and_errors():
    x = torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8)
    t, perm = torch.arange(4), torch.arange(4).flip(0)
    out, _ = mf.mix(x, t, perm, 0.3, num_classes=4, mean=MEAN, std=STD, memory_format=torch.channels_last)
    assert out.is_contiguous(memory_format=torch.channels_last) and out.dtype == torch.float32
    with pytest.raises(TypeError, match="x must be a floating tensor"):
        mf.mix(x, t, perm, 0.3, num_classes=4)
    with pytest.raises(ValueError, match="mean and std"):
        mf.mix(x, t, perm, 0.3, num_classes=4, mean=MEAN)
    with pytest.raises(ValueError, match="std"):
        mf.mix(x, t, perm, 0.3, num_classes=4, mean=MEAN, std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="mean"):
        mf.mix(x, t, perm, 0.3, num_classes=4, mean=(1.0, 2.0), std=STD)
    with pytest.raises(ValueError, match="inplace"):
        mf.mix(x.float(), t, perm, 0.3, num_classes=4, mean=MEAN, std=STD, inplace=True)


@pytest.mark.parametrize("mode", ["batch", "elem", "pair"])
def test_mixup_class_uint8_path(mode):
    g = torch.Generator().manual_seed(11)
    x = torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8, generator=g)
    t = torch.randint(0, 7, (6,), generator=g)
    m = mf.Mixup(
        mixup_alpha=0.8,
        cutmix_alpha=1.0,
        mode=mode,
        num_classes=7,
        generator=torch.Generator().manual_seed(3),
        mean=MEAN,
        std=STD,
        out_dtype=torch.bfloat16,
    )
    params = m.sample_params(6, (12, 12))
    out, y = m.apply(x, t, params)
    assert x.dtype == torch.uint8  # the uint8 batch is not written
    xn = normalize_reference(x, torch.tensor(MEAN), torch.tensor(STD))
    ref, ref_y = mix_reference(
        xn, t, params.perm, params.lam.float(), num_classes=7, label_smoothing=0.1, boxes=params.boxes
    )
    _close(out, ref.to(torch.bfloat16), torch.bfloat16)
    assert torch.allclose(y, ref_y, atol=1e-6)


def test_mixup_uint8_when_nothing_mixes_still_normalises():
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    m = mf.Mixup(num_classes=3, mean=MEAN, std=STD, prob=0.0)
    out, y = m(x, torch.tensor([0, 1, 2, 0]))
    ref = normalize_reference(x, torch.tensor(MEAN), torch.tensor(STD))
    assert torch.equal(out, ref)
    assert torch.allclose(y.sum(1), torch.ones(4))


# ----------------------------------------------------------------------------
# Beta sampler statistics (a biased sampler -- e.g. Johnk's method without its
# rejection step -- fails these)
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.2, 0.4, 1.0, 2.0, 8.0])
def test_beta_sampler_moments_and_ks(alpha):
    from scipy import stats

    n = 200_000
    lam = sampling.sample_beta(alpha, n, generator=torch.Generator().manual_seed(1234)).numpy()
    assert lam.min() >= 0.0 and lam.max() <= 1.0
    var = 1.0 / (4.0 * (2.0 * alpha + 1.0))
    se_mean = np.sqrt(var / n)
    assert abs(lam.mean() - 0.5) < 5 * se_mean
    # Variance of the sample variance: (mu4 - var^2) / n, with mu4 of Beta(a, a).
    mu4 = 3.0 * (2 * alpha + 1) * var**2 * ((alpha + 1) / (2 * alpha + 3)) * 1.0
    assert abs(lam.var() - var) < 5 * np.sqrt(max(mu4 - var**2, 1e-12) / n) + 1e-4
    ks = stats.kstest(lam[:50_000], stats.beta(alpha, alpha).cdf)
    assert ks.pvalue > 1e-3, ks


def test_device_sampler_draws_are_beta_distributed():
    from scipy import stats

    m = mf.Mixup(mixup_alpha=0.4, mode="elem", num_classes=2, sampler="device")
    torch.manual_seed(0)
    lams = torch.cat([m.sample_params(4096, None, "cpu").lam for _ in range(5)]).double().numpy()
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 1e-3


# ----------------------------------------------------------------------------
# Device-side sampling: no host reads, compiles without graph breaks
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_device_sampler_reads_nothing_back(mode):
    x = torch.randn(6, 3, 8, 8)
    t = torch.randint(0, 5, (6,))
    m = mf.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, num_classes=5, sampler="device", pairing="random")
    ref_x = x.clone()
    torch.manual_seed(7)
    params = m.sample_params(6, (8, 8), "cpu")
    torch.manual_seed(7)
    mp = pytest.MonkeyPatch()
    try:
        for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
            mp.setattr(torch.Tensor, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("host read")))
        out, y = m(x, t)
    finally:
        mp.undo()
    ref, ref_y = mix_reference(ref_x, t, params.perm, params.lam.float(), num_classes=5, label_smoothing=0.1,
                               boxes=params.boxes)  # fmt: skip
    n = out.shape[0]
    assert torch.equal(out, ref[:n]) and torch.allclose(y, ref_y[:n], atol=1e-6)


def test_device_sampler_generator_on_other_device_is_an_error():
    m = mf.Mixup(num_classes=3, sampler="device", generator=torch.Generator(device="cpu"))
    with pytest.raises(ValueError, match="generator"):
        m.sample_params(4, None, "meta")
    with pytest.raises(ValueError, match="sampler"):
        mf.Mixup(num_classes=3, sampler="gpu")


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_device_sampled_step_compiles_fullgraph(mode):
    torch._dynamo.reset()
    m = mf.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, num_classes=5, sampler="device")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))

    def step(x, t):
        x, y = m(x, t)
        return mf.soft_target_cross_entropy(model(x), y)

    compiled = torch.compile(step, fullgraph=True)
    x = torch.randn(4, 3, 8, 8)
    t = torch.randint(0, 5, (4,))
    torch.manual_seed(3)
    loss_c = compiled(x.clone(), t)
    assert torch.isfinite(loss_c)


# ----------------------------------------------------------------------------
# Manifold Mixup: mix_features
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_mix_features_gradcheck(backend):
    dev = _dev(backend)
    h = torch.randn(5, 4, 3, dtype=torch.float64, device=dev, requires_grad=True)
    perm = torch.tensor([2, 0, 4, 1, 3], device=dev)
    lam = torch.rand(5, dtype=torch.float64, device=dev)
    assert torch.autograd.gradcheck(lambda h: mf.mix_features(h, perm, lam, backend=backend), (h,))


def test_mix_features_with_targets_and_errors():
    h = torch.randn(4, 6)
    perm = torch.tensor([1, 0, 3, 2])
    t = torch.tensor([0, 1, 2, 0])
    hm, y = mf.mix_features(h, perm, 0.25, t, num_classes=3)
    ref, ref_y = mix_reference(h, t, perm, 0.25, num_classes=3)
    assert torch.equal(hm, ref) and torch.allclose(y, ref_y)
    with pytest.raises(ValueError, match="num_classes"):
        mf.mix_features(h, perm, 0.25, t)
    with pytest.raises(ValueError, match="num_classes"):
        mf.mix_features(h, perm, 0.25, num_classes=3)


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


# ----------------------------------------------------------------------------
# PrefetchLoader
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# GPU: graph capture with a changing generator state
# ----------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_capture_and_replay_of_a_device_sampled_step():
    dev = torch.device("cuda")
    B, K = 8, 10
    m = mf.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=K, sampler="device")
    static_x = torch.randn(B, 3, 16, 16, device=dev)
    static_t = torch.randint(0, K, (B,), device=dev)
    src = static_x.clone()

    def step():
        static_x.copy_(src)
        params = m.sample_params(B, (16, 16), dev)
        out, y = m.apply(static_x, static_t, params)
        return out, y, params.lam, params.perm, params.boxes

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):  # warm-up: compile the Triton kernel before capture
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = step()
    seen = []
    for _ in range(4):
        graph.replay()
        torch.cuda.synchronize()
        out, y, lam, perm, boxes = (o.clone() if o is not None else None for o in outs)
        ref, ref_y = mix_reference(src, static_t, perm, lam.float(), num_classes=K, label_smoothing=0.1, boxes=boxes)
        assert torch.equal(out, ref) and torch.allclose(y, ref_y, atol=1e-6)
        seen.append(lam.cpu())
    # The generator state advances between replays: fresh draws each time.
    assert not all(torch.equal(seen[0], s_) for s_ in seen[1:])
