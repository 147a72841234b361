"""Determinism: the same generator seed gives the same bits across runs,
processes and thread counts; the C++ kernel equals the reference bit for bit
in every dtype (no FMA contraction anywhere); every CPU instruction set gives
the same bits; the Triton interpreter is deterministic and matches the
reference as conftest's tolerances say (bit for bit but for its bfloat16
conversion).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # run as a child: python tests/test_determinism.py <case>
    sys.path.insert(0, HERE)

from conftest import CPU_BACKENDS, assert_matches, bits  # noqa: E402

import mixup_fused as mf  # noqa: E402
from mixup_fused.reference import NO_BOX, mix_backward_reference, mix_reference  # noqa: E402

needs_cpp = pytest.mark.skipif(not mf.HAS_CPP, reason="needs the C++ extension")


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
        params = sampler.sample(cfg, mode, shape[0], img_size=shape[2:])
        kw = dict(num_classes=1000, label_smoothing=0.1, boxes=params.boxes, backend=backend)
        if dtype == torch.uint8:
            kw.update(mean=[124.0, 116.0, 104.0], std=[58.4, 57.1, 57.4], out_dtype=torch.bfloat16)
        out, y = mf.mix(x, t, params.perm, params.lam, **kw)
        hashes[name] = [hashlib.sha256(bits(v).numpy().tobytes()).hexdigest() for v in (out, y)]
        if dtype != torch.uint8:
            xi = x.clone()
            mf.mix(xi, t, params.perm, params.lam, inplace=True, **kw)
            xg = x.clone().requires_grad_()
            out, _ = mf.mix(xg, t, params.perm, params.lam, **kw)
            out.backward(torch.randn(out.shape, generator=g).to(dtype))
            hashes[name + "_inplace_grad"] = [
                hashlib.sha256(bits(v).numpy().tobytes()).hexdigest() for v in (xi, xg.grad)
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
                cases.append((tag + "-backward", torch.ops.mixup_fused.mix_backward, (gf, perm, lam, bx, None)))
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
        out[name] = [bits(v) for v in (res if isinstance(res, tuple) else (res,))]
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
    words = np.concatenate([
        rng.integers(0, 2**32, size=2**20, dtype=np.uint64).astype(np.uint32),
        np.arange(0x33000000, 0x33000000 + 2**17, dtype=np.uint32),  # below and into the fp16 denormals
        np.arange(0x38700000, 0x38700000 + 2**17, dtype=np.uint32),  # fp16 denormals to normals
        np.arange(0x477FE000, 0x477FE000 + 2**15, dtype=np.uint32),  # around 65504, up to overflow
        np.array([0x7F800000, 0xFF800000, 0x7FC00000, 0xFF800001, 0x80000000], dtype=np.uint32),
    ])  # fmt: skip
    words = np.resize(words, (len(words) + 1023) // 1024 * 1024)  # whole 32x32 images
    floats = torch.from_numpy(words.view(np.float32)).reshape(-1, 1, 32, 32)
    previous = _C.cpu_isa()
    try:
        for isa in _C.supported_cpu_isas():
            _C.set_cpu_isa(isa)
            for x, odt, want in ((halves, torch.float32, halves.float()), (floats, torch.float16, floats.half())):
                got = _convert_cpp(x, odt)
                nan = torch.isnan(want)
                assert torch.equal(torch.isnan(got), nan), f"{isa}: NaN where torch has none, or the reverse"
                assert torch.equal(bits(got[~nan]), bits(want[~nan])), f"{isa}: {x.dtype} -> {odt} differs from torch"
    finally:
        _C.set_cpu_isa(previous)


@needs_cpp
@pytest.mark.usefixtures("poison_outputs")
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
        for fmt in (torch.contiguous_format, torch.channels_last):
            xf = x.contiguous(memory_format=fmt)
            for bx in (None, boxes):
                for eps in (0.0, 0.1):
                    out, y = mf.mix(xf, t, perm, lam, num_classes=1000, boxes=bx, label_smoothing=eps, backend="cpp")
                    want_x, want_y = mix_reference(xf, t, perm, lam, num_classes=1000, boxes=bx, label_smoothing=eps)
                    assert torch.equal(bits(out), bits(want_x)), f"images {dtype} {fmt} boxes={bx is not None}"
                    assert torch.equal(bits(y), bits(want_y)), f"targets {dtype} eps={eps}"
                grad = torch.ops.mixup_fused.mix_backward(xf, perm, lam, bx, None)
                assert torch.equal(bits(grad), bits(mix_backward_reference(xf, perm, lam, bx))), f"backward {dtype}"
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
            assert torch.equal(bits(out), bits(want)), f"uint8 normalised to {odt}, {fmt}, boxes={bx is not None}"


@pytest.mark.skipif("triton" not in CPU_BACKENDS, reason="the Triton interpreter is not available")
@pytest.mark.usefixtures("poison_outputs")
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
        assert all(torch.equal(bits(a), bits(b)) for a, b in zip(runs[0], runs[1], strict=True)), "two runs differ"
        want_x, want_y = mix_reference(x, t, perm, lam, num_classes=100, boxes=boxes, label_smoothing=0.1)
        assert_matches(runs[0][0], want_x, what=f"triton {dtype} images", backend="triton")
        assert_matches(runs[0][1], want_y, what="triton targets", backend="triton")


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
