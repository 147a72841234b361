"""Robustness: invalid input changes nothing, no leaks, concurrency, determinism.

- Every invalid in-place call raises TypeError/ValueError and leaves ``x``
  bitwise untouched, on every backend and layout.
- 10,000 calls keep the resident set flat (and CUDA memory, on a GPU).
- The CPU op runs inside DataLoader workers (fork and spawn) in a collate
  function, and from two Python threads at once, with correct results.
- Determinism: the same generator seed gives the same bits across runs,
  processes and thread counts; the C++ kernel equals the reference bit for
  bit in every dtype (no FMA contraction anywhere); every CPU instruction set
  gives the same bits; the Triton interpreter matches within tolerance.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # run as a child: python tests/test_robustness.py <case>
    sys.path.insert(0, HERE)

from conftest import CPU_BACKENDS, assert_matches  # noqa: E402

import mixup_fused as mf  # noqa: E402
from mixup_fused.reference import NO_BOX, mix_backward_reference, mix_reference  # noqa: E402

needs_cpp = pytest.mark.skipif(not mf.HAS_CPP, reason="needs the C++ extension")


def _bits(t: torch.Tensor) -> torch.Tensor:
    return torch.empty(t.shape, dtype=t.dtype).copy_(t.detach()).view(torch.uint8)


# ----------------------------------------------------------------------------
# Invalid input changes nothing
# ----------------------------------------------------------------------------

B, C, H, W, K = 6, 3, 5, 7, 10
INVOLUTION = [1, 0, 3, 2, 5, 4]
GOOD_BOXES = [(0, 5, 0, 7), NO_BOX, (1, 3, 2, 6), (0, 0, 0, 0), (4, 5, 6, 7), NO_BOX]


def _good_args():
    return dict(
        target=torch.tensor([0, 1, 2, 3, 4, 9]),
        perm=torch.tensor(INVOLUTION),
        lam=0.4,
        num_classes=K,
        label_smoothing=0.1,
        boxes=torch.tensor(GOOD_BOXES),
    )


def _set(i, v):
    def edit(t):
        t = t.clone()
        t[i] = v
        return t

    return edit


# (name, error type, word the message must contain, edits to the good arguments)
INVALID = [
    ("perm_not_involution", ValueError, "involution", dict(perm=torch.tensor([1, 2, 0, 4, 3, 5]))),
    ("perm_out_of_range_last", ValueError, "perm", dict(perm=_set(-1, 6))),
    ("perm_negative", ValueError, "perm", dict(perm=_set(0, -1))),
    ("perm_repeated", ValueError, "perm", dict(perm=_set(-1, 0))),
    ("perm_short", ValueError, "perm", dict(perm=torch.tensor([1, 0, 3, 2, 4]))),
    ("perm_float", TypeError, "perm", dict(perm=torch.tensor(INVOLUTION, dtype=torch.float32))),
    ("class_id_too_big_last", ValueError, "target", dict(target=_set(-1, K))),
    ("class_id_negative", ValueError, "target", dict(target=_set(2, -1))),
    ("target_bool", TypeError, "target", dict(target=torch.ones(B, dtype=torch.bool))),
    ("soft_target_wrong_width", ValueError, "target", dict(target=torch.full((B, K + 1), 0.1))),
    ("target_short", ValueError, "target", dict(target=torch.arange(B - 1))),
    ("lam_above_one", ValueError, "lam", dict(lam=1.5)),
    ("lam_negative", ValueError, "lam", dict(lam=-0.1)),
    ("lam_nan", ValueError, "lam", dict(lam=float("nan"))),
    ("lam_tensor_nan_last", ValueError, "lam", dict(lam=torch.tensor([0.5] * (B - 1) + [float("nan")]))),
    ("lam_tensor_short", ValueError, "lam", dict(lam=torch.full((B - 1,), 0.5))),
    ("lam_string", TypeError, "lam", dict(lam="0.5")),
    ("box_past_the_image_last", ValueError, "boxes", dict(boxes=_set(-1, torch.tensor([0, H + 1, 0, 1])))),
    ("box_reversed", ValueError, "boxes", dict(boxes=_set(2, torch.tensor([3, 1, 0, 1])))),
    ("box_partly_no_box", ValueError, "boxes", dict(boxes=_set(1, torch.tensor([-1, -1, 0, 1])))),
    ("boxes_float", TypeError, "boxes", dict(boxes=lambda b: b.float())),
    ("boxes_wrong_shape", ValueError, "boxes", dict(boxes=lambda b: b[:, :3])),
    ("num_classes_zero", ValueError, "num_classes", dict(num_classes=0)),
    ("label_smoothing_above_one", ValueError, "label_smoothing", dict(label_smoothing=1.5)),
    ("label_smoothing_nan", ValueError, "label_smoothing", dict(label_smoothing=float("nan"))),
    ("target_on_meta", ValueError, "target", dict(target=lambda t: t.to("meta"))),
    ("perm_on_meta", ValueError, "perm", dict(perm=lambda t: t.to("meta"))),
    ("out_dtype_differs", ValueError, "out_dtype", dict(out_dtype=torch.float64)),
    ("mean_std_given", ValueError, "mean", dict(mean=[0.5] * C, std=[0.2] * C)),
    ("backend_unknown", ValueError, "backend", dict(backend="cuda")),
]


def _apply(args, edits):
    args = dict(args)
    for k, v in edits.items():
        args[k] = v(args[k]) if callable(v) else v
    return args


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
@pytest.mark.parametrize("name, err, word, edits", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_inplace_call_leaves_x_untouched(backend, layout, name, err, word, edits):
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    dtype = torch.bfloat16 if len(name) % 2 else torch.float32
    if layout == "transposed":  # not dense: the kernels mix a dense copy and write it back
        x = torch.randn(B, C, W, H, generator=g).to(dtype).transpose(2, 3)
    else:
        x = torch.randn(B, C, H, W, generator=g).to(dtype)
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
    before = _bits(x)
    args = _apply(_good_args(), edits)
    args.setdefault("backend", backend)
    with pytest.raises(err) as info:
        mf.mix(x, inplace=True, **args)
    assert word in str(info.value), f"the message does not name {word!r}: {info.value}"
    assert torch.equal(_bits(x), before), f"{backend}: a call that raised changed x"
    # The same call with the good arguments works (the case is invalid only by its edit).
    mf.mix(x, inplace=True, **dict(_good_args(), backend=backend))
    assert not torch.equal(_bits(x), before)


def test_inplace_on_x_that_requires_grad_leaves_it_untouched(backend):
    x = torch.randn(B, C, H, W, requires_grad=True)
    before = _bits(x)
    with pytest.raises(ValueError, match="requires grad"):
        mf.mix(x, inplace=True, backend=backend, **_good_args())
    assert torch.equal(_bits(x), before)


# ----------------------------------------------------------------------------
# No leaks
# ----------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


LEAK_BUDGET = 12 * 2**20  # a leak of one 4 KiB buffer per call would be 40 MiB


def _leak_workload(n: int, device="cpu", backend="auto"):
    """n calls of every kind: out of place, in place, CutMix, soft targets,
    autograd (forward and backward), and calls that raise."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g).to(device)  # 4 KiB: a leaked copy per call would show
    img = torch.randn(64, 1, 4, 4, generator=g).to(device)
    t = torch.randint(0, 10, (64,), generator=g).to(device)
    soft = torch.softmax(torch.randn(64, 10, generator=g), 1).to(device)
    perm = torch.arange(64).view(-1, 2).flip(1).reshape(-1).to(device)
    lam = torch.rand(64, generator=g).to(device)
    boxes = torch.tensor([[0, 2, 1, 3]] * 64).to(device)
    bad_perm = torch.zeros(64, dtype=torch.int64, device=device)
    xg = x.clone().requires_grad_()
    for k in range(n):
        kind = k % 6
        if kind == 0:
            mf.mix(x, t, perm, lam, num_classes=10, backend=backend)
        elif kind == 1:
            mf.mix(x, t, perm, 0.3, num_classes=10, inplace=True, backend=backend)
        elif kind == 2:
            mf.mix(img, soft, perm, lam, num_classes=10, boxes=boxes, label_smoothing=0.1, backend=backend)
        elif kind == 3:
            out, _ = mf.mix(xg, t, perm, lam, num_classes=10, backend=backend)
            out.sum().backward()
            xg.grad = None
        elif kind == 4:
            try:
                mf.mix(x, t, bad_perm, lam, num_classes=10, backend=backend)
            except ValueError:
                pass
        else:
            try:
                mf.mix(x, t, perm, lam, num_classes=10, inplace=True, backend=backend, label_smoothing=2.0)
            except ValueError:
                pass


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_10000_calls_keep_rss_flat(backend):
    if backend == "cpp" and not mf.HAS_CPP:
        pytest.skip("needs the C++ extension")
    n = 10_000
    _leak_workload(600, backend=backend)  # warm up: allocator pools, lazy imports, dispatcher caches
    gc.collect()
    before = _rss_bytes()
    _leak_workload(n, backend=backend)
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < LEAK_BUDGET, f"RSS grew by {grown / 2**20:.1f} MiB over {n} calls"


@pytest.mark.gpu
def test_10000_calls_keep_cuda_memory_flat():
    _leak_workload(600, device="cuda")
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    _leak_workload(10_000, device="cuda")
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - before <= 0, "CUDA memory grew"


# ----------------------------------------------------------------------------
# Concurrency: DataLoader workers and threads
# ----------------------------------------------------------------------------


def _sample(i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + i)
    return torch.randn(3, 9, 11, generator=g)


class _Images(torch.utils.data.Dataset):
    def __len__(self):
        return 48

    def __getitem__(self, i):
        return _sample(i), i % 10, i


def _batch_params(first: int, n: int):
    g = torch.Generator().manual_seed(first)
    perm = torch.arange(n).view(-1, 2).flip(1).reshape(-1) if n % 2 == 0 else torch.arange(n)
    lam = torch.rand(n, generator=g)
    boxes = torch.tensor([(1, 6, 2, 9), NO_BOX] * (n // 2) + [NO_BOX] * (n % 2)) if first % 16 else None
    return perm, lam, boxes


def mix_collate(batch):
    """A collate function that mixes the batch on the CPU (module level, so
    that spawn workers can unpickle it)."""
    x = torch.stack([b[0] for b in batch])
    t = torch.tensor([b[1] for b in batch])
    idx = torch.tensor([b[2] for b in batch])
    perm, lam, boxes = _batch_params(int(idx[0]), len(batch))
    inplace = int(idx[0]) % 3 == 0
    x_in = x.clone()
    out, y = mf.mix(x, t, perm, lam, num_classes=10, label_smoothing=0.1, boxes=boxes, inplace=inplace)
    return dict(x=out, y=y, x_in=x_in, t=t, idx=idx, pid=os.getpid(), threads=torch.get_num_threads())


@needs_cpp
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_dataloader_workers(start_method):
    # Use the op (and its thread pool) in the parent before the workers start.
    big = torch.randn(64, 3, 64, 64)
    mf.mix(big, torch.zeros(64, dtype=torch.int64), torch.randperm(64), 0.5, num_classes=2)
    loader = torch.utils.data.DataLoader(
        _Images(),
        batch_size=8,
        num_workers=2,
        collate_fn=mix_collate,
        multiprocessing_context=start_method,
    )
    pids, seen = set(), []
    for batch in loader:
        idx = batch["idx"].tolist()
        seen += idx
        pids.add(batch["pid"])
        want_in = torch.stack([_sample(i) for i in idx])
        assert torch.equal(batch["x_in"], want_in), "the worker built a different batch"
        perm, lam, boxes = _batch_params(idx[0], len(idx))
        want_x, want_y = mix_reference(want_in, batch["t"], perm, lam, num_classes=10, label_smoothing=0.1, boxes=boxes)
        assert torch.equal(batch["x"], want_x), f"images mixed in a {start_method} worker differ from the reference"
        assert torch.equal(batch["y"], want_y), f"targets mixed in a {start_method} worker differ from the reference"
    assert sorted(seen) == list(range(48))
    assert os.getpid() not in pids and len(pids) == 2, "the batches were not made by two worker processes"


@needs_cpp
def test_two_threads_at_once():
    """Two Python threads call the C++ op at the same time (the op releases the
    GIL and parallelises internally), one in place, one out of place, on
    inputs of different shapes; every result is right."""
    g = torch.Generator().manual_seed(5)
    jobs = []
    for k, shape in enumerate([(16, 3, 32, 33), (10, 2, 17, 40)]):
        n = shape[0]
        xs = [torch.randn(shape, generator=g) for _ in range(4)]
        t = torch.randint(0, 100, (n,), generator=g)
        perm = torch.arange(n).view(-1, 2).flip(1).reshape(-1)
        lam = torch.rand(n, generator=g)
        boxes = torch.tensor([(2, 12, 3, 20), NO_BOX] * (n // 2))
        want = [mix_reference(x, t, perm, lam, num_classes=100, boxes=boxes) for x in xs]
        jobs.append((k, xs, t, perm, lam, boxes, want))
    barrier = threading.Barrier(2)
    errors = []

    def run(k, xs, t, perm, lam, boxes, want):
        try:
            barrier.wait()
            for j in range(150):
                x = xs[j % len(xs)]
                if k == 0:
                    x = x.clone()
                    y = mf.mix(x, t, perm, lam, num_classes=100, boxes=boxes, inplace=True, backend="cpp")[1]
                    out = x
                else:
                    out, y = mf.mix(x, t, perm, lam, num_classes=100, boxes=boxes, backend="cpp")
                if not (torch.equal(out, want[j % len(xs)][0]) and torch.equal(y, want[j % len(xs)][1])):
                    errors.append(f"thread {k}, call {j}: wrong result")
                    return
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(f"thread {k}: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors


# ----------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------


def _seeded_run(seed: int, backend: str = "cpp") -> dict:
    """Draw lam, pairing and boxes from a torch.Generator (the library's
    sampler, timm's distributions) and mix: SHA-256 of every output."""
    from mixup_fused.sampling import MixupConfig, TorchSampler

    g = torch.Generator().manual_seed(seed)
    sampler = TorchSampler(torch.Generator().manual_seed(seed + 1))
    cfg = MixupConfig(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5, prob=1.0)
    hashes = {}
    cases = [
        ("f32_batch", (32, 3, 24, 31), torch.float32, "batch", None),
        ("bf16_elem_cl", (17, 3, 20, 22), torch.bfloat16, "elem", torch.channels_last),
        ("f16_pair", (16, 4, 9, 33), torch.float16, "pair", None),
        ("f64_elem", (9, 2, 7, 13), torch.float64, "elem", None),
        ("u8_norm_elem", (12, 3, 16, 18), torch.uint8, "elem", None),
    ]
    for name, shape, dtype, mode, fmt in cases:
        if dtype == torch.uint8:
            x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
        else:
            x = torch.randn(shape, generator=g).to(dtype)
        if fmt is not None:
            x = x.contiguous(memory_format=fmt)
        t = torch.randint(0, 1000, (shape[0],), generator=g)
        params = sampler.sample(cfg, mode, shape[0], img_size=shape)
        kw = dict(num_classes=1000, label_smoothing=0.1, boxes=params.boxes, backend=backend)
        if dtype == torch.uint8:
            kw.update(mean=[124.0, 116.0, 104.0], std=[58.4, 57.1, 57.4], out_dtype=torch.bfloat16)
        out, y = mf.mix(x, t, params.perm, params.lam, **kw)
        hashes[name] = [hashlib.sha256(_bits(v).numpy().tobytes()).hexdigest() for v in (out, y)]
        if dtype != torch.uint8:
            xi = x.clone()
            mf.mix(xi, t, params.perm, params.lam, inplace=True, **kw)
            xg = x.clone().requires_grad_()
            out, _ = mf.mix(xg, t, params.perm, params.lam, **kw)
            out.backward(torch.randn(out.shape, generator=g).to(dtype))
            hashes[name + "_inplace_grad"] = [
                hashlib.sha256(_bits(v).numpy().tobytes()).hexdigest() for v in (xi, xg.grad)
            ]
    return hashes


def child_seeded_run(threads: str) -> None:
    torch.set_num_threads(int(threads))
    print("HASHES " + json.dumps(_seeded_run(1234)))


def _child_hashes(threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "child_seeded_run", str(threads)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=os.path.dirname(HERE),
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("HASHES "))
    return json.loads(line[len("HASHES ") :])


@needs_cpp
def test_same_seed_same_bits_across_runs_processes_and_threads():
    here = _seeded_run(1234)
    assert _seeded_run(1234) == here, "two runs in one process differ"
    assert _child_hashes(1) == here, "a fresh process with 1 thread differs"
    assert _child_hashes(2) == here, "a fresh process with 2 threads differs"
    assert _seeded_run(1235) != here, "a different seed gave the same outputs: the check is blind"


def _kernel_battery():
    """(name, function, args) over dtypes, layouts and modes, with odd sizes
    so that the vector loops have tails."""
    g = torch.Generator().manual_seed(77)
    boxes = torch.tensor([(1, 8, 3, 30), NO_BOX, (0, 9, 0, 37), (4, 4, 0, 0), (0, 1, 36, 37), NO_BOX, (2, 7, 5, 6)])
    perm = torch.tensor([2, 4, 0, 6, 1, 5, 3])  # an involution: also for in place
    t = torch.randint(0, 21841, (7,), generator=g)
    soft = torch.softmax(torch.randn(7, 50, generator=g), 1)
    cases = []
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        x = torch.randn(7, 3, 9, 37, generator=g).to(dtype)
        grad = torch.randn(7, 3, 9, 37, generator=g).to(dtype)
        lam = torch.rand(7, generator=g).to(torch.float64 if dtype == torch.float64 else torch.float32)
        for fmt in (torch.contiguous_format, torch.channels_last):
            xf, gf = x.contiguous(memory_format=fmt), grad.contiguous(memory_format=fmt)
            for bx in (None, boxes):
                tag = f"{dtype}-{fmt}-{'cut' if bx is not None else 'mix'}"
                cases.append((tag, _mix, (xf, t, perm, lam, 21841, bx, 0.0)))
                cases.append((tag + "-soft", _mix, (xf, soft, perm, lam, 50, bx, 0.2)))
                cases.append((tag + "-inplace", _inplace, (xf, t, perm, lam, 21841, bx, 0.1)))
                cases.append((tag + "-backward", torch.ops.mixup_fused.mix_backward, (gf, perm, lam, bx)))
        cases.append((f"{dtype}-flat-odd", _mix, (x.reshape(7, -1)[:, 3:], t, perm, lam, 21841, None, 0.0)))
    xu = torch.randint(0, 256, (7, 3, 9, 37), generator=g, dtype=torch.uint8)
    lam = torch.rand(7, generator=g)
    for odt in (torch.float32, torch.bfloat16, torch.float16):
        for fmt in (torch.contiguous_format, torch.channels_last):
            cases.append((f"u8-{odt}-{fmt}", _normalize, (xu.contiguous(memory_format=fmt), t, perm, lam, boxes, odt)))
    return cases


def _mix(x, target, perm, lam, K, boxes, eps):
    return mf.mix(x, target, perm, lam, num_classes=K, boxes=boxes, label_smoothing=eps, backend="cpp")


def _inplace(x, target, perm, lam, K, boxes, eps):
    x = x.clone()
    y = mf.mix(x, target, perm, lam, num_classes=K, boxes=boxes, label_smoothing=eps, inplace=True, backend="cpp")[1]
    return x, y


def _normalize(x, target, perm, lam, boxes, out_dtype):
    mean, std = [120.0, 110.0, 100.0], [50.0, 60.0, 70.0]
    return mf.mix(
        x, target, perm, lam, num_classes=21841, boxes=boxes, mean=mean, std=std, out_dtype=out_dtype, backend="cpp"
    )


def _battery_bits():
    out = {}
    for name, fn, args in _kernel_battery():
        res = fn(*args)
        out[name] = [_bits(v) for v in (res if isinstance(res, tuple) else (res,))]
    return out


@needs_cpp
def test_every_cpu_isa_and_thread_count_gives_the_same_bits():
    from mixup_fused import _C

    isas = _C.supported_cpu_isas()
    assert "base" in isas
    previous = _C.cpu_isa()
    threads = torch.get_num_threads()
    results = {}
    try:
        for isa in isas:
            _C.set_cpu_isa(isa)
            assert _C.cpu_isa() == isa
            results[isa] = _battery_bits()
        _C.set_cpu_isa(isas[-1])
        torch.set_num_threads(1)
        results["one_thread"] = _battery_bits()
    finally:
        _C.set_cpu_isa(previous)
        torch.set_num_threads(threads)
    base = results["base"]
    for key, res in results.items():
        for name, tensors in res.items():
            for a, b in zip(tensors, base[name], strict=True):
                assert torch.equal(a, b), f"{key} differs from base in {name}"


def _convert_cpp(x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
    """x converted by the C++ kernel alone: every row CutMix-ed with an empty box is a copy."""
    B = x.shape[0]
    out, _ = mf.mix(
        x, torch.zeros(B, dtype=torch.long), torch.arange(B), torch.ones(B), num_classes=2,
        boxes=torch.zeros(B, 4, dtype=torch.long), out_dtype=out_dtype, backend="cpp",
    )  # fmt: skip
    return out


@needs_cpp
def test_fp16_conversions_are_exact_for_every_cpu_isa():
    """All 65536 halves to float, and a million random floats plus the edges
    (fp16 denormals, 65504, inf, NaN) to half: the same bits as torch's
    conversions (NaN: some NaN) on every instruction set."""
    from mixup_fused import _C

    halves = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(torch.float16).reshape(64, 1, 32, 32)
    rng = np.random.default_rng(80)
    bits = np.concatenate([
        rng.integers(0, 2**32, size=2**20, dtype=np.uint64).astype(np.uint32),
        np.arange(0x33000000, 0x33000000 + 2**17, dtype=np.uint32),  # below and into the fp16 denormals
        np.arange(0x38700000, 0x38700000 + 2**17, dtype=np.uint32),  # fp16 denormals to normals
        np.arange(0x477FE000, 0x477FE000 + 2**15, dtype=np.uint32),  # around 65504, up to overflow
        np.array([0x7F800000, 0xFF800000, 0x7FC00000, 0xFF800001, 0x80000000], dtype=np.uint32),
    ])  # fmt: skip
    bits = np.resize(bits, (len(bits) + 1023) // 1024 * 1024)  # whole 32x32 images
    floats = torch.from_numpy(bits.view(np.float32)).reshape(-1, 1, 32, 32)
    previous = _C.cpu_isa()
    try:
        for isa in _C.supported_cpu_isas():
            _C.set_cpu_isa(isa)
            for x, odt, want in ((halves, torch.float32, halves.float()), (floats, torch.float16, floats.half())):
                got = _convert_cpp(x, odt)
                nan = torch.isnan(want)
                assert torch.equal(torch.isnan(got), nan), f"{isa}: NaN where torch has none, or the reverse"
                assert torch.equal(_bits(got[~nan]), _bits(want[~nan])), f"{isa}: {x.dtype} -> {odt} differs from torch"
    finally:
        _C.set_cpu_isa(previous)


@needs_cpp
def test_cpp_equals_reference_bit_for_bit():
    """The C++ kernel and the reference round the same way in every dtype:
    float32 compute, no FMA contraction, one rounding on store."""
    g = torch.Generator().manual_seed(78)
    boxes = torch.tensor([(1, 8, 3, 30), NO_BOX, (0, 9, 0, 37), (4, 4, 0, 0), (0, 1, 36, 37), NO_BOX, (2, 7, 5, 6)])
    perm = torch.tensor([2, 4, 0, 6, 1, 5, 3])
    t = torch.randint(0, 1000, (7,), generator=g)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        x = torch.randn(7, 3, 9, 37, generator=g).to(dtype)
        lam = torch.rand(7, generator=g, dtype=torch.float64)
        wl = lam.to(torch.float64 if dtype == torch.float64 else torch.float32)
        for fmt in (torch.contiguous_format, torch.channels_last):
            xf = x.contiguous(memory_format=fmt)
            for bx in (None, boxes):
                for eps in (0.0, 0.1):
                    out, y = mf.mix(xf, t, perm, lam, num_classes=1000, boxes=bx, label_smoothing=eps, backend="cpp")
                    want_x, want_y = mix_reference(xf, t, perm, wl, num_classes=1000, boxes=bx, label_smoothing=eps)
                    assert torch.equal(_bits(out), _bits(want_x)), f"images {dtype} {fmt} boxes={bx is not None}"
                    assert torch.equal(_bits(y), _bits(want_y)), f"targets {dtype} eps={eps}"
                grad = torch.ops.mixup_fused.mix_backward(xf, perm, wl, bx)
                assert torch.equal(_bits(grad), _bits(mix_backward_reference(xf, perm, wl, bx))), f"backward {dtype}"
    xu = torch.randint(0, 256, (7, 3, 9, 37), generator=g, dtype=torch.uint8)
    xu[0, :, 0, :] = torch.arange(37, dtype=torch.uint8)  # small values
    xu[1, :, 0, :] = torch.arange(255, 218, -1, dtype=torch.uint8)  # large ones
    stats = [
        ([120.0, 110.0, 100.0], [50.0, 60.0, 70.0]),
        ([0.485 * 255, 0.456 * 255, 0.406 * 255], [0.229 * 255, 0.224 * 255, 0.225 * 255]),  # timm's, 0..255
        ([0.0, 127.5, 255.0], [1.0, 0.3, 3.0e-3]),
    ]
    for (m, s), fmt, bx in itertools.product(stats, (torch.contiguous_format, torch.channels_last), (None, boxes)):
        mean, std = torch.tensor(m), torch.tensor(s)
        xf = xu.contiguous(memory_format=fmt)
        for odt in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
            out, _ = mf.mix(
                xf, t, perm, lam, num_classes=1000, boxes=bx, mean=mean, std=std, out_dtype=odt, backend="cpp"
            )
            want = mix_reference(xf, t, perm, lam, num_classes=1000, boxes=bx, mean=mean, std=std, out_dtype=odt)[0]
            assert torch.equal(_bits(out), _bits(want)), f"uint8 normalised to {odt}, {fmt}, boxes={bx is not None}"


@pytest.mark.skipif("triton" not in CPU_BACKENDS, reason="the Triton interpreter is not available")
def test_triton_interpreter_is_deterministic_and_matches_the_reference():
    g = torch.Generator().manual_seed(79)
    boxes = torch.tensor([(1, 8, 3, 30), NO_BOX, (0, 9, 0, 37), (4, 4, 0, 0), (0, 1, 36, 37)])
    perm, t = torch.tensor([2, 4, 0, 3, 1]), torch.randint(0, 100, (5,), generator=g)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = torch.randn(5, 3, 9, 37, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
        lam = torch.rand(5, generator=g)
        runs = [
            mf.mix(x, t, perm, lam, num_classes=100, boxes=boxes, label_smoothing=0.1, backend="triton")
            for _ in range(2)
        ]
        assert all(torch.equal(_bits(a), _bits(b)) for a, b in zip(runs[0], runs[1], strict=True)), "two runs differ"
        want_x, want_y = mix_reference(x, t, perm, lam, num_classes=100, boxes=boxes, label_smoothing=0.1)
        assert_matches(runs[0][0], want_x, what=f"triton {dtype} images")
        assert_matches(runs[0][1], want_y, what="triton targets")


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
