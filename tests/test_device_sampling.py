"""Device-side sampling (``sampler="device"``, ``TorchSampler(host_hints=False)``):
no value is read back on the host, a sampled step compiles without graph
breaks, and on a GPU it captures into a CUDA graph whose replays draw afresh."""

from __future__ import annotations

import pytest
import torch

import mixup_fused as mf
from mixup_fused import sampling
from mixup_fused.reference import mix_reference
from mixup_fused.sampling import MixupConfig, TorchSampler

HOST_READS = ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero")


def _forbid_host_reads(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("host read of a device value")

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, forbidden)


@pytest.mark.parametrize("mode", sampling.MODES)
def test_torch_sampler_reads_nothing_back(monkeypatch, mode):
    """With host hints off (the device path) the sampler never reads a tensor
    value on the host: nothing that would synchronise with a GPU."""
    _forbid_host_reads(monkeypatch)
    sampler = TorchSampler(torch.Generator().manual_seed(0), host_hints=False)
    switching = MixupConfig(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.7, switch_prob=0.4)
    for cfg in (switching, MixupConfig(cutmix_minmax=(0.2, 0.8)), MixupConfig(mixup_alpha=1.0)):
        for batch_size in (1, 6, 7):
            params = sampler.sample(cfg, mode, batch_size, (16, 12), pairing="random")
            assert params.mixes is None and params.lam.shape == (batch_size,)
    monkeypatch.undo()


@pytest.mark.parametrize("mode", ["batch", "pair", "elem", "half"])
def test_device_sampler_reads_nothing_back(monkeypatch, mode):
    """``Mixup(sampler="device")`` draws and mixes without a host read."""
    x = torch.randn(6, 3, 8, 8)
    t = torch.randint(0, 5, (6,))
    m = mf.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, num_classes=5, sampler="device", pairing="random")
    ref_x = x.clone()
    torch.manual_seed(7)
    params = m.sample_params(6, (8, 8), "cpu")
    torch.manual_seed(7)
    _forbid_host_reads(monkeypatch)
    out, y = m(x, t)
    monkeypatch.undo()
    ref, ref_y = mix_reference(ref_x, t, params.perm, params.lam, num_classes=5, label_smoothing=0.1,
                               boxes=params.boxes)  # fmt: skip
    n = out.shape[0]
    assert torch.equal(out, ref[:n]) and torch.allclose(y, ref_y[:n], atol=1e-6)


def _loss_bound(model, x, y):
    """How far two float32 evaluations of the soft-target cross entropy may
    be apart (eager and inductor associate the sums differently): each within
    n roundings of its terms -- K products and sums per row, B rows, and a few
    ulps for exp and log in the log-sum-exp -- of y * (|z| + |logsumexp z|)."""
    from conftest import error_bound

    with torch.no_grad():
        z = model(x).double()
        mag = (y.double() * (z.abs() + torch.logsumexp(z, 1, keepdim=True).abs())).sum(1).mean()
    B, K = y.shape
    return float(2 * error_bound(mag, K + B + 8, torch.float32))


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_device_sampled_step_compiles_fullgraph(mode, grad):
    """The compiled step (one graph, no breaks) gives eager's numbers: the
    mixed images and targets bit for bit and the loss within its rounding
    bound. Without autograd it also makes eager's draws from the same seed;
    with it, AOTAutograd may order the draws differently, so eager replays the
    compiled step's own draws."""
    torch._dynamo.reset()
    m = mf.Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode=mode, num_classes=5, sampler="device")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))

    def step(x, t):
        params = m.sample_params(x.shape[0], tuple(x.shape[-2:]), x.device)
        x, y = m.apply(x, t, params)
        return x, y, mf.soft_target_cross_entropy(model(x), y), params.lam, params.perm, params.boxes

    x = torch.randn(4, 3, 8, 8)
    t = torch.randint(0, 5, (4,))
    # Inductor's own RNG would draw other numbers than eager's.
    with torch._inductor.config.patch(fallback_random=True), torch.set_grad_enabled(grad):
        compiled = torch.compile(step, fullgraph=True)
        for seed in (3, 4):
            torch.manual_seed(seed)
            xc, yc, loss_c, lam, perm, boxes = compiled(x.clone(), t)
            if not grad:
                torch.manual_seed(seed)
                _, _, _, lam_e, perm_e, boxes_e = step(x.clone(), t)
                assert torch.equal(lam, lam_e) and torch.equal(perm, perm_e), "compiled draws differ from eager's"
                assert (boxes is None) == (boxes_e is None) and (boxes is None or torch.equal(boxes, boxes_e))
            ex, ey = mix_reference(x, t, perm, lam, num_classes=5, label_smoothing=0.1, boxes=boxes)
            assert torch.equal(xc, ex) and torch.equal(yc, ey), "compiled images or targets differ from eager"
            loss_e = mf.soft_target_cross_entropy(model(ex), ey)
            assert loss_c.requires_grad == grad
            lc, le = float(loss_c.detach()), float(loss_e.detach())
            assert abs(lc - le) <= _loss_bound(model, ex, ey), (lc, le)


@pytest.mark.gpu
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
        ref, ref_y = mix_reference(src, static_t, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)
        assert torch.equal(out, ref) and torch.allclose(y, ref_y, atol=1e-6)
        seen.append(lam.cpu())
    # The generator state advances between replays: fresh draws each time.
    assert not all(torch.equal(seen[0], s_) for s_ in seen[1:])


def test_mix_targets_without_checks_reads_nothing_back(monkeypatch):
    """``mix_targets(check=False)`` (what ``Mixup`` passes on a GPU when nothing
    is mixed) reads no value back; with the checks on it does."""
    t, perm = torch.tensor([0, 3, 1, 2]), torch.tensor([3, 2, 1, 0])
    want = mf.mix_targets(t, perm, 1.0, num_classes=4, label_smoothing=0.1)
    _forbid_host_reads(monkeypatch)
    assert torch.equal(mf.mix_targets(t, perm, 1.0, num_classes=4, label_smoothing=0.1, check=False), want)
    with pytest.raises(AssertionError, match="host read"):
        mf.mix_targets(t, perm, 1.0, num_classes=4, label_smoothing=0.1)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", sampler="device"),
        dict(mixup_alpha=1.0, cutmix_alpha=1.0, mode="batch", sampler="device", pairing="random"),
        dict(mixup_alpha=1.0, prob=0.0),  # host draws, nothing mixed: only the targets are built
    ],
    ids=["device-elem", "device-batch", "host-unmixed"],
)
def test_a_step_does_not_synchronise_on_the_gpu(kwargs):
    """``torch.cuda.set_sync_debug_mode("error")`` passes over a step after a warm-up call."""
    m = mf.Mixup(num_classes=10, **kwargs)
    x = torch.randn(8, 3, 16, 16, device="cuda")
    t = torch.randint(0, 10, (8,), device="cuda")
    m(x.clone(), t)  # warm-up: compiles, caches and uploads constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, y = m(x.clone(), t)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == x.shape and y.shape == (8, 10)


def test_first_calls_inside_a_capture_are_refused(monkeypatch):
    """What a first call makes and keeps for a CUDA device (the flip pairing,
    mean/std) is refused inside a graph capture, with the way out in the
    message, before anything is allocated; on the CPU nothing changes."""
    from mixup_fused.sampling import pairing

    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    pairing._flip_pairing.cache_clear()
    with pytest.raises(RuntimeError, match="outside the CUDA graph capture first"):
        sampling.flip_pairing(8, "cuda")
    m = mf.Mixup(num_classes=3, mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0))
    with pytest.raises(RuntimeError, match=r"mean/std for cuda.* warm-up"):
        m._norm_tensors(torch.device("cuda"))
    assert sampling.flip_pairing(8).perm.tolist() == list(range(7, -1, -1))
    assert m._norm_tensors(torch.device("cpu"))[0].tolist() == [1.0, 2.0, 3.0]


def test_draws_go_to_the_device_in_one_packed_copy(monkeypatch):
    """``MixParams.to`` packs perm, the pairing, lam and boxes into one buffer
    and copies it once; each comes back bit for bit with its dtype and shape
    (lam float32 or float64, boxes of any rank or None)."""
    copies = []
    real_to = torch.Tensor.to

    def counting_to(t, *args, **kwargs):
        copies.append(t.shape)
        return real_to(t, *args, **kwargs)

    for lam_dtype, boxes in (
        (torch.float64, None),
        (torch.float32, torch.tensor([[0, 3, 1, 2], [-1, -1, -1, -1]] * 3)),
    ):
        params = sampling.MixParams(sampling.random_pairing(6, generator=torch.Generator().manual_seed(1)),
                                    torch.rand(6, dtype=lam_dtype), boxes)  # fmt: skip
        monkeypatch.setattr(torch.Tensor, "to", counting_to)
        copies.clear()
        moved = params.to("meta")
        monkeypatch.undo()
        assert len(copies) == 1  # one buffer
        for a, b in zip(
            (*params.pairing, params.lam, params.boxes), (*moved.pairing, moved.lam, moved.boxes), strict=True
        ):
            assert (a is None and b is None) or (b.device.type == "meta" and b.dtype == a.dtype and b.shape == a.shape)
        back = sampling.upload([*params.pairing, params.lam, params.boxes], "cpu")
        for a, b in zip((*params.pairing, params.lam, params.boxes), back, strict=True):
            assert (a is None and b is None) or (b.dtype == a.dtype and torch.equal(a, b))


def test_packed_copy_takes_any_strides_and_empty_tensors():
    """A broadcast lam (stride 0), a reversed perm and an empty batch pack and come back exact."""
    lam = torch.tensor([0.25], dtype=torch.float64).expand(4)
    perm = torch.arange(4).flip(0)
    empty_ids, empty_boxes = torch.empty(0, dtype=torch.int64), torch.empty(0, 4, dtype=torch.int64)
    back = sampling.upload([perm, lam, None, empty_ids, empty_boxes], "cpu")
    assert back[2] is None
    for a, b in zip([perm, lam, empty_ids, empty_boxes], [back[0], back[1], back[3], back[4]], strict=True):
        assert b.dtype == a.dtype and b.shape == a.shape and torch.equal(a, b)
    # bfloat16 (no numpy dtype) and a tensor that requires grad pack too.
    lam_bf16, w = torch.rand(4).to(torch.bfloat16), torch.rand(3, requires_grad=True)
    back = sampling.upload([perm, lam_bf16, w], "cpu")
    assert torch.equal(back[0], perm) and torch.equal(back[1], lam_bf16) and torch.equal(back[2], w.detach())
    moved = sampling.upload([perm, lam, empty_boxes], "meta")
    assert [(t.device.type, t.shape) for t in moved] == [("meta", (4,)), ("meta", (4,)), ("meta", (0, 4))]
