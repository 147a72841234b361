"""Bad input to ``mix`` and the registered ops raises a clear error that names
the argument, on every backend: TypeError for a wrong type or dtype,
ValueError for a wrong shape, value or device. A call that raises changes
nothing: every input, and ``x`` of an in-place call in particular, is bitwise
unchanged afterwards (``assert_refused``, the one check for all of them).

The other entry points' argument errors are in test_errors_entry_points.py.
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch
from conftest import (
    CPU_BACKENDS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    bits,
    class_ids,
    randn,
    random_lam,
    small_batch,
    soft_targets,
)

import mixup_fused
from mixup_fused.reference import NO_BOX

B, C, H, W, K = 5, 3, 6, 7, 6
META = torch.device("meta")
OPS = torch.ops.mixup_fused


# ----------------------------------------------------------------------------
# The check: the call raises exactly ``exc``, names the argument, and leaves
# every tensor input bitwise as it was
# ----------------------------------------------------------------------------


def assert_refused(call, exc, match, inputs: dict):
    """``call()`` raises exactly ``exc`` with a message that starts with
    "mixup_fused" and matches ``match``; every tensor in ``inputs`` (name ->
    value; meta tensors hold no data) keeps its bits and strides."""
    snap = {
        name: (v, v.stride(), bits(v))
        for name, v in inputs.items()
        if isinstance(v, torch.Tensor) and v.device.type != "meta"
    }
    with pytest.raises(exc, match=match) as info:
        call()
    assert info.type is exc, f"raised {info.type.__name__}, expected exactly {exc.__name__}: {info.value}"
    assert str(info.value).startswith("mixup_fused"), f"message does not say where it comes from: {info.value}"
    for name, (t, strides, before) in snap.items():
        assert t.stride() == strides, f"{name} changed strides"
        assert torch.equal(bits(t), before), f"{name} was modified by a call that raised"


# ----------------------------------------------------------------------------
# One bad argument at a time, out of place and in place
# ----------------------------------------------------------------------------


def _base(gen):
    return dict(
        x=randn((B, C, H, W), torch.float32, gen),
        target=class_ids(B, K, gen),
        perm=torch.arange(B).flip(0),  # an involution, so in-place calls are valid too
        lam=random_lam(B, gen),
        kw=dict(num_classes=K),
    )


def _boxes(*rows):
    rows = list(rows) + [(0, 1, 0, 1)] * (B - len(rows))
    return torch.tensor(rows, dtype=torch.int64)


def _set(**changes):
    """A case that replaces inputs: tensors by name, keyword arguments otherwise."""

    def apply(a, gen):
        for k, v in changes.items():
            v = v(gen) if callable(v) else v
            if k in ("x", "target", "perm", "lam"):
                a[k] = v
            else:
                a["kw"][k] = v

    return apply


def _with_value(name, index, value):
    def apply(a, gen):
        t = a[name].clone()
        t[index] = value
        a[name] = t

    return apply


def _uint8(gen):
    return torch.randint(0, 256, (B, C, H, W), generator=gen, dtype=torch.uint8)


_MEAN = [120.0, 110.0, 100.0]
_STD = [60.0, 57.0, 58.0]

# (id, change, error type, regex the message must match, marks: for every
# backend, or a {backend: marks} dict)
CASES = [
    # Mismatched batch size
    ("target_batch", _set(target=lambda g: class_ids(B + 1, K, g)), ValueError, r"\btarget\b", ()),
    ("soft_target_batch", _set(target=lambda g: soft_targets(B + 1, K, g)), ValueError, r"\btarget\b", ()),
    ("perm_batch", _set(perm=torch.arange(B + 1)), ValueError, r"\bperm\b", ()),
    ("lam_batch", _set(lam=lambda g: random_lam(B + 1, g)), ValueError, r"\blam\b", ()),
    ("boxes_batch", _set(boxes=torch.zeros(B + 1, 4, dtype=torch.int64)), ValueError, r"\bboxes\b", ()),
    # Class ids
    ("class_id_negative", _with_value("target", 2, -1), ValueError, r"\btarget\b", ()),
    ("class_id_too_large", _with_value("target", 4, K), ValueError, r"\btarget\b", ()),
    ("target_bool", _set(target=torch.zeros(B, dtype=torch.bool)), TypeError, r"\btarget\b", ()),
    ("target_ids_2d", _set(target=torch.zeros(B, K, dtype=torch.int64)), ValueError, r"\btarget\b", ()),
    ("target_float_1d", _set(target=torch.rand(B)), ValueError, r"\btarget\b", ()),
    ("soft_target_wrong_k", _set(target=lambda g: soft_targets(B, K + 1, g)), ValueError, r"\btarget\b", ()),
    ("target_not_a_tensor", _set(target=[0] * B), TypeError, r"\btarget\b", ()),
    # Permutations
    ("perm_duplicate", _set(perm=torch.tensor([0, 1, 1, 3, 4])), ValueError, r"\bperm\b", ()),
    ("perm_out_of_range", _set(perm=torch.tensor([0, 1, 2, 3, B])), ValueError, r"\bperm\b", ()),
    ("perm_negative", _set(perm=torch.tensor([0, 1, -1, 3, 4])), ValueError, r"\bperm\b", ()),
    ("perm_float", _set(perm=torch.arange(B).float()), TypeError, r"\bperm\b", ()),
    ("perm_2d", _set(perm=torch.arange(B).view(B, 1)), ValueError, r"\bperm\b", ()),
    ("perm_not_a_tensor", _set(perm=list(range(B))), TypeError, r"\bperm\b", ()),
    # lam
    ("lam_negative", _with_value("lam", 1, -0.25), ValueError, r"\blam\b", ()),
    ("lam_above_one", _with_value("lam", 3, 1.5), ValueError, r"\blam\b", ()),
    ("lam_nan", _with_value("lam", 0, math.nan), ValueError, r"\blam\b", ()),
    ("lam_float_negative", _set(lam=-0.1), ValueError, r"\blam\b", ()),
    ("lam_float_above_one", _set(lam=1.0001), ValueError, r"\blam\b", ()),
    ("lam_float_nan", _set(lam=math.nan), ValueError, r"\blam\b", ()),
    ("lam_float_inf", _set(lam=math.inf), ValueError, r"\blam\b", ()),
    ("lam_bool", _set(lam=True), TypeError, r"\blam\b", ()),
    ("lam_string", _set(lam="0.5"), TypeError, r"\blam\b", ()),
    ("lam_2d", _set(lam=lambda g: random_lam(B, g).view(B, 1)), ValueError, r"\blam\b", ()),
    ("lam_int_tensor", _set(lam=torch.ones(B, dtype=torch.int64)), TypeError, r"\blam\b", ()),
    # Boxes
    ("boxes_below_bottom", _set(boxes=_boxes((0, 2, 0, 2), (1, H + 1, 0, W))), ValueError, r"\bboxes\b", ()),
    ("boxes_past_right", _set(boxes=_boxes((0, H, 3, W + 1))), ValueError, r"\bboxes\b", ()),
    ("boxes_negative_y0", _set(boxes=_boxes((0, 1, 0, 1), (0, 1, 0, 1), (-1, 2, 0, 2))), ValueError, r"\bboxes\b", ()),
    ("boxes_negative_x0", _set(boxes=_boxes((0, 2, -2, 2))), ValueError, r"\bboxes\b", ()),
    ("boxes_y0_above_y1", _set(boxes=_boxes((4, 3, 0, 2))), ValueError, r"\bboxes\b", ()),
    ("boxes_x0_above_x1", _set(boxes=_boxes((0, 2, 5, 4))), ValueError, r"\bboxes\b", ()),
    ("boxes_partly_minus_one", _set(boxes=_boxes((-1, -1, 0, 0))), ValueError, r"\bboxes\b", ()),
    ("boxes_shape_b3", _set(boxes=torch.zeros(B, 3, dtype=torch.int64)), ValueError, r"\bboxes\b", ()),
    ("boxes_shape_1d", _set(boxes=torch.zeros(4 * B, dtype=torch.int64)), ValueError, r"\bboxes\b", ()),
    ("boxes_float", _set(boxes=torch.zeros(B, 4)), TypeError, r"\bboxes\b", ()),
    ("boxes_bool", _set(boxes=torch.zeros(B, 4, dtype=torch.bool)), TypeError, r"\bboxes\b", ()),
    ("boxes_not_a_tensor", _set(boxes=[[0, 1, 0, 1]] * B), TypeError, r"\bboxes\b", ()),
    (
        "boxes_on_3d_x",
        _set(x=lambda g: randn((B, C, H * W), torch.float32, g), boxes=torch.zeros(B, 4, dtype=torch.int64)),
        ValueError,
        r"\bboxes\b",
        (),
    ),
    # Devices: "meta" stands in for a second device
    ("target_other_device", _set(target=torch.zeros(B, dtype=torch.int64, device=META)), ValueError, r"\btarget\b", ()),
    ("perm_other_device", _set(perm=torch.arange(B, device=META)), ValueError, r"\bperm\b", ()),
    ("lam_other_device", _set(lam=torch.rand(B, device=META)), ValueError, r"\blam\b", ()),
    (
        "boxes_other_device",
        _set(boxes=torch.zeros(B, 4, dtype=torch.int64, device=META)),
        ValueError,
        r"\bboxes\b",
        (),
    ),
    (
        "mean_other_device",
        _set(x=_uint8, mean=torch.tensor(_MEAN, device=META), std=torch.tensor(_STD)),
        ValueError,
        r"\bmean\b",
        (),
    ),
    (
        "std_other_device",
        _set(x=_uint8, mean=torch.tensor(_MEAN), std=torch.tensor(_STD, device=META)),
        ValueError,
        r"\bstd\b",
        (),
    ),
    ("x_other_device", _set(x=torch.empty(B, C, H, W, device=META)), ValueError, r"\bx is on meta\b", ()),
    # x
    ("x_uint8_without_mean_std", _set(x=_uint8), TypeError, r"\bx\b", ()),
    ("x_int64", _set(x=lambda g: _uint8(g).long()), TypeError, r"\bx\b", ()),
    ("x_bool", _set(x=torch.zeros(B, C, H, W, dtype=torch.bool)), TypeError, r"\bx\b", ()),
    ("x_0d", _set(x=torch.tensor(1.0)), ValueError, r"\bx\b", ()),
    ("x_not_a_tensor", _set(x=[[0.0]] * B), TypeError, r"\bx\b", ()),
    # num_classes and label_smoothing
    ("num_classes_zero", _set(num_classes=0), ValueError, r"\bnum_classes\b", ()),
    ("num_classes_negative", _set(num_classes=-3), ValueError, r"\bnum_classes\b", ()),
    ("num_classes_float", _set(num_classes=2.5), ValueError, r"num_classes must", ()),
    ("num_classes_bool", _set(num_classes=True), ValueError, r"num_classes must", ()),
    ("label_smoothing_negative", _set(label_smoothing=-0.1), ValueError, r"\blabel_smoothing\b", ()),
    ("label_smoothing_above_one", _set(label_smoothing=1.5), ValueError, r"\blabel_smoothing\b", ()),
    ("label_smoothing_nan", _set(label_smoothing=math.nan), ValueError, r"\blabel_smoothing\b", ()),
    # Normalisation and output format
    ("mean_without_std", _set(x=_uint8, mean=_MEAN), ValueError, r"\bmean\b", ()),
    ("std_without_mean", _set(x=_uint8, std=_STD), ValueError, r"\bstd\b", ()),
    ("mean_wrong_length", _set(x=_uint8, mean=_MEAN[:2], std=_STD), ValueError, r"\bmean\b", ()),
    ("std_wrong_length", _set(x=_uint8, mean=_MEAN, std=_STD + [1.0]), ValueError, r"\bstd\b", ()),
    ("std_zero", _set(x=_uint8, mean=_MEAN, std=[60.0, 0.0, 58.0]), ValueError, r"\bstd\b", ()),
    ("std_nan", _set(x=_uint8, mean=_MEAN, std=[60.0, 57.0, math.nan]), ValueError, r"\bstd\b", ()),
    ("mean_inf", _set(x=_uint8, mean=[math.inf, 0.0, 0.0], std=_STD), ValueError, r"\bmean\b", ()),
    (
        "mean_integer_tensor",
        _set(x=_uint8, mean=torch.tensor([120, 110, 100]), std=torch.tensor(_STD)),
        TypeError,
        r"\bmean\b",
        (),
    ),
    ("mean_on_3d_x", _set(x=lambda g: _uint8(g).view(B, C, H * W), mean=_MEAN, std=_STD), ValueError, r"\bmean\b", ()),
    ("out_dtype_integer", _set(x=_uint8, mean=_MEAN, std=_STD, out_dtype=torch.int32), TypeError, r"\bout_dtype\b", ()),
    (
        "channels_last_on_3d_x",
        _set(x=lambda g: randn((B, C, H), torch.float32, g), memory_format=torch.channels_last),
        ValueError,
        r"\bmemory_format\b",
        (),
    ),
]

# Cases about in-place calls only.
INPLACE_CASES = [
    ("perm_not_involution", _set(perm=torch.tensor([1, 2, 3, 4, 0])), ValueError, r"\bperm\b.*involution", ()),
    ("perm_not_involution_3cycle", _set(perm=torch.tensor([1, 2, 0, 4, 3])), ValueError, r"involution", ()),
    (
        "x_requires_grad",
        _set(x=lambda g: randn((B, C, H, W), torch.float32, g).requires_grad_()),
        ValueError,
        r"\bx\b",
        (),
    ),
    ("inplace_out_dtype", _set(out_dtype=torch.float16), ValueError, r"\bout_dtype\b", ()),
    ("inplace_memory_format", _set(memory_format=torch.channels_last), ValueError, r"\bmemory_format\b", ()),
    ("inplace_normalize", _set(mean=_MEAN, std=_STD), ValueError, r"\bmean\b", ()),
]


def _params(cases):
    for b in CPU_BACKENDS:
        for cid, change, exc, match, marks in cases:
            if isinstance(marks, dict):
                marks = marks.get(b, ())
            yield pytest.param(b, change, exc, match, marks=marks, id=f"{b}-{cid}")


def _raises(backend, a, exc, match, inplace):
    inputs = {k: v for k, v in a.items() if k != "kw"} | {"kw." + k: v for k, v in a["kw"].items()}

    def call():
        mixup_fused.mix(a["x"], a["target"], a["perm"], a["lam"], backend=backend, inplace=inplace, **a["kw"])

    assert_refused(call, exc, match, inputs)


@pytest.mark.parametrize("backend, change, exc, match", list(_params(CASES)))
def test_bad_input_out_of_place(backend, change, exc, match, gen):
    a = _base(gen)
    change(a, gen)
    _raises(backend, a, exc, match, inplace=False)


def _inplace_params():
    # Cases that an in-place call can reach (x is floating; no mean/std).
    for p in _params(CASES):
        backend, change, exc, match = p.values
        a = _base(torch.Generator().manual_seed(0))
        change(a, torch.Generator().manual_seed(0))
        x = a["x"]
        if not isinstance(x, torch.Tensor) or x.device.type == "meta" or not x.is_floating_point():
            continue
        if {"mean", "std", "out_dtype", "memory_format"} & set(a["kw"]):
            continue
        yield p
    yield from _params(INPLACE_CASES)


@pytest.mark.parametrize("backend, change, exc, match", list(_inplace_params()))
def test_bad_input_inplace_leaves_x_unchanged(backend, change, exc, match, gen):
    a = _base(gen)
    change(a, gen)
    _raises(backend, a, exc, match, inplace=True)


def test_inplace_errors_also_with_channels_last_and_noncontiguous_x(backend, gen):
    """The in-place paths that work on a dense copy must also validate first."""
    for x in (
        randn((B, C, H, W), torch.float32, gen).contiguous(memory_format=torch.channels_last),
        randn((B, C, W, H), torch.float32, gen).transpose(2, 3),
    ):
        for perm, lam in ((torch.tensor([1, 2, 3, 4, 0]), 0.5), (torch.arange(B).flip(0), torch.full((B,), 2.0))):
            a = dict(x=x, target=class_ids(B, K, gen), perm=perm, lam=lam, kw=dict(num_classes=K))
            _raises(backend, a, ValueError, r"\bperm\b|\blam\b", inplace=True)


# ----------------------------------------------------------------------------
# In place on every layout: each case is one edit of a valid in-place CutMix
# call, on contiguous, channels_last and non-dense x (the kernels mix a dense
# copy of a non-dense x and write it back); the unedited call then works
# ----------------------------------------------------------------------------

INVOLUTION = [1, 0, 3, 2, 4]
GOOD_BOXES = [(0, H, 0, W), NO_BOX, (1, 3, 2, 6), (0, 0, 0, 0), (4, H, 6, W)]


def _good_inplace_call():
    return dict(
        target=torch.tensor([0, 1, 2, 3, K - 1]),
        perm=torch.tensor(INVOLUTION),
        lam=0.4,
        num_classes=K,
        label_smoothing=0.1,
        boxes=torch.tensor(GOOD_BOXES),
    )


def _at(i, v):
    def edit(t):
        t = t.clone()
        t[i] = v
        return t

    return edit


# (name, error type, regex the message must match, edits to the valid call's arguments)
LAYOUT_CASES = [
    ("perm_not_involution", ValueError, "involution", dict(perm=torch.tensor([1, 2, 0, 4, 3]))),
    ("perm_out_of_range_last", ValueError, "perm", dict(perm=_at(-1, B))),
    ("perm_negative", ValueError, "perm", dict(perm=_at(0, -1))),
    ("perm_repeated", ValueError, "perm", dict(perm=_at(-1, 0))),
    ("perm_short", ValueError, "perm", dict(perm=torch.tensor(INVOLUTION[:-1]))),
    ("perm_float", TypeError, "perm", dict(perm=torch.tensor(INVOLUTION, dtype=torch.float32))),
    ("class_id_too_big_last", ValueError, "target", dict(target=_at(-1, K))),
    ("class_id_negative", ValueError, "target", dict(target=_at(2, -1))),
    ("target_bool", TypeError, "target", dict(target=torch.ones(B, dtype=torch.bool))),
    ("soft_target_wrong_width", ValueError, "target", dict(target=torch.full((B, K + 1), 0.1))),
    ("target_short", ValueError, "target", dict(target=torch.arange(B - 1))),
    ("lam_above_one", ValueError, "lam", dict(lam=1.5)),
    ("lam_negative", ValueError, "lam", dict(lam=-0.1)),
    ("lam_nan", ValueError, "lam", dict(lam=math.nan)),
    ("lam_tensor_nan_last", ValueError, "lam", dict(lam=torch.tensor([0.5] * (B - 1) + [math.nan]))),
    ("lam_tensor_short", ValueError, "lam", dict(lam=torch.full((B - 1,), 0.5))),
    ("lam_string", TypeError, "lam", dict(lam="0.5")),
    ("box_past_the_image_last", ValueError, "boxes", dict(boxes=_at(-1, torch.tensor([0, H + 1, 0, 1])))),
    ("box_reversed", ValueError, "boxes", dict(boxes=_at(2, torch.tensor([3, 1, 0, 1])))),
    ("box_partly_no_box", ValueError, "boxes", dict(boxes=_at(1, torch.tensor([-1, -1, 0, 1])))),
    ("boxes_float", TypeError, "boxes", dict(boxes=lambda b: b.float())),
    ("boxes_wrong_shape", ValueError, "boxes", dict(boxes=lambda b: b[:, :3])),
    ("num_classes_zero", ValueError, "num_classes", dict(num_classes=0)),
    ("label_smoothing_above_one", ValueError, "label_smoothing", dict(label_smoothing=1.5)),
    ("label_smoothing_nan", ValueError, "label_smoothing", dict(label_smoothing=math.nan)),
    ("target_on_meta", ValueError, "target", dict(target=lambda t: t.to("meta"))),
    ("perm_on_meta", ValueError, "perm", dict(perm=lambda t: t.to("meta"))),
    ("out_dtype_differs", ValueError, "out_dtype", dict(out_dtype=torch.float64)),
    ("mean_std_given", ValueError, "mean", dict(mean=[0.5] * C, std=[0.2] * C)),
    ("backend_unknown", ValueError, "backend", dict(backend="cuda")),
]


def _x_in_layout(layout, dtype, g):
    if layout == "transposed":  # not dense
        return torch.randn(B, C, W, H, generator=g).to(dtype).transpose(2, 3)
    x = torch.randn(B, C, H, W, generator=g).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
@pytest.mark.parametrize("name, err, word, edits", LAYOUT_CASES, ids=[c[0] for c in LAYOUT_CASES])
def test_bad_inplace_call_on_any_layout_leaves_x_unchanged(backend, layout, name, err, word, edits):
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    x = _x_in_layout(layout, torch.bfloat16 if len(name) % 2 else torch.float32, g)
    before = bits(x)
    args = dict(_good_inplace_call(), backend=backend)
    for k, v in edits.items():
        args[k] = v(args[k]) if callable(v) else v
    assert_refused(lambda: mixup_fused.mix(x, inplace=True, **args), err, word, dict(args, x=x))
    # The same call with the valid arguments works (the case is invalid only by its edit).
    mixup_fused.mix(x, inplace=True, **dict(_good_inplace_call(), backend=backend))
    assert not torch.equal(bits(x), before)


def test_inplace_on_x_that_requires_grad_leaves_it_untouched(backend):
    x = torch.randn(B, C, H, W, requires_grad=True)
    args = dict(_good_inplace_call(), backend=backend)
    assert_refused(lambda: mixup_fused.mix(x, inplace=True, **args), ValueError, "requires grad", dict(args, x=x))


@pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered:UserWarning")
def test_inplace_op_on_x_requiring_grad_is_refused(gen):
    """The registered ``mix_`` refuses x that requires grad (its gradient would be wrong)."""
    leaf = randn((4, 5), torch.float32, gen).requires_grad_()
    perm, lam, target = torch.tensor([1, 0, 3, 2]), random_lam(4, gen), class_ids(4, 3, gen)
    x = leaf.clone()
    call = lambda: OPS.mix_(x, target, perm, lam, None, None, None, 3, 0.0, True)
    assert_refused(call, ValueError, "requires grad", dict(x=x, target=target, perm=perm, lam=lam))


# ----------------------------------------------------------------------------
# Backend selection
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cuda", "CPP", "", "torch", None])
def test_unknown_backend(name, gen):
    a = _base(gen)
    with pytest.raises(ValueError, match=r"\bbackend\b") as info:
        mixup_fused.mix(a["x"], a["target"], a["perm"], a["lam"], num_classes=K, backend=name)
    assert info.type is ValueError


def test_unknown_backend_in_environment(monkeypatch, gen):
    monkeypatch.setenv("MIXUP_FUSED_BACKEND", "fastest")
    a = _base(gen)
    with pytest.raises(ValueError, match="MIXUP_FUSED_BACKEND"):
        mixup_fused.mix(a["x"], a["target"], a["perm"], a["lam"], num_classes=K)


@pytest.mark.parametrize("inplace", [False, True])
def test_cpp_backend_on_non_cpu_tensors(inplace):
    if not mixup_fused.HAS_CPP:
        pytest.skip("needs the C++ build")
    x = torch.empty(B, C, H, W, device=META)
    target, perm = torch.zeros(B, dtype=torch.int64, device=META), torch.arange(B, device=META)
    with pytest.raises(ValueError, match=r"backend='cpp'") as info:
        mixup_fused.mix(x, target, perm, 0.5, num_classes=K, backend="cpp", inplace=inplace)
    assert info.type is ValueError


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where the interpreter is off")
def test_triton_backend_on_non_cuda_tensors():
    x = torch.empty(B, C, H, W, device=META)
    target, perm = torch.zeros(B, dtype=torch.int64, device=META), torch.arange(B, device=META)
    with pytest.raises(ValueError, match=r"backend='triton'"):
        mixup_fused.mix(x, target, perm, 0.5, num_classes=K, backend="triton")


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["target", "perm", "lam", "boxes"])
def test_cuda_x_with_cpu_argument(name, gen):
    a = _base(gen)
    args = dict(
        target=a["target"].cuda(),
        perm=a["perm"].cuda(),
        lam=a["lam"].cuda(),
        boxes=torch.zeros(B, 4, dtype=torch.int64, device="cuda"),
    )
    x = a["x"].cuda()
    args[name] = args[name].cpu()
    for inplace in (False, True):

        def call(inplace=inplace):
            mixup_fused.mix(x, num_classes=K, inplace=inplace, **args)

        assert_refused(call, ValueError, rf"\b{name}\b", dict(args, x=x))


@pytest.mark.gpu
def test_cuda_bad_values_raise(gen):
    a = _base(gen)
    x = a["x"].cuda()
    cases = [
        (dict(perm=torch.tensor([0, 0, 1, 2, 3])), r"\bperm\b"),
        (dict(target=torch.tensor([0, 1, 2, 3, K])), r"\btarget\b"),
        (dict(lam=torch.tensor([0.5, 0.5, math.nan, 0.5, 0.5])), r"\blam\b"),
        (dict(boxes=_boxes((0, H + 1, 0, 1))), r"\bboxes\b"),
        (dict(perm=torch.tensor([1, 2, 0, 4, 3]), inplace=True), r"involution"),
    ]
    for change, match in cases:
        kw = dict(target=a["target"], perm=a["perm"], lam=a["lam"], boxes=None, inplace=False)
        kw.update(change)
        kw = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}

        def call(kw=kw):
            mixup_fused.mix(x, num_classes=K, **kw)

        assert_refused(call, ValueError, match, dict(kw, x=x))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_lam_is_checked_as_given(backend):
    """lam must lie in [0, 1] as given, on every backend and in every dtype:
    the partner's weight 1 - lam is computed from it, so 1 + 1e-12 (which
    rounds to 1 in float32) would give the partner a negative weight."""
    x, t, perm = torch.randn(2, 8), torch.tensor([0, 1]), torch.tensor([1, 0])
    for dtype in (torch.float32, torch.float64):
        for bad in (1 + 1e-12, -1e-300, 1 + 1e-6, float("nan")):
            lam = torch.tensor([bad, 0.5], dtype=torch.float64)
            with pytest.raises(ValueError, match=r"\blam\b"):
                mixup_fused.mix(x.to(dtype), t, perm, lam, num_classes=2, backend=backend)


def test_backend_from_environment_follows_changes(monkeypatch):
    """MIXUP_FUSED_BACKEND is read at every call: set, changed and unset after import."""
    from mixup_fused import _backend as ops

    x = torch.zeros(2, 3)
    monkeypatch.setenv("MIXUP_FUSED_BACKEND", "reference")
    assert ops.resolve_backend("auto", x) == "reference"
    assert ops.resolve_backend("reference", x) == "reference"
    if ops.HAS_CPP:
        assert ops.resolve_backend("cpp", x) == "cpp"  # an explicit backend wins
    monkeypatch.setenv("MIXUP_FUSED_BACKEND", "")
    assert ops.resolve_backend("auto", x) == ("cpp" if ops.HAS_CPP else "reference")
    monkeypatch.delenv("MIXUP_FUSED_BACKEND")
    assert ops.resolve_backend("auto", x) == ("cpp" if ops.HAS_CPP else "reference")


# ----------------------------------------------------------------------------
# Normalisation arguments, and the fuzzer's findings (test_fuzz.py), each a
# deterministic case
# ----------------------------------------------------------------------------


def test_uint8_errors():
    x = torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8)
    t, perm = torch.arange(4), torch.arange(4).flip(0)
    with pytest.raises(TypeError, match="x must be a floating tensor"):
        mixup_fused.mix(x, t, perm, 0.3, num_classes=4)
    with pytest.raises(ValueError, match="mean and std"):
        mixup_fused.mix(x, t, perm, 0.3, num_classes=4, mean=IMAGENET_MEAN)
    with pytest.raises(ValueError, match="std"):
        mixup_fused.mix(x, t, perm, 0.3, num_classes=4, mean=IMAGENET_MEAN, std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="mean"):
        mixup_fused.mix(x, t, perm, 0.3, num_classes=4, mean=(1.0, 2.0), std=IMAGENET_STD)
    with pytest.raises(ValueError, match="inplace"):
        mixup_fused.mix(x.float(), t, perm, 0.3, num_classes=4, mean=IMAGENET_MEAN, std=IMAGENET_STD, inplace=True)


def _needs(backend):
    if backend == "cpp" and not mixup_fused.HAS_CPP:
        pytest.skip("needs the C++ extension")


@pytest.mark.parametrize("backend", ["cpp", "reference"])
@pytest.mark.parametrize("num_classes", [5.0, "5", None, True, 0])
def test_num_classes_of_the_wrong_type_is_refused(backend, num_classes):
    """Found by the fuzzer (a schema RuntimeError on the cpp backend)."""
    _needs(backend)
    x, t, p = small_batch()
    with pytest.raises((TypeError, ValueError), match="num_classes"):
        mixup_fused.mix(x, t, p, 0.5, num_classes=num_classes, backend=backend)


@pytest.mark.parametrize("backend, num_classes", [("cpp", 2**62), ("cpp", 2**63), ("reference", 2**64)])
def test_num_classes_too_large_for_an_index_is_refused(backend, num_classes):
    _needs(backend)
    x, t, p = small_batch()
    with pytest.raises((TypeError, ValueError), match="num_classes"):
        mixup_fused.mix(x, t, p, 0.5, num_classes=num_classes, backend=backend)


@pytest.mark.parametrize("backend, eps", [("cpp", None), ("cpp", "0.1"), ("reference", None), ("cpp", float("nan"))])
def test_label_smoothing_of_the_wrong_type_is_refused(backend, eps):
    """Found by the fuzzer (a schema RuntimeError on the cpp backend)."""
    _needs(backend)
    x, t, p = small_batch()
    with pytest.raises((TypeError, ValueError), match="label_smoothing"):
        mixup_fused.mix(x, t, p, 0.5, num_classes=5, label_smoothing=eps, backend=backend)


@pytest.mark.parametrize("out_dtype", ["float32", float])
def test_out_dtype_is_checked(out_dtype):
    _needs("cpp")
    x, t, p = small_batch()
    with pytest.raises((TypeError, ValueError), match="out_dtype"):
        mixup_fused.mix(x, t, p, 0.5, num_classes=5, out_dtype=out_dtype, backend="cpp")


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_meta_tensors_get_shapes_or_a_clear_error(backend):
    """Found by the fuzzer (a RuntimeError from Tensor.item() in the value checks)."""
    x, t, p = (v.to("meta") for v in small_batch())
    try:
        out, y = mixup_fused.mix(x, t, p, 0.5, num_classes=5, backend=backend)
    except (TypeError, ValueError) as err:
        assert "meta" in str(err)
        return
    assert out.shape == x.shape and y.shape == (4, 5)
