"""The same comparisons on CUDA tensors, where the compiled Triton kernels run
(skipped without a CUDA device). The reference runs on the same CUDA tensors;
where the C++ build is present its CPU result must agree as well."""

from __future__ import annotations

import pytest
import torch
from conftest import (
    assert_matches,
    class_ids,
    edge_boxes,
    poison,
    poisoned_allocations,
    randn,
    random_involution,
    random_lam,
    random_perm,
    soft_targets,
)

import mixup_fused
from mixup_fused.reference import mix_backward_reference, mix_reference

pytestmark = pytest.mark.gpu

DEV = "cuda"
HALF_AND_FLOAT = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(autouse=True)
def _poisoned():
    with poisoned_allocations():
        yield


def _cpu_agrees(out, y, x, target, perm, lam, **kw):
    """The C++ kernel on the same inputs moved to the CPU gives the same bits."""
    if not mixup_fused.HAS_CPP:
        return
    cpu = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    lam_cpu = lam.cpu() if isinstance(lam, torch.Tensor) else lam
    out_c, y_c = mixup_fused.mix(x.cpu(), target.cpu(), perm.cpu(), lam_cpu, backend="cpp", **cpu)
    assert_matches(out.cpu(), out_c, what="cuda vs cpp images")
    assert_matches(y.cpu(), y_c, what="cuda vs cpp targets")


SHAPES = [(7, 3, 13, 17), (1, 3, 5, 5), (5, 2, 1, 1), (3, 11), (2, 3, 4, 5, 6), (4, 3, 33, 65), (3, 2053)]


@pytest.mark.parametrize("backend", ["auto", "triton"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("dtype", HALF_AND_FLOAT + [torch.float64], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mixup_vs_reference(shape, dtype, eps, backend, gen):
    B, K = shape[0], 1100  # more classes than one target block
    x = randn(shape, dtype, gen, DEV)
    target, perm = class_ids(B, K, gen, DEV), random_perm(B, gen, DEV)
    lam = random_lam(B, gen, DEV, torch.float64 if dtype == torch.float64 else torch.float32)
    lam[0] = 1.0
    if B > 2:
        lam[1] = 0.0
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=eps, backend=backend)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=eps)
    assert out.device == x.device and y.device == x.device
    assert_matches(out, ex)
    assert_matches(y, ey)
    torch.testing.assert_close(y.sum(1), torch.ones(B, device=DEV), atol=1e-5, rtol=0)
    _cpu_agrees(out, y, x, target, perm, lam, num_classes=K, label_smoothing=eps)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_scalar_lam_and_soft_targets(lam, gen):
    B, K = 6, 9
    x = randn((B, 3, 8, 8), torch.bfloat16, gen, DEV)
    target = soft_targets(2 * B, K, gen, DEV)[::2]  # non-contiguous rows
    perm = random_perm(B, gen, DEV)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1)
    assert_matches(out, ex)
    assert_matches(y, ey)


@pytest.mark.parametrize("layout", ["transposed", "strided_batch", "expanded_batch", "misaligned", "channels_last"])
@pytest.mark.parametrize("dtype", HALF_AND_FLOAT, ids=str)
def test_layouts(layout, dtype, gen):
    B, C, H, W, K = 6, 3, 5, 7, 5
    if layout == "transposed":
        x = randn((B, C, W, H), dtype, gen, DEV).transpose(2, 3)
    elif layout == "strided_batch":
        x = randn((2 * B, C, H, W), dtype, gen, DEV)[::2]
    elif layout == "expanded_batch":
        x = randn((1, C, H, W), dtype, gen, DEV).expand(B, C, H, W)
    elif layout == "misaligned":  # rows start off 16-byte boundaries: narrower vectors
        x = randn((B * C * H * W + 1,), dtype, gen, DEV)[1:].view(B, C, H, W)
    else:
        x = randn((B, C, H, W), dtype, gen, DEV).contiguous(memory_format=torch.channels_last)
    target, perm, lam = class_ids(B, K, gen, DEV), random_perm(B, gen, DEV), random_lam(B, gen, DEV)
    for boxes in (None, edge_boxes(B, H, W, gen, DEV)):
        out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, boxes=boxes)
        ex, ey = mix_reference(x, target, perm, lam, num_classes=K, boxes=boxes)
        assert_matches(out, ex)
        assert_matches(y, ey)
        if layout == "channels_last":
            assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", HALF_AND_FLOAT + [torch.float64], ids=str)
@pytest.mark.parametrize("shape", [(7, 3, 13, 17), (1, 3, 5, 5), (5, 2, 1, 1), (3, 3, 50, 70)], ids=str)
def test_cutmix_vs_reference(shape, dtype, channels_last, gen):
    B, C, H, W = shape
    K = 10
    x = randn(shape, dtype, gen, DEV)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target, perm = class_ids(B, K, gen, DEV), random_perm(B, gen, DEV)
    boxes = edge_boxes(B, H, W, gen, DEV)
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    lam = (1.0 - area.double() / (H * W)).to(torch.float64 if dtype == torch.float64 else torch.float32)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)
    assert_matches(out, ex)
    assert_matches(y, ey)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)
    _cpu_agrees(out, y, x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", HALF_AND_FLOAT, ids=str)
@pytest.mark.parametrize("involution", ["flip", "random", "identity"])
def test_inplace(involution, dtype, cutmix, layout, gen):
    B, C, H, W, K = 9, 3, 17, 23, 7
    if layout == "transposed":
        x = randn((B, C, W, H), dtype, gen, DEV).transpose(2, 3)
    else:
        x = randn((B, C, H, W), dtype, gen, DEV)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
    perm = {
        "flip": torch.arange(B, device=DEV).flip(0),
        "identity": torch.arange(B, device=DEV),
        "random": random_involution(B, gen, DEV),
    }[involution]
    target, lam = class_ids(B, K, gen, DEV), random_lam(B, gen, DEV)
    boxes = edge_boxes(B, H, W, gen, DEV) if cutmix else None
    strides, ptr = x.stride(), x.data_ptr()
    ex, ey = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)
    rx, _ = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)
    out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes, inplace=True)
    assert out is x and x.data_ptr() == ptr and x.stride() == strides
    assert torch.equal(x, ex)
    assert_matches(x, rx)
    assert torch.equal(y, ey)


@pytest.mark.parametrize("memory_format", [None, torch.channels_last, torch.contiguous_format], ids=str)
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("out_dtype", [None, torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_uint8_normalize(layout, out_dtype, cutmix, memory_format, gen):
    B, C, H, W, K = 5, 3, 19, 21, 10
    x = torch.randint(0, 256, (B, C, H, W), generator=gen, dtype=torch.uint8).to(DEV)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    target, perm, lam = class_ids(B, K, gen, DEV), random_perm(B, gen, DEV), random_lam(B, gen, DEV)
    boxes = edge_boxes(B, H, W, gen, DEV) if cutmix else None
    out, y = mixup_fused.mix(
        x, target, perm, lam, num_classes=K, boxes=boxes, mean=mean, std=std,
        out_dtype=out_dtype, memory_format=memory_format,
    )  # fmt: skip
    odt = out_dtype or torch.float32
    m, s = torch.tensor(mean, device=DEV), torch.tensor(std, device=DEV)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, boxes=boxes, mean=m, std=s, out_dtype=odt)
    assert_matches(out, ex)
    assert_matches(y, ey)
    want_cl = memory_format == torch.channels_last or (memory_format is None and layout == "nhwc")
    assert out.is_contiguous(memory_format=torch.channels_last if want_cl else torch.contiguous_format)
    _cpu_agrees(out, y, x, target, perm, lam, num_classes=K, boxes=boxes, mean=mean, std=std, out_dtype=odt)


@pytest.mark.parametrize("mode", ["mixup", "cutmix_nhwc", "normalize"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=str)
def test_gradients_vs_reference(mode, dtype, gen):
    B, C, H, W, K = 6, 3, 9, 11, 4
    x = randn((B, C, H, W), dtype, gen, DEV)
    perm = torch.roll(torch.arange(B, device=DEV), 2)  # not an involution
    target = class_ids(B, K, gen, DEV)
    lam = random_lam(B, gen, DEV, torch.float64 if dtype == torch.float64 else torch.float32)
    kw = dict(num_classes=K)
    if mode == "cutmix_nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
        kw["boxes"] = edge_boxes(B, H, W, gen, DEV)
    if mode == "normalize":
        if dtype == torch.float64:
            pytest.skip("float64 with mean/std: see test_mix.py::test_normalize_to_float64")
        kw.update(mean=torch.tensor([0.5, -1.0, 0.25], device=DEV), std=torch.tensor([2.0, 0.5, 4.0], device=DEV))
    xa, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, _ = mixup_fused.mix(xa, target, perm, lam, **kw)
    ex, _ = mix_reference(xr, target, perm, lam, **kw)
    g = randn(out.shape, out.dtype, gen, DEV)
    (ga,) = torch.autograd.grad(out, xa, g)
    (gr,) = torch.autograd.grad(ex, xr, g)
    assert_matches(ga, gr)


def test_gradcheck_float64(gen):
    B, K = 4, 3
    x = randn((B, 2, 3, 5), torch.float64, gen, DEV).requires_grad_()
    perm = torch.tensor([1, 2, 3, 0], device=DEV)
    lam = random_lam(B, gen, DEV, torch.float64)
    target = class_ids(B, K, gen, DEV)
    boxes = torch.tensor([[0, 3, 0, 5], [1, 2, 1, 4], [0, 0, 0, 0], [2, 3, 4, 5]], device=DEV)
    for bx in (None, boxes):
        fn = lambda inp, bx=bx: mixup_fused.mix(inp, target, perm, lam, num_classes=K, boxes=bx)[0]  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", HALF_AND_FLOAT, ids=str)
def test_launcher_writes_every_element(dtype, cutmix, gen):
    from mixup_fused.triton import launcher

    B, C, H, W, K = 5, 3, 33, 47, 1030
    x = randn((B, C, H, W), dtype, gen, DEV).contiguous(memory_format=torch.channels_last)
    target, perm, lam = class_ids(B, K, gen, DEV), random_perm(B, gen, DEV), random_lam(B, gen, DEV)
    boxes = edge_boxes(B, H, W, gen, DEV) if cutmix else None
    out = poison(torch.empty_like(x))
    _, y = launcher.triton_mix(x, target, perm, lam, boxes, K, 0.1, None, None, out)
    ex, ey = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=0.1, boxes=boxes)
    assert_matches(out, ex)
    assert_matches(y, ey)
    gout = poison(torch.empty_like(x))
    launcher.triton_mix_backward(x, torch.argsort(perm), lam, boxes, gout)
    assert_matches(gout, mix_backward_reference(x, perm, lam, boxes))


def test_check_false_gives_the_same_result(gen):
    B, K = 8, 6
    x = randn((B, 3, 10, 12), torch.float16, gen, DEV)
    target, perm, lam = class_ids(B, K, gen, DEV), random_perm(B, gen, DEV), random_lam(B, gen, DEV)
    a = mixup_fused.mix(x, target, perm, lam, num_classes=K)
    b = mixup_fused.mix(x, target, perm, lam, num_classes=K, check=False)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered:UserWarning")
def test_opcheck_cuda(gen):
    ops = torch.ops.mixup_fused
    B, C, H, W, K = 5, 3, 4, 7, 6
    x = randn((B, C, H, W), torch.float32, gen, DEV)
    target, perm, lam = class_ids(B, K, gen, DEV), random_perm(B, gen, DEV), random_lam(B, gen, DEV)
    boxes = edge_boxes(B, H, W, gen, DEV)
    for rg in (False, True):
        xx = x.clone().requires_grad_(rg)
        torch.library.opcheck(ops.mix.default, (xx, target, perm, lam, boxes, K, 0.1, None, None, None, True))
        torch.library.opcheck(ops.mix_backward.default, (xx, perm, lam, boxes))
        inv = torch.arange(B, device=DEV).flip(0)
        torch.library.opcheck(ops.mix_.default, (x.clone().requires_grad_(rg), target, inv, lam, None, K, 0.1, True))
    u8 = torch.randint(0, 256, (B, C, H, W), generator=gen, dtype=torch.uint8).to(DEV)
    m, s = torch.tensor([120.0, 110.0, 100.0], device=DEV), torch.tensor([60.0, 57.0, 58.0], device=DEV)
    torch.library.opcheck(ops.mix.default, (u8, target, perm, lam, boxes, K, 0.0, m, s, torch.bfloat16, True))


# ----------------------------------------------------------------------------
# Offsets past 2**31 (several GiB of device memory)
# ----------------------------------------------------------------------------


def _tail_matches(out, x, perm, lam, cols):
    """Mixup is per element within a row: compare the last ``cols`` columns of every row."""
    ex, _ = mix_reference(
        x[:, -cols:], torch.zeros(x.shape[0], dtype=torch.int64, device=DEV), perm, lam, num_classes=1
    )
    assert_matches(out[:, -cols:], ex)


@pytest.mark.slow
@pytest.mark.parametrize("inplace", [False, True])
def test_batch_offsets_past_int32(inplace):
    """B * row_len > 2**31: the start of the last row needs an int64 offset."""
    if torch.cuda.get_device_properties(0).total_memory < 24 * 2**30:
        pytest.skip("needs 24 GiB of device memory")
    B, row = 3, 2**30 + 8
    g = torch.Generator(device=DEV).manual_seed(0)
    x = torch.empty(B, row, dtype=torch.float16, device=DEV).uniform_(-1, 1, generator=g)
    perm = torch.tensor([2, 1, 0], device=DEV)
    lam = torch.tensor([0.25, 0.5, 0.75], device=DEV)
    target = torch.zeros(B, dtype=torch.int64, device=DEV)
    tail = x[:, -4096:].clone()
    out, _ = mixup_fused.mix(x, target, perm, lam, num_classes=1, inplace=inplace)
    _tail_matches(out, tail, perm, lam, 4096)
    del x, out
    torch.cuda.empty_cache()


@pytest.mark.slow
def test_long_rows():
    """row_len > 2**31 - BLOCK: element offsets within a row in int64 (LONG_ROW)."""
    if torch.cuda.get_device_properties(0).total_memory < 40 * 2**30:
        pytest.skip("needs 40 GiB of device memory")
    B, row = 2, 2**31 + 64
    g = torch.Generator(device=DEV).manual_seed(1)
    x = torch.empty(B, row, dtype=torch.float16, device=DEV).uniform_(-1, 1, generator=g)
    perm = torch.tensor([1, 0], device=DEV)
    lam = torch.tensor([0.25, 0.5], device=DEV)
    out, _ = mixup_fused.mix(x, torch.zeros(B, dtype=torch.int64, device=DEV), perm, lam, num_classes=1)
    _tail_matches(out, x, perm, lam, 8192)
    del x, out
    torch.cuda.empty_cache()
