"""Shared helpers for the mixup_fused test suite.

Without a GPU the Triton kernels run under the Triton interpreter on CPU
tensors. ``TRITON_INTERPRET`` is read when ``triton.jit`` decorates a kernel,
so it is set here, before anything imports triton (``import torch`` does not).
On a CUDA machine the real kernels run instead.

Helpers are imported by the test modules (``from conftest import ...``):
``devices_and_backends`` (what a test runs on), ``poison`` for preallocated
outputs and ``poisoned_allocations`` for the kernels' own, the tolerances
(derived once below: ``assert_matches``, ``assert_grad_matches``,
``assert_targets_sum_to_one``, ``error_bound``), small input builders
(``edge_boxes`` pairs cut and blended rows every way, ``edge_lam`` holds lam
== 1 and 0), and ``timm_module`` (the peer, from ``bench.peers``).

A test that takes ``backend`` runs on every backend that accepts CPU tensors
here; one that takes ``device`` and ``backend`` runs on every pair of
``devices_and_backends()`` (the CUDA pairs are marked ``gpu``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import zlib

import pytest
import torch

# The repository root, for ``bench.peers`` (the peers the benchmark times are
# the ones the tests compare against), also when pytest runs as ``pytest``.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

import mixup_fused  # noqa: E402  (after TRITON_INTERPRET is settled)
from mixup_fused.reference import NO_BOX  # noqa: E402

try:
    import triton  # noqa: F401

    HAS_TRITON = True
except ImportError:  # pragma: no cover - triton is a test dependency
    HAS_TRITON = False

# The Triton launchers run on CPU tensors only under the interpreter.
TRITON_ON_CPU = HAS_TRITON and not HAS_CUDA

# Backends that accept CPU tensors on this machine, in the order tests list them
# (the ``backend`` parameter of the tests), and those that accept CUDA tensors
# (listed without a CUDA device too: their cases are collected and skipped).
CPU_BACKENDS = [b for b, ok in (("cpp", mixup_fused.HAS_CPP), ("triton", TRITON_ON_CPU), ("reference", True)) if ok]
CUDA_BACKENDS = ["triton", "reference"] if HAS_TRITON or not HAS_CUDA else ["reference"]

# ----------------------------------------------------------------------------
# Tolerances, derived once here from the arithmetic
# ----------------------------------------------------------------------------
#
# One output element, in reference.py and in every kernel: the weights lam and
# 1 - lam are each rounded once, from the lam given, to the compute dtype
# (float32; float64 when x or the output is float64); then
# fl(fl(w * a) + fl(r * b)) in that dtype, with no FMA contraction (three
# roundings), and one rounding on store to the storage dtype. A CutMix pixel
# is a copy (only the rounding on store); normalisation adds fl(fl(v - mean) /
# std) before the mix (two roundings); targets are the same mix of smoothed
# rows, in float32.
#
# 1. A backend against the reference (``assert_matches``, ``max_ulps``): the
#    same operations in the same order round the same way, so the promise is
#    bit for bit, 0 ulp, in every dtype, for the C++ kernel, the reference and
#    the Triton interpreter -- except for one conversion that is faithful but
#    not correctly rounded: the interpreter's float32 -> bfloat16 (numpy has no
#    bfloat16) may take the other neighbour in the one rounding on store: 1 ulp
#    in bfloat16. A GPU (not run yet) is allowed that one step in both half
#    types.
# 2. Against exact arithmetic (``error_bound``): n roundings in a dtype with
#    unit roundoff u (eps / 2), each of an intermediate no larger than the sum
#    M of the magnitudes of the terms, move the result by at most n * u * M,
#    plus half the smallest subnormal per rounding; a rounding on store adds
#    u_store * M (and half its smallest subnormal), twice that where the store
#    is only faithful (case 1's exception). Tests that compare with exact
#    arithmetic count their roundings where they call it.

_BITS = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def devices_and_backends():
    """``(device, backend)`` parameters, like torchvision's ``cpu_and_cuda()``:
    the backends that take CPU tensors here, then those that take CUDA tensors
    (marked ``gpu``: skipped without a CUDA device)."""
    params = [pytest.param("cpu", b, id=f"cpu-{b}") for b in CPU_BACKENDS]
    params += [pytest.param("cuda", b, id=f"cuda-{b}", marks=pytest.mark.gpu) for b in CUDA_BACKENDS]
    return params


def cpu_and_cuda():
    """``device`` parameters: cpu, and cuda (marked ``gpu``)."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def timm_module(relpath: str):
    """``timm/<relpath>`` as ``bench.peers.load_timm`` loads it; skips the test without timm."""
    from bench.peers import load_timm

    try:
        return load_timm(relpath)
    except ImportError as err:
        pytest.skip(str(err))


# Mixup / timm Mixup settings by name: every way of choosing between Mixup and CutMix.
MIXUP_CONFIGS = {
    "mixup": dict(mixup_alpha=1.0),
    "cutmix": dict(mixup_alpha=0.0, cutmix_alpha=1.0),
    "switch": dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5),
    "switch_prob": dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.6, switch_prob=0.3),
    "prob": dict(mixup_alpha=1.0, prob=0.4),
    "minmax": dict(mixup_alpha=0.0, cutmix_minmax=(0.2, 0.8)),
    "switch_minmax": dict(mixup_alpha=0.5, cutmix_minmax=(0.3, 0.9), switch_prob=0.6),
    "cutmix_nocorrect": dict(mixup_alpha=0.0, cutmix_alpha=0.5, correct_lam=False),
    "switch_nocorrect": dict(mixup_alpha=0.4, cutmix_alpha=2.0, correct_lam=False, switch_prob=0.7),
}

# timm's IMAGENET_DEFAULT_MEAN / IMAGENET_DEFAULT_STD in 0..255 units: the
# normalisation of uint8 batches.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise distance in representable values of ``a.dtype`` (+0 == -0)."""
    assert a.dtype == b.dtype
    ibits = _BITS[a.dtype]
    nbits = torch.finfo(a.dtype).bits

    def ordered(t):
        i = t.contiguous().view(ibits).to(torch.int64)
        if nbits < 64:
            i = i & ((1 << nbits) - 1)  # the raw bit pattern, non-negative
            sign = i >> (nbits - 1)
            mag = i & ((1 << (nbits - 1)) - 1)
        else:
            sign = (i < 0).to(torch.int64)
            mag = i & 0x7FFFFFFFFFFFFFFF
        return torch.where(sign.bool(), -mag, mag)

    # float64 magnitudes fit in int64; differences of opposite-signed huge
    # values would overflow, but such pairs are far outside any tolerance.
    return (ordered(a) - ordered(b)).abs()


def ulp(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One ulp of ``dtype`` (float32 or bfloat16) at magnitude ``|v|``, in float64."""
    bits = {torch.float32: 24, torch.bfloat16: 8}[dtype]
    mag = v.abs().double().clamp_min(torch.finfo(dtype).tiny)
    return torch.exp2(torch.floor(torch.log2(mag)) - (bits - 1))


def bits(t: torch.Tensor) -> torch.Tensor:
    """The bytes of ``t`` in a new flat uint8 tensor: equal bits means equal
    values, -0.0 and NaN payloads included."""
    return torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t.detach()).reshape(-1).view(torch.uint8)


def max_ulps(dtype: torch.dtype, backend: str, device: str = "cpu") -> int:
    """How many ulps of ``dtype`` a result of ``backend`` on ``device`` may be
    from the reference (see the tolerances above): 0, except one step of the
    rounding on store in bfloat16 under the Triton interpreter and in the half
    types on a GPU."""
    if backend != "triton" or dtype not in (torch.float16, torch.bfloat16):
        return 0
    return 1 if dtype == torch.bfloat16 or device == "cuda" else 0


def unit_roundoff(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 2


def error_bound(
    magnitude: torch.Tensor, roundings: int, compute: torch.dtype, store: torch.dtype | None = None, faithful=False
):
    """The largest ``|computed - exact|`` of a result computed with
    ``roundings`` roundings in ``compute``, each of an intermediate no larger
    than ``magnitude`` (the sum of the magnitudes of the terms), then rounded
    once to ``store`` (if given): by half an ulp, or by one when the store is
    only ``faithful`` (where :func:`max_ulps` allows a step); float64,
    elementwise."""
    m = magnitude.double()
    fc = torch.finfo(compute)
    bound = roundings * (unit_roundoff(compute) * m + fc.tiny * fc.eps / 2)
    if store is not None:
        fs = torch.finfo(store)
        step = 2 if faithful else 1
        bound = bound + step * (unit_roundoff(store) * (m + bound) + fs.tiny * fs.eps / 2)
    return bound


def assert_matches(
    actual: torch.Tensor, expected: torch.Tensor, *, backend: str, dtype: torch.dtype | None = None, what=""
):
    """Element by element comparison of ``backend``'s result with the
    reference's: bit for bit (-0.0 and +0.0 differ), or within
    :func:`max_ulps` where a conversion is only faithful.

    NaN anywhere in ``actual`` fails unless ``expected`` holds NaN at the same
    place: outputs start poisoned with NaN, so an unwritten element fails.
    """
    dtype = dtype or expected.dtype
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != {dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    expected = expected.to(dtype)
    nan_a, nan_e = torch.isnan(actual), torch.isnan(expected)
    assert torch.equal(nan_a, nan_e), f"{what}: {int((nan_a & ~nan_e).sum())} elements unwritten (NaN poison)"
    ok = ~nan_e
    if not ok.any():
        return
    allowed = max_ulps(dtype, backend, actual.device.type)
    a, e = actual[ok], expected[ok]
    if allowed == 0:
        same = bits(a).view(-1, a.element_size()).eq(bits(e).view(-1, e.element_size())).all(1)
        if not bool(same.all()):
            j = int((~same).nonzero()[0])
            raise AssertionError(
                f"{what}: {int((~same).sum())} of {same.numel()} elements differ from the reference "
                f"({backend}, {dtype}: bit for bit), first {a[j].item()!r} != {e[j].item()!r}"
            )
        return
    worst = int(ulp_distance(a, e).max())
    assert worst <= allowed, f"{what}: {worst} ulps apart (allowed {allowed} for {backend}) in {dtype}"


def assert_grad_matches(gx, g, perm, lam, boxes, *, backend: str, what="grad x"):
    """``backend``'s gradient of the image mix for the incoming gradient
    ``g`` against the written-out formula (``mix_backward_reference``), as
    :func:`assert_matches` compares. Autograd through the reference backend
    sums the partner's term into zeros (the backward of ``x[perm]``), and
    0.0 + -0.0 is 0.0: the sign of a zero is all it does not share with the
    formula, so for it zeros are compared without their sign."""
    from mixup_fused.reference import mix_backward_reference

    want = mix_backward_reference(g, perm, lam, boxes)
    if backend == "reference":
        gx, want = gx + 0.0, want + 0.0
    assert_matches(gx, want, what=what, backend=backend)


def assert_targets_sum_to_one(y: torch.Tensor, target: torch.Tensor, perm: torch.Tensor, what="targets"):
    """Each row of mixed smoothed targets sums to 1, within the roundings of
    its elements: a smoothed value (one rounding for class ids; three for a
    soft row: to float32, the product, the sum) and the mix (three), six in
    all, over elements whose magnitudes sum to 1; summed in float64. A soft
    row that does not sum to exactly 1 moves the sum by its own deviation."""
    sums = y.double().sum(1)
    dev = torch.zeros_like(sums)
    if target.dim() == 2:
        rows = (target.double().sum(1) - 1).abs().to(sums.device)
        dev = torch.maximum(rows, rows[perm.to(sums.device)])
    tol = error_bound(1 + dev, 6, torch.float32) + dev + y.shape[1] * unit_roundoff(torch.float64)
    err = (sums - 1).abs()
    assert bool((err <= tol).all()), f"{what}: rows sum to 1 +- {float(err.max())} (allowed {float(tol.max())})"


def assert_cpu_agrees(out, y, x, target, perm, lam, **kw):
    """On CUDA tensors: the C++ kernel on the same inputs moved to the CPU
    gives the same result (a no-op for CPU tensors or without the C++ build)."""
    if not x.is_cuda or not mixup_fused.HAS_CPP:
        return
    cpu = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    lam_cpu = lam.cpu() if isinstance(lam, torch.Tensor) else lam
    out_c, y_c = mixup_fused.mix(x.cpu(), target.cpu(), perm.cpu(), lam_cpu, backend="cpp", **cpu)
    # The GPU result, compared with the C++ kernel's as with the reference's.
    assert_matches(out, out_c.to(out.device), backend="triton", what="cuda vs cpp images")
    assert_matches(y, y_c.to(y.device), backend="triton", what="cuda vs cpp targets")


def poison(t: torch.Tensor) -> torch.Tensor:
    """Fill ``t`` in place with garbage a kernel must overwrite: NaN for
    floating tensors, the byte pattern 0xAB for integer ones. Returns ``t``."""
    if t.is_floating_point() or t.is_complex():
        return t.fill_(float("nan"))
    if t.dtype == torch.bool:
        return t.fill_(True)
    size = t.element_size()
    value = int.from_bytes(b"\xab" * size, "little", signed=t.dtype.is_signed)
    return t.fill_(value)


@contextlib.contextmanager
def poisoned_allocations():
    """Every fresh ``torch.empty`` / ``at::empty`` (the kernels' outputs) starts
    filled with NaN (floats) or the max value (ints), so an element a kernel
    forgets to write shows up as a mismatch."""
    import torch.utils.deterministic as det

    old_mode = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_fill = det.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    det.fill_uninitialized_memory = True
    try:
        yield
    finally:
        det.fill_uninitialized_memory = old_fill
        torch.use_deterministic_algorithms(old_mode, warn_only=old_warn)


CPU_ISAS = mixup_fused._C.supported_cpu_isas() if mixup_fused.HAS_CPP else []


@pytest.fixture(params=CPU_ISAS)
def isa(request):
    """Every CPU kernel table this CPU runs (base, avx2, avx512): each is its own compiled code."""
    previous = mixup_fused._C.set_cpu_isa(request.param)
    try:
        yield request.param
    finally:
        mixup_fused._C.set_cpu_isa(previous)


@pytest.fixture
def poison_outputs():
    with poisoned_allocations():
        yield


@pytest.fixture
def gen(request) -> torch.Generator:
    """A CPU generator seeded from the test's id: fresh inputs per test, the
    same inputs on every run."""
    return torch.Generator().manual_seed(zlib.crc32(request.node.nodeid.encode()))


# ----------------------------------------------------------------------------
# Input builders
# ----------------------------------------------------------------------------


def randn(shape, dtype, gen, device="cpu") -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


def image(shape, dtype, gen, device="cpu", layout="contiguous") -> torch.Tensor:
    """``randn`` images ``[B, C, H, W]``, ``contiguous``, ``channels_last`` or
    ``transposed`` (H and W swapped in memory: dense in neither order)."""
    B, C, H, W = shape
    if layout == "transposed":
        return randn((B, C, W, H), dtype, gen, device).transpose(2, 3)
    x = randn((B, C, H, W), dtype, gen, device)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def class_ids(B, K, gen, device="cpu") -> torch.Tensor:
    return torch.randint(0, K, (B,), generator=gen).to(device)


def soft_targets(B, K, gen, device="cpu") -> torch.Tensor:
    """Rows that sum to one (not one-hot)."""
    return torch.softmax(torch.randn(B, K, generator=gen), dim=1).to(device)


def random_perm(B, gen, device="cpu") -> torch.Tensor:
    return torch.randperm(B, generator=gen).to(device)


def random_involution(B, gen, device="cpu") -> torch.Tensor:
    """A random involution with some fixed points (perm[perm[i]] == i)."""
    order = torch.randperm(B, generator=gen).tolist()
    perm = list(range(B))
    npairs = int(torch.randint(0, B // 2 + 1, (1,), generator=gen)) if B > 1 else 0
    for k in range(npairs):
        a, b = order[2 * k], order[2 * k + 1]
        perm[a], perm[b] = b, a
    return torch.tensor(perm, dtype=torch.int64, device=device)


def random_lam(B, gen, device="cpu", dtype=torch.float32) -> torch.Tensor:
    return torch.rand(B, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


def small_batch():
    """``(x [4, 3, 5, 5], class ids 0..3, the involution (0 1)(2 3))`` from torch's global RNG."""
    return torch.randn(4, 3, 5, 5), torch.tensor([0, 1, 2, 3]), torch.tensor([1, 0, 3, 2])


# Along the cycles of a pairing, rows are cut (C) or blended (N, NO_BOX) in
# this order (rows paired with themselves alternate C, N on their own): a
# row and its partner (forward) and a partner and the row it feeds
# (backward) then meet as C-N and N-C from the first pair on, and as N-N and
# C-C from the fourth.
_BOX_PATTERN = "CNNCC"


def _cycles(perm) -> list[list[int]]:
    """The cycles of a permutation, each from its smallest row."""
    perm = [int(v) for v in perm]
    seen, cycles = set(), []
    for start in range(len(perm)):
        if start in seen:
            continue
        cycle, i = [], start
        while i not in seen:
            seen.add(i)
            cycle.append(i)
            i = perm[i]
        cycles.append(cycle)
    return cycles


def edge_boxes(B, H, W, gen, device="cpu", perm=None) -> torch.Tensor:
    """int64 ``[B, 4]`` boxes ``(y0, y1, x0, x1)``: cut rows get the edge
    cases first -- each corner pixel, the full image, empty boxes (y0 == y1,
    x0 == x1), the right and left columns, the bottom row -- then random
    boxes; blended rows get ``NO_BOX``. With ``perm``, rows are cut or blended
    along its cycles as ``_BOX_PATTERN`` says, so that every pairing of a cut
    and a blended row occurs; without it, rows alternate cut and blended."""
    fixed = [  # (the ones that tell rows and columns apart first: small batches have three or four cut rows)
        (0, 1, 0, 1),  # top-left corner pixel
        (H - 1, H, W - 1, W),  # bottom-right corner pixel
        (0, H, 0, W),  # full image
        (0, 0, 0, W),  # empty: y0 == y1
        (0, H, W - 1, W),  # right column
        (H - 1, H, 0, W),  # bottom row
        (H // 2, H // 2, 0, 0),  # empty: both
        (0, H, 0, 1),  # left column
    ]
    cycles = _cycles(perm) if perm is not None else [[i] for i in range(B)]
    order = [i for cycle in cycles if len(cycle) > 1 for i in cycle]
    alone = [cycle[0] for cycle in cycles if len(cycle) == 1]
    kinds = {i: _BOX_PATTERN[k % len(_BOX_PATTERN)] for k, i in enumerate(order)}
    kinds.update({i: "CN"[k % 2] for k, i in enumerate(alone)})
    rows = [None] * B
    cuts = 0
    for i in range(B):
        if kinds[i] == "N":
            rows[i] = NO_BOX
        elif cuts < len(fixed):
            rows[i] = fixed[cuts]
            cuts += 1
        else:
            y0, y1 = sorted(torch.randint(0, H + 1, (2,), generator=gen).tolist())
            x0, x1 = sorted(torch.randint(0, W + 1, (2,), generator=gen).tolist())
            rows[i] = (y0, y1, x0, x1)
    return torch.tensor(rows, dtype=torch.int64, device=device).view(B, 4)


def pairings(boxes: torch.Tensor, perm: torch.Tensor) -> set[tuple[str, str]]:
    """The (row, partner) kinds a call pairs: "C" cut, "N" blended (NO_BOX),
    "S" for a row paired with itself; e.g. {("C", "N"), ("S", "N")}."""
    kind = ["N" if b == list(NO_BOX) else "C" for b in boxes.tolist()]
    return {("S", kind[i]) if p == i else (kind[i], kind[p]) for i, p in enumerate(perm.tolist())}


def edge_lam(B, gen, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """Per-sample lam holding the endpoints: 1 (the identity; in place, a
    blended row is kept as it is) at rows 1, 5, 9, ..., 0 (the partner alone)
    at rows 3, 7, 11, ..., random values elsewhere."""
    lam = random_lam(B, gen, device, dtype)
    lam[1::4] = 1.0
    lam[3::4] = 0.0
    return lam


# ----------------------------------------------------------------------------
# Hooks
# ----------------------------------------------------------------------------


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line(
        "markers",
        "backend_bug(*backends, reason, raises=None): a reported product bug on these backends; "
        "their cases are strict xfails",
    )


def pytest_collection_modifyitems(config, items):
    # Cases on the Triton backend with CPU tensors run the interpreter: marked
    # so that ``make test`` runs them in one of its two environments only.
    interp = pytest.mark.triton_interpreter
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if TRITON_ON_CPU and params.get("backend") == "triton" and params.get("device", "cpu") == "cpu":
            item.add_marker(interp)
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _backend_bugs(metafunc):
    bugs = {}
    for m in metafunc.definition.iter_markers("backend_bug"):
        for b in m.args:
            bugs[b] = pytest.mark.xfail(strict=True, reason=m.kwargs["reason"], raises=m.kwargs.get("raises"))
    return bugs


def pytest_generate_tests(metafunc):
    """A test that takes ``backend`` runs on every backend that takes CPU
    tensors here; one that takes ``device`` and ``backend`` on every pair of
    ``devices_and_backends()``. ``@pytest.mark.backend_bug("triton",
    reason=...)`` turns those cases into strict xfails (they must fail until
    the reported bug is fixed). Explicit parametrisation wins."""
    if "backend" not in metafunc.fixturenames:
        return
    for m in metafunc.definition.iter_markers("parametrize"):
        names = m.args[0]
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if "backend" in names:
            return
    bugs = _backend_bugs(metafunc)
    if "device" in metafunc.fixturenames:
        params = []
        for p in devices_and_backends():
            _, backend = p.values
            marks = list(p.marks) + ([bugs[backend]] if backend in bugs else [])
            params.append(pytest.param(*p.values, marks=marks, id=p.id))
        metafunc.parametrize("device, backend", params)
        return
    metafunc.parametrize("backend", [pytest.param(b, marks=bugs[b]) if b in bugs else b for b in CPU_BACKENDS])
