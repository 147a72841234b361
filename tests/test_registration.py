"""The registered ops: schemas, opcheck, autograd (gradcheck and gradients
against the reference's autograd), torch.compile(fullgraph=True), on every
device (the CUDA cases are marked ``gpu``)."""

from __future__ import annotations

import pytest
import torch
from conftest import (
    assert_matches,
    class_ids,
    cpu_and_cuda,
    edge_boxes,
    edge_lam,
    randn,
    random_involution,
    random_lam,
    random_perm,
    soft_targets,
)

import mixup_fused
from mixup_fused import _registration as ops
from mixup_fused.reference import NO_BOX, mix_images_reference, mix_reference

OPS = torch.ops.mixup_fused
DEVICES = cpu_and_cuda()

# The deprecation warning PyTorch emits when a test backpropagates through an
# op without an autograd kernel (mix_, mix_backward). What that means for
# users is tested on its own below (double backward, mix_ on x requiring grad).
NO_AUTOGRAD_WARNING = "ignore:.*an autograd kernel was not registered:UserWarning"


# ----------------------------------------------------------------------------
# Schemas
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ops.SCHEMAS))
def test_python_schemas_equal_cpp_schemas(name):
    if not mixup_fused.HAS_CPP:
        pytest.skip("the C++ schemas need the C++ build")
    cpp = str(getattr(OPS, name).default._schema)
    assert cpp.startswith("mixup_fused::")
    assert cpp.removeprefix("mixup_fused::") == ops.SCHEMAS[name]


def test_schema_set_is_complete():
    names = {"mix", "mix_", "mix_backward", "collate_mix"}
    registered = {n for n in names if hasattr(OPS, n)}
    assert set(ops.SCHEMAS) == registered == names


# ----------------------------------------------------------------------------
# opcheck
# ----------------------------------------------------------------------------


def _mix_args(case, device, requires_grad, gen):
    B, C, H, W, K = 5, 3, 4, 7, 6
    perm = random_perm(B, gen, device)
    if case == "mixup":
        x = randn((B, C, H, W), torch.float32, gen, device)
        args = (x, class_ids(B, K, gen, device), perm, random_lam(B, gen, device), None, K, 0.1, None, None, None)
    elif case == "cutmix_ids":
        x = randn((B, C, H, W), torch.float32, gen, device)
        boxes = edge_boxes(B, H, W, gen, device, perm)
        args = (x, class_ids(B, K, gen, device), perm, random_lam(B, gen, device), boxes, K, 0.1, None, None, None)
    elif case == "cutmix_nhwc_soft":
        x = randn((B, C, H, W), torch.float32, gen, device).contiguous(memory_format=torch.channels_last)
        boxes = edge_boxes(B, H, W, gen, device, perm)
        args = (x, soft_targets(B, K, gen, device), perm, random_lam(B, gen, device), boxes, K, 0.0, None, None, None)
    elif case == "float64_3d":
        x = randn((B, 3, 5), torch.float64, gen, device)
        lam = random_lam(B, gen, device, torch.float64)
        args = (x, class_ids(B, K, gen, device), perm, lam, None, K, 0.2, None, None, None)
    elif case == "float_normalize_bf16_out":
        x = randn((B, C, H, W), torch.float32, gen, device)
        mean = torch.tensor([0.1, 0.2, 0.3], device=device)
        std = torch.tensor([1.5, 0.5, 2.0], device=device)
        args = (x, class_ids(B, K, gen, device), perm, random_lam(B, gen, device), None, K, 0.1, mean, std)
        args = args + (torch.bfloat16,)
    elif case in ("uint8_normalize", "uint8_normalize_bf16_out"):
        x = torch.randint(0, 256, (B, C, H, W), generator=gen, dtype=torch.uint8).to(device)
        mean = torch.tensor([120.0, 110.0, 100.0], device=device)
        std = torch.tensor([60.0, 57.0, 58.0], device=device)
        boxes = edge_boxes(B, H, W, gen, device, perm)
        eps, odt = (0.1, torch.float16) if case == "uint8_normalize" else (0.0, torch.bfloat16)
        args = (x, class_ids(B, K, gen, device), perm, random_lam(B, gen, device), boxes, K, eps, mean, std, odt)
    else:
        raise AssertionError(case)
    args = args[:5] + (None, None) + args[5:]  # (no cut_mask, no masks)
    if requires_grad:
        args = (args[0].requires_grad_(),) + args[1:]
    return args + (True,)


@pytest.mark.filterwarnings(NO_AUTOGRAD_WARNING)
@pytest.mark.parametrize("requires_grad", [False, True], ids=["no_grad", "requires_grad"])
@pytest.mark.parametrize(
    "case",
    [
        "mixup",
        "cutmix_ids",
        "cutmix_nhwc_soft",
        "float64_3d",
        "float_normalize_bf16_out",
        "uint8_normalize",
        "uint8_normalize_bf16_out",
    ],
)
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_mix(device, case, requires_grad, gen):
    if requires_grad and case.startswith("uint8"):
        pytest.skip("integer tensors cannot require grad")
    args = _mix_args(case, device, requires_grad, gen)
    torch.library.opcheck(OPS.mix.default, args)


@pytest.mark.filterwarnings(NO_AUTOGRAD_WARNING)
@pytest.mark.parametrize("requires_grad", [False, True], ids=["no_grad", "requires_grad"])
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_mix_inplace(device, cutmix, requires_grad, gen):
    B, C, H, W, K = 6, 2, 5, 3, 4
    x = randn((B, C, H, W), torch.float32, gen, device).requires_grad_(requires_grad)
    perm = random_involution(B, gen, device)
    boxes = edge_boxes(B, H, W, gen, device, perm) if cutmix else None
    args = (x, class_ids(B, K, gen, device), perm, edge_lam(B, gen, device))
    if requires_grad:
        # Writing into x that requires grad is refused (its gradient would be wrong).
        with pytest.raises(ValueError, match="requires grad"):
            OPS.mix_(*args, boxes, None, None, K, 0.1, True)
        return
    torch.library.opcheck(OPS.mix_.default, args + (boxes, None, None, K, 0.1, True))


@pytest.mark.filterwarnings(NO_AUTOGRAD_WARNING)
@pytest.mark.parametrize("requires_grad", [False, True], ids=["no_grad", "requires_grad"])
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_mix_backward(device, dtype, cutmix, requires_grad, gen):
    B, C, H, W = 5, 3, 4, 6
    grad = randn((B, C, H, W), dtype, gen, device).requires_grad_(requires_grad)
    perm = random_perm(B, gen, device)
    boxes = edge_boxes(B, H, W, gen, device, perm) if cutmix else None
    lam = edge_lam(B, gen, device, dtype)
    torch.library.opcheck(OPS.mix_backward.default, (grad, perm, lam, boxes, None))


# ----------------------------------------------------------------------------
# Autograd
# ----------------------------------------------------------------------------

GRAD_MODES = [
    "mixup_scalar_lam",
    "mixup_non_involution",
    "cutmix",
    "cutmix_nhwc",
    "cutmix_blended",
    "mixup_3d_transposed",
    "normalize",
]


def _grad_case(mode, gen, dtype=torch.float64, small=False, device="cpu"):
    """(x, kwargs for mixup_fused.mix / mix_reference) with awkward sizes."""
    B, C, H, W = (4, 2, 3, 3) if small else (5, 3, 4, 6)
    K = 3
    wdt = torch.float64 if dtype == torch.float64 else torch.float32
    kw = dict(target=class_ids(B, K, gen, device), num_classes=K, label_smoothing=0.1,
              lam=random_lam(B, gen, device, wdt))  # fmt: skip
    # Not an involution: perm[perm[i]] != i for some i (a B-cycle).
    cycle = torch.roll(torch.arange(B, device=device), 1)
    if mode == "mixup_scalar_lam":
        x = randn((B, C, H, W), dtype, gen, device)
        kw.update(perm=torch.arange(B, device=device).flip(0), lam=0.3)
    elif mode == "mixup_non_involution":
        x = randn((B, C, H, W), dtype, gen, device)
        kw.update(perm=cycle)
    elif mode in ("cutmix", "cutmix_nhwc"):
        x = randn((B, C, H, W), dtype, gen, device)
        if mode == "cutmix_nhwc":
            x = x.contiguous(memory_format=torch.channels_last)
        # Boxes of i and perm^-1(i) overlap, and the edge cases are in.
        boxes = torch.tensor([[0, H, 0, W], [0, 0, 0, W], [1, H, 1, W], [0, 2, 0, 2], [H - 1, H, 0, W]])[:B]
        kw.update(perm=cycle, boxes=boxes.to(device))
    elif mode == "cutmix_blended":
        # Cut and blended (NO_BOX) rows along the cycle: each cut row's
        # partner q = perm^-1[k] is blended and the reverse (row 0 is cut with
        # a cut partner), with a lam of 1 and of 0 among the blended rows.
        x = randn((B, C, H, W), dtype, gen, device)
        boxes = torch.tensor([[0, H, 0, W], NO_BOX, [1, H, 1, W], NO_BOX, [H - 1, H, 0, W]])[:B]
        lam = kw["lam"].clone()
        lam[1], lam[3] = 1.0, 0.0
        kw.update(perm=cycle, boxes=boxes.to(device), lam=lam)
    elif mode == "mixup_3d_transposed":
        x = randn((B, W, C), dtype, gen, device).transpose(1, 2)
        kw.update(perm=random_perm(B, gen, device))
    elif mode == "normalize":
        x = randn((B, C, H, W), dtype, gen, device)
        # std values that bfloat16 cannot hold exactly (57.12 -> 57.0).
        mean, std = torch.tensor([0.5, -1.0, 0.25][:C]), torch.tensor([57.12, 0.3, 3.1][:C])
        kw.update(perm=cycle, mean=mean.to(device), std=std.to(device))
    else:
        raise AssertionError(mode)
    return x, kw


def _call(backend, x, kw):
    kw = dict(kw)
    target, perm, lam = kw.pop("target"), kw.pop("perm"), kw.pop("lam")
    return mixup_fused.mix(x, target, perm, lam, backend=backend, **kw)


@pytest.mark.parametrize("mode", GRAD_MODES)
def test_gradcheck(device, backend, mode, gen):
    small = backend == "triton" and device == "cpu"  # the interpreter is slow; fast mode and a small x
    x, kw = _grad_case(mode, gen, small=small, device=device)
    x.requires_grad_()

    def f(inp):
        out, y = _call(backend, inp, kw)
        return out

    assert torch.autograd.gradcheck(f, (x,), fast_mode=small)


@pytest.mark.usefixtures("poison_outputs")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("mode", GRAD_MODES)
def test_gradient_equals_reference_autograd(device, backend, mode, dtype, gen):
    x, kw = _grad_case(mode, gen, dtype, device=device)
    x_ours = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    x_ref = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    out, y = _call(backend, x_ours, kw)
    ref_kw = {k: v for k, v in kw.items() if k not in ("target", "perm", "lam")}
    ex, _ = mix_reference(x_ref, kw["target"], kw["perm"], kw["lam"], **ref_kw)
    g = randn(out.shape, out.dtype, gen, device)
    (gx,) = torch.autograd.grad(out, x_ours, g)
    (gr,) = torch.autograd.grad(ex, x_ref, g)
    assert_matches(out.detach(), ex.detach(), what="forward", backend=backend)
    assert_matches(gx, gr, what="grad x", backend=backend)


@pytest.mark.filterwarnings(NO_AUTOGRAD_WARNING)
@pytest.mark.usefixtures("poison_outputs")
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
def test_double_backward_is_exact(backend, cutmix, gen):
    """The backward of a mix is linear in the incoming gradient g (grad_x =
    A^T g), so its derivative applied to v is A v, the forward mix of v:
    gradgradcheck passes, and the double backward equals the forward mix bit
    for bit (the README promises it exact, not refused)."""
    B, C, H, W, K = 5, 2, 3, 4, 3
    x = randn((B, C, H, W), torch.float64, gen).requires_grad_()
    target, perm = class_ids(B, K, gen), torch.roll(torch.arange(B), 2)  # not an involution
    lam = edge_lam(B, gen, dtype=torch.float64)
    boxes = edge_boxes(B, H, W, gen, perm=perm) if cutmix else None

    def f(inp):
        return mixup_fused.mix(inp, target, perm, lam, num_classes=K, boxes=boxes, backend=backend)[0]

    assert torch.autograd.gradgradcheck(f, (x,), fast_mode=backend == "triton")
    g = randn((B, C, H, W), torch.float64, gen).requires_grad_()
    v = randn((B, C, H, W), torch.float64, gen)
    (gx,) = torch.autograd.grad(f(x), x, g, create_graph=True)
    (gg,) = torch.autograd.grad(gx, g, v)
    assert_matches(gg, mix_images_reference(v, perm, lam, boxes), what="double backward", backend=backend)


def test_targets_carry_no_gradient(backend, gen):
    B, K = 4, 5
    x = randn((B, 3), torch.float32, gen).requires_grad_()
    for target in (class_ids(B, K, gen), soft_targets(B, K, gen)):
        out, y = mixup_fused.mix(x, target, random_perm(B, gen), random_lam(B, gen), num_classes=K, backend=backend)
        assert out.requires_grad
        assert not y.requires_grad


def test_inplace_op_bumps_the_version_of_x(gen):
    # A tensor saved for another backward must notice that mix_ changed it.
    B, K = 4, 3
    w = randn((B, 5), torch.float32, gen).requires_grad_()
    a = randn((B, 5), torch.float32, gen)
    prod = a * w  # saves a for w's gradient
    version = a._version
    OPS.mix_(a, class_ids(B, K, gen), torch.tensor([1, 0, 3, 2]), random_lam(B, gen), None, None, None, K, 0.0, True)
    assert a._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        prod.sum().backward()


# ----------------------------------------------------------------------------
# torch.compile
# ----------------------------------------------------------------------------


@pytest.fixture
def fresh_dynamo():
    torch.compiler.reset()
    yield
    torch.compiler.reset()


def _assert_same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
    assert torch.equal(a, b)


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("case", ["mixup_tensor_lam", "mixup_float_lam", "cutmix_nhwc_soft", "uint8_to_nhwc_bf16"])
@pytest.mark.parametrize("device", DEVICES)
def test_compile_out_of_place(device, case, gen):
    B, C, H, W, K = 6, 3, 5, 7, 10
    x = randn((B, C, H, W), torch.float32, gen, device)
    target, perm, lam = class_ids(B, K, gen, device), random_perm(B, gen, device), random_lam(B, gen, device)
    kw = dict(num_classes=K, label_smoothing=0.1)
    if case == "mixup_float_lam":
        lam = 0.375
    elif case == "cutmix_nhwc_soft":
        x = x.contiguous(memory_format=torch.channels_last)
        target = soft_targets(B, K, gen, device)
        kw["boxes"] = edge_boxes(B, H, W, gen, device, perm)
    elif case == "uint8_to_nhwc_bf16":
        x = torch.randint(0, 256, (B, C, H, W), generator=gen, dtype=torch.uint8).to(device)
        kw.update(
            mean=torch.tensor([120.0, 115.0, 100.0], device=device),
            std=torch.tensor([58.0, 57.0, 57.5], device=device),
            out_dtype=torch.bfloat16,
            memory_format=torch.channels_last,
        )

    def f(x, target, perm, lam):
        return mixup_fused.mix(x, target, perm, lam, **kw)

    compiled = torch.compile(f, fullgraph=True)
    out_c, y_c = compiled(x, target, perm, lam)
    out_e, y_e = f(x, target, perm, lam)
    _assert_same(out_c, out_e)
    _assert_same(y_c, y_e)


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("cutmix", [False, True], ids=["mixup", "cutmix"])
def test_compile_inplace(cutmix, gen):
    B, C, H, W, K = 7, 3, 5, 6, 10
    x = randn((B, C, H, W), torch.float32, gen)
    target, perm, lam = class_ids(B, K, gen), random_involution(B, gen), random_lam(B, gen)
    boxes = edge_boxes(B, H, W, gen, perm=perm) if cutmix else None

    def f(x, target, perm, lam):
        out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, boxes=boxes, label_smoothing=0.1, inplace=True)
        return out, y

    x_c, x_e = x.clone(), x.clone()
    out_c, y_c = torch.compile(f, fullgraph=True)(x_c, target, perm, lam)
    out_e, y_e = f(x_e, target, perm, lam)
    assert out_e is x_e
    _assert_same(x_c, x_e)
    _assert_same(out_c, x_e)
    _assert_same(y_c, y_e)
    expected, _ = mix_reference(x, target, perm, lam, num_classes=K, boxes=boxes)
    assert torch.equal(x_c, expected)


@pytest.mark.usefixtures("fresh_dynamo")
def test_compile_backward(gen):
    B, C, H, W, K = 5, 3, 4, 6, 4
    x = randn((B, C, H, W), torch.float32, gen).contiguous(memory_format=torch.channels_last)
    target, lam = class_ids(B, K, gen), random_lam(B, gen)
    perm = torch.roll(torch.arange(B), 2)
    boxes = edge_boxes(B, H, W, gen, perm=perm)
    w = randn((B, C, H, W), torch.float32, gen)

    def f(x, target, perm, lam):
        out, y = mixup_fused.mix(x, target, perm, lam, num_classes=K, boxes=boxes)
        return (out * w).sum() + y.sum()

    xc = x.clone().requires_grad_()
    xe = x.clone().requires_grad_()
    torch.compile(f, fullgraph=True)(xc, target, perm, lam).backward()
    f(xe, target, perm, lam).backward()
    assert torch.equal(xc.grad, xe.grad)
    xr = x.clone().requires_grad_()
    ex, _ = mix_reference(xr, target, perm, lam, num_classes=K, boxes=boxes)
    (ex * w).sum().backward()
    assert_matches(xc.grad, xr.grad, backend="cpp")
