"""Shared helpers for the mixup_fused test suite.

Without a GPU the Triton kernels run under the Triton interpreter on CPU
tensors. ``TRITON_INTERPRET`` is read when ``triton.jit`` decorates a kernel,
so it is set here, before anything imports triton (``import torch`` does not).
On a CUDA machine the real kernels run instead.

Helpers are imported by the test modules (``from conftest import ...``):
``devices_and_backends`` (what a test runs on), ``poison`` for preallocated
outputs, ``assert_matches`` with the explicit per-dtype tolerance rows, small
input builders, and ``timm_module`` (the peer, from ``bench.peers``).

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

# Explicit tolerance per storage dtype: (dtype, atol, rtol), plus the largest
# distance in units in the last place. Every backend computes in float32
# (float64 for float64) with the reference's operation order and rounds once
# on store, so float32 and float64 match bit for bit. Half types may differ by
# one rounding step: the Triton interpreter rounds bfloat16 differently from
# torch (numpy has no bfloat16).
TOLERANCES = [
    (torch.float32, 0.0, 0.0),
    (torch.float64, 0.0, 0.0),
    (torch.float16, 2.0**-24, 2.0**-10),  # one ulp; atol = smallest subnormal
    (torch.bfloat16, 2.0**-133, 2.0**-7),  # one ulp; atol = smallest subnormal
]
TOL = {dt: (atol, rtol) for dt, atol, rtol in TOLERANCES}
MAX_ULPS = {torch.float32: 0, torch.float64: 0, torch.float16: 1, torch.bfloat16: 1}

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


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, *, dtype: torch.dtype | None = None, what=""):
    """Element by element comparison with the tolerance row of the storage dtype.

    NaN anywhere in ``actual`` fails unless ``expected`` holds NaN at the same
    place: outputs start poisoned with NaN, so an unwritten element fails.
    """
    dtype = dtype or expected.dtype
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != {dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    expected = expected.to(dtype)
    nan_a, nan_e = torch.isnan(actual), torch.isnan(expected)
    assert torch.equal(nan_a, nan_e), f"{what}: {int((nan_a & ~nan_e).sum())} elements unwritten (NaN poison)"
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, equal_nan=True, msg=lambda m: f"{what}: {m}")
    ok = ~nan_e
    if ok.any():
        worst = int(ulp_distance(actual[ok], expected[ok]).max())
        assert worst <= MAX_ULPS[dtype], f"{what}: {worst} ulps apart (allowed {MAX_ULPS[dtype]}) in {dtype}"


def assert_cpu_agrees(out, y, x, target, perm, lam, **kw):
    """On CUDA tensors: the C++ kernel on the same inputs moved to the CPU
    gives the same result (a no-op for CPU tensors or without the C++ build)."""
    if not x.is_cuda or not mixup_fused.HAS_CPP:
        return
    cpu = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    lam_cpu = lam.cpu() if isinstance(lam, torch.Tensor) else lam
    out_c, y_c = mixup_fused.mix(x.cpu(), target.cpu(), perm.cpu(), lam_cpu, backend="cpp", **cpu)
    assert_matches(out.cpu(), out_c, what="cuda vs cpp images")
    assert_matches(y.cpu(), y_c, what="cuda vs cpp targets")


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


def edge_boxes(B, H, W, gen, device="cpu") -> torch.Tensor:
    """int64 ``[B, 4]`` boxes ``(y0, y1, x0, x1)``: the full image, empty boxes
    (y0 == y1 and x0 == x1), boxes on each edge and corner, then random ones."""
    fixed = [
        (0, H, 0, W),  # full image
        (0, 0, 0, W),  # empty: y0 == y1
        (H // 2, H // 2, 0, 0),  # empty: both
        (0, 1, 0, 1),  # top-left corner pixel
        (H - 1, H, W - 1, W),  # bottom-right corner pixel
        (0, H, W - 1, W),  # right column
        (H - 1, H, 0, W),  # bottom row
        (0, H, 0, 1),  # left column
    ]
    rows = []
    for i in range(B):
        if i < len(fixed):
            rows.append(fixed[i])
            continue
        y0, y1 = sorted(torch.randint(0, H + 1, (2,), generator=gen).tolist())
        x0, x1 = sorted(torch.randint(0, W + 1, (2,), generator=gen).tolist())
        rows.append((y0, y1, x0, x1))
    # Shuffle so that the edge cases land on various rows and partners.
    order = torch.randperm(B, generator=gen).tolist()
    return torch.tensor([rows[j] for j in order], dtype=torch.int64, device=device).view(B, 4)


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
