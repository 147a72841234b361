"""Targets stay exact whatever the image dtype: class ids are compared as
integers and never cast to the image dtype (bfloat16 holds integers exactly
only up to 256, float16 up to 2048, float32 up to 2**24), and the mixed
targets are float32 even for bfloat16 images (kornia issue 4657).

Class ids up to and past 2**24, ImageNet-21k (K = 21841) and K = 2, on every
backend; the Triton kernel's PTX compares class ids in 64-bit integers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import CPU_BACKENDS, HAS_TRITON, assert_matches, error_bound

import mixup_fused as mf
from mixup_fused.reference import mix_reference

F32 = torch.float32

pytestmark = pytest.mark.usefixtures("poison_outputs")  # every target element is written


def _images(B, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, 5, 5, generator=g).to(dtype)


def _check_exact_rows(y, target, perm, lam, K, eps=0.0):
    """Row i holds the on/off values mixed with float32 lam_i at t_i and
    t_perm[i] and the off value everywhere else; with eps = 0 the weights are
    float32(lam_i) and float32(1 - lam_i) exactly."""
    lam32 = lam.to(F32)
    off = eps / K
    for i in range(y.shape[0]):
        ti, tp = int(target[i]), int(target[perm[i]])
        own, other = float(lam32[i]), float(1 - lam32[i])
        want = {ti: own * (1 - eps) + off, tp: other * (1 - eps) + off}
        if ti == tp:
            want = {ti: (own + other) * (1 - eps) + off}
        others = [c for c in range(min(K, 3)) if c not in want]
        if others:  # K = 2 may have no class that is neither
            base = y[i, others[0]]
            assert abs(float(base) - off) <= 1e-7, f"row {i}: off value {float(base)}, expected {off}"
            special = torch.nonzero(y[i] != base).flatten().tolist()
            assert set(special) <= set(want), f"row {i}: mass at {special}, expected only at {sorted(want)}"
        for c, w in want.items():
            if eps == 0.0 and ti != tp:  # exactly the float32 weights
                assert float(y[i, c]) == w, f"row {i}: weight {float(y[i, c])} at class {c}, expected {w}"
            else:
                assert abs(float(y[i, c]) - w) <= 1e-7, f"row {i}: weight {float(y[i, c])} at class {c}, want {w}"


def _expected_smoothed(target, perm, lam, K, eps):
    """Float64 targets written out: lam s(t) + (1 - lam) s(t[perm])."""
    s = torch.full((target.shape[0], K), eps / K, dtype=torch.float64)
    s.scatter_(1, target.view(-1, 1), 1 - eps + eps / K)
    lam = lam.double().view(-1, 1)
    return lam * s + (1 - lam) * s[perm]


# Ids that float32 (2**24 + 1 -> 2**24), bfloat16 (257 -> 256) and float16
# (2049 -> 2048) cannot hold, next to the ids they would collapse onto.
HUGE_IDS = [2**24 + 1, 2**24, 2**24 - 1, 257, 256, 2049, 2048, 0]


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if b != "triton"])
def test_class_ids_past_2_24_with_bf16_images(backend, eps):
    K = 2**24 + 2
    B = len(HUGE_IDS)
    target = torch.tensor(HUGE_IDS)
    perm = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])  # each id paired with its neighbour
    lam = torch.tensor([0.3, 0.9, 0.5, 0.25, 0.0, 1.0, 0.7, 0.1])
    x = _images(B, torch.bfloat16)
    # int32 ids as well: any integer dtype is a class id.
    ids = target if eps == 0.0 else target.int()
    out, y = mf.mix(x, ids, perm, lam, num_classes=K, label_smoothing=eps, backend=backend)
    assert out.dtype == torch.bfloat16 and y.dtype == F32 and y.shape == (B, K)
    _check_exact_rows(y, target, perm, lam, K, eps)


def test_mix_targets_class_ids_past_2_24():
    K = 2**24 + 2
    target, perm, lam = torch.tensor(HUGE_IDS), torch.tensor([1, 0, 3, 2, 5, 4, 7, 6]), torch.rand(8)
    _check_exact_rows(mf.mix_targets(target, perm, lam, num_classes=K), target, perm, lam, K)


@pytest.mark.skipif("triton" not in CPU_BACKENDS, reason="the Triton interpreter is not available")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_class_ids_past_half_precision_triton(dtype):
    """The interpreter runs one program per 1024 classes, so K stays at 2**17
    here: far past what bfloat16 (256) and float16 (2048) hold exactly. The
    PTX test below covers the comparison for any K."""
    K = 2**17 + 3
    target = torch.tensor([2**17 + 2, 2**17 + 1, 2**16 + 1, 2**16, 257, 256, 2049, 2048])
    perm = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])
    lam = torch.tensor([0.3, 0.9, 0.5, 0.25, 0.0, 1.0, 0.7, 0.1])
    out, y = mf.mix(_images(8, dtype), target, perm, lam, num_classes=K, backend="triton")
    assert out.dtype == dtype and y.dtype == F32
    _check_exact_rows(y, target, perm, lam, K)


def test_imagenet21k(backend):
    K, B = 21841, 9
    g = torch.Generator().manual_seed(21841)
    target = torch.tensor([21840, 21839, 256, 257, 511, 2049, 0, 12345, 21840])
    perm = torch.randperm(B, generator=g)
    lam = torch.rand(B, generator=g)
    x = _images(B, torch.bfloat16, seed=1)
    for eps in (0.0, 0.1):
        out, y = mf.mix(x, target, perm, lam, num_classes=K, label_smoothing=eps, backend=backend)
        want_x, want_y = mix_reference(x, target, perm, lam, num_classes=K, label_smoothing=eps)
        assert_matches(out, want_x, what="images", backend=backend)
        assert_matches(y, want_y, what="targets", backend=backend)
        assert float((y.double() - _expected_smoothed(target, perm, lam, K, eps)).abs().max()) < 1e-7
        if eps == 0.0:
            _check_exact_rows(y, target, perm, lam, K)
    # Soft targets of the same width keep float32 precision.
    soft = torch.softmax(torch.randn(B, K, generator=g), dim=1)
    y = mf.mix(x, soft, perm, lam, num_classes=K, label_smoothing=0.1, backend=backend)[1]
    want = (lam.double().view(-1, 1) * (soft.double() * 0.9 + 0.1 / K)) + (1 - lam.double().view(-1, 1)) * (
        soft.double()[perm] * 0.9 + 0.1 / K
    )
    # float32: the smoothing (two roundings), the weights (one) and the mix (three) of positive terms.
    assert bool(((y.double() - want).abs() <= error_bound(want, 6, F32)).all())


@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_two_classes(backend, eps):
    """K = 2: on = 1 - eps/2, off = eps/2; every row sums to 1."""
    target = torch.tensor([0, 1, 1, 0, 1, 0])
    perm = torch.tensor([1, 0, 2, 4, 3, 5])
    lam = torch.tensor([0.0, 1.0, 0.3, 0.6, 0.5, 0.125])
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        y = mf.mix(_images(6, dtype), target, perm, lam, num_classes=2, label_smoothing=eps, backend=backend)[1]
        want = _expected_smoothed(target, perm, lam, 2, eps)
        assert y.dtype == F32
        assert float((y.double() - want).abs().max()) < 1e-7, (y, want)
        assert torch.allclose(y.double().sum(1), torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-7)
        if eps == 1.0:
            assert bool((y == 0.5).all()), "eps = 1 must give the uniform distribution exactly"
        if eps == 0.0:
            _check_exact_rows(y, target, perm, lam, 2)


def test_soft_targets_are_not_rounded_to_the_image_dtype(backend):
    """Soft targets in float32 or float64 (values bfloat16 cannot hold) with
    bfloat16 images: the mixed targets are float32 and keep that precision."""
    K, B = 7, 4
    vals = torch.tensor([1 / 3, 1 / 7, 1e-3 + 1e-6, 0.123456, 0.2, 1 / 11, 0.0], dtype=torch.float64)
    soft64 = torch.stack([vals.roll(k) for k in range(B)])
    perm, lam = torch.tensor([2, 3, 0, 1]), torch.tensor([0.1, 0.3, 0.6, 0.9])
    for soft in (soft64, soft64.float()):
        y = mf.mix(_images(B, torch.bfloat16), soft, perm, lam, num_classes=K, backend=backend)[1]
        assert y.dtype == F32
        want = lam.double().view(-1, 1) * soft64 + (1 - lam.double().view(-1, 1)) * soft64[perm]
        # bfloat16 keeps 8 bits: rounding to it would be off by ~4e-3 relative.
        # float32: the soft values (one rounding), the weights (one) and the mix (three).
        assert bool(((y.double() - want).abs() <= error_bound(want, 5, F32)).all())


# ----------------------------------------------------------------------------
# Triton: class ids are compared as 64-bit integers in the compiled kernel
# ----------------------------------------------------------------------------

PTX_CHILD = """
import sys, torch
from triton_aot import compile_config, kernel_configs
for dt in (torch.bfloat16, torch.float16, torch.float32):
    cfg = next(
        c for c in kernel_configs()
        if c["x"] == dt and c.get("out", dt) == dt and c.get("TARGETS", 1) == 1
        and not c["INPLACE"] and not c["BACKWARD"] and not c.get("NORMALIZE")
    )
    with open(f"{sys.argv[1]}/{str(dt)[6:]}.ptx", "w") as f:
        f.write(compile_config(cfg, 90).asm["ptx"])
print("CHILD OK")
"""


@pytest.mark.skipif(not HAS_TRITON, reason="needs triton")
def test_ptx_compares_class_ids_as_integers(tmp_path):
    from triton_aot import ptx_instructions, ptx_reads

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.abspath(__file__)), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", PTX_CHILD, str(tmp_path)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0 and "CHILD OK" in proc.stdout, (proc.stdout + proc.stderr)[-3000:]
    for name in ("bfloat16", "float16", "float32"):
        ptx = (tmp_path / f"{name}.ptx").read_text()
        # 64-bit words loaded from global memory: the partner index, the
        # class ids and lam (float64). The class ids are the words compared
        # with the class index as 64-bit integers, and none of them is ever
        # converted to floating point.
        words = re.findall(r"ld\.global(?:\.\w+)*\.[bsu]64\s+\{?\s*(%rd\d+)", ptx)
        assert words, f"no 64-bit loads in the {name} kernel"
        compares = [
            ops
            for op, ops in ptx_instructions(ptx)
            if re.fullmatch(r"setp\.(eq|ne)\.[bsu]64", op) and any(ptx_reads(ops, w) for w in words)
        ]
        assert compares, f"class ids are not compared as 64-bit integers in the {name} kernel"
        ids = [w for w in words if any(ptx_reads(ops, w) for ops in compares)]
        converted = [
            (op, ops)
            for op, ops in ptx_instructions(ptx)
            if op.startswith("cvt") and re.search(r"\.f(16|32|64)|\.bf16", op) and any(ptx_reads(ops, w) for w in ids)
        ]
        assert not converted, f"a loaded class id is converted to floating point in the {name} kernel: {converted}"
