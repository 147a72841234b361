"""Index arithmetic past 2**31 elements.

C++: real batches of more than 2**31 elements (4 GiB of bfloat16 in place;
2 GiB of uint8 normalised into 4 GiB of bfloat16), each in its own process so
that a crash fails the test cleanly and the memory is returned at once. Only a
few rows are filled and checked against the reference; every other row is
zero with a zero partner, so a stray read or write anywhere shows up.

Triton: the compiled PTX scales row indices and strides in 64 bits, and the
interpreter runs the real launcher on views whose rows start past 2**31
elements, in storage that is allocated but never touched (no RAM).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # run as a child process: python tests/test_large.py <case>
    sys.path.insert(0, HERE)

from conftest import HAS_CUDA, HAS_TRITON, TRITON_ON_CPU, assert_matches  # noqa: E402

import mixup_fused as mf  # noqa: E402
from mixup_fused.reference import NO_BOX, mix_reference  # noqa: E402

INT32_LIMIT = 2**31
GiB = 2**30


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _run_child(case: str, *args: str, timeout: float = 300, interpret: bool = True, env=None) -> str:
    """Run ``case`` of this file in a fresh interpreter; a crash (negative
    return code) or a failed assertion fails the calling test."""
    child_env = dict(os.environ, **(env or {}))
    child_env.pop("TRITON_INTERPRET", None)
    if interpret and not HAS_CUDA:
        child_env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), case, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env,
        cwd=os.path.dirname(HERE),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{case} exited with {proc.returncode}:\n{out[-4000:]}"
    assert "CHILD OK" in proc.stdout, out[-4000:]
    return out


def _lazy_zeros(shape, dtype: torch.dtype) -> torch.Tensor:
    """A zero tensor whose pages cost no RAM until written: numpy's calloc
    maps fresh zero pages (torch.zeros would write all of them). Run with
    NUMPY_MADVISE_HUGEPAGE=0 so that a touch maps 4 KiB, not 2 MiB."""
    import numpy as np

    n = 1
    for d in shape:
        n *= d
    raw = torch.from_numpy(np.zeros(n * dtype.itemsize, dtype=np.uint8))
    return raw.view(dtype).view(shape)


def _count_nonzero_bits(t: torch.Tensor) -> int:
    """Nonzero elements of a dense tensor, by bit pattern (-0.0 counts), fast:
    the storage is read as int64 words."""
    flat = t.permute(0, 2, 3, 1) if t.dim() == 4 and not t.is_contiguous() else t
    flat = flat.reshape(-1).view(torch.uint8)
    n8 = flat.numel() // 8 * 8
    return int(torch.count_nonzero(flat[:n8].view(torch.int64))) + int(torch.count_nonzero(flat[n8:]))


# ----------------------------------------------------------------------------
# C++: more than 2**31 elements
# ----------------------------------------------------------------------------


def _fill_rows(x: torch.Tensor, rows, seed: int) -> None:
    """Random, nonzero values in ``rows`` of ``x``; every other row stays zero."""
    g = torch.Generator().manual_seed(seed)
    for r in rows:
        if x.dtype == torch.uint8:
            x[r] = torch.randint(1, 256, x[r].shape, generator=g, dtype=torch.uint8)
        else:
            x[r] = (torch.rand(x[r].shape, generator=g) + 0.5).to(x.dtype)


def _big_involution(B: int, row: int, seed: int):
    """An involution on B rows that pairs the rows around and past element
    2**31 with low rows, two of them with each other and one with itself;
    returns (perm, checked rows). Every other row is paired at random with
    another unchecked row."""
    first_high = INT32_LIMIT // row  # the row that holds element 2**31
    high = list(range(first_high - 2, B))
    low = [0, 1, 2, 5, 17, 1000, B // 2, B // 2 + 1]
    assert len(high) - 3 <= len(low) and max(low) < high[0]
    pairs = [(high[-1], high[-2])] + list(zip(high[:-3], low, strict=False))
    perm = list(range(B))
    checked = {high[-3]}  # paired with itself
    for a, b in pairs:
        perm[a], perm[b] = b, a
        checked |= {a, b}
    rest = [i for i in range(B) if i not in checked]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(rest), generator=g).tolist()
    for k in range(0, len(order) - 1, 2):
        a, b = rest[order[k]], rest[order[k + 1]]
        perm[a], perm[b] = b, a
    perm = torch.tensor(perm, dtype=torch.int64)
    assert torch.equal(perm[perm], torch.arange(B))
    return perm, sorted(checked)


def _boxes_for(B: int, H: int, W: int, checked, seed: int) -> torch.Tensor:
    """Small random boxes (a quarter of each side at most, so that few pages
    are touched) with a few NO_BOX rows; the checked rows get every kind:
    mixed (NO_BOX), the full image, empty, edges and random boxes."""
    g = torch.Generator().manual_seed(seed)
    ys = torch.randint(0, H // 4 + 1, (B, 2), generator=g).sort(dim=1).values
    xs = torch.randint(0, W // 4 + 1, (B, 2), generator=g).sort(dim=1).values
    boxes = torch.cat([ys, xs], dim=1)
    boxes[torch.rand(B, generator=g) < 0.02] = torch.tensor(NO_BOX)
    kinds = [NO_BOX, (0, H, 0, W), (3, H - 2, 5, W - 7), (0, 0, 0, 0), (H // 2, H, 0, W // 2), (0, H, W - 1, W)]
    for k, r in enumerate(checked):
        if k < 2 * len(kinds):
            boxes[r] = torch.tensor(kinds[k % len(kinds)])
    return boxes


def _expected_row(saved, r, p, t, lam, boxes, K, eps, **kw):
    """Row r of the reference mix, from the saved original rows r and p."""
    idx = [r] if r == p else [r, p]
    out, y = mix_reference(
        torch.stack([saved[j] for j in idx]),
        t[idx],
        torch.tensor([0] if r == p else [1, 0]),
        lam[idx],
        num_classes=K,
        label_smoothing=eps,
        boxes=boxes[idx],
        **kw,
    )
    return out[0], y[0]


def _big_batch(shape, dtype: torch.dtype, num_classes: int, seed: int):
    """A lazily zeroed batch with a few filled rows (``checked``, saved for the
    expected values), an involution, lam, class ids and boxes; seeds
    ``seed .. seed + 3``."""
    B, C, H, W = shape
    x = _lazy_zeros(shape, dtype)
    perm, checked = _big_involution(B, C * H * W, seed=seed)
    _fill_rows(x, checked, seed=seed + 1)
    saved = {r: x[r].clone() for r in checked}
    g = torch.Generator().manual_seed(seed + 2)
    lam = torch.rand(B, generator=g)
    t = torch.randint(0, num_classes, (B,), generator=g)
    boxes = _boxes_for(B, H, W, checked, seed=seed + 3)
    return x, perm, checked, saved, lam, t, boxes


def child_cpp_bf16_inplace() -> None:
    """bfloat16 [8230, 1, 509, 513]: 2**31 + 1.5M elements (4 GiB, mostly
    never touched), in place, CutMix and mixup (NO_BOX) rows in one call."""
    torch.set_num_threads(2)
    B, C, H, W = 8230, 1, 509, 513
    row = C * H * W
    assert B * row > INT32_LIMIT and (B - 3) * row > INT32_LIMIT
    x, perm, checked, saved, lam, t, boxes = _big_batch((B, C, H, W), torch.bfloat16, 1000, seed=1)
    y = mf.mix(x, t, perm, lam, num_classes=1000, label_smoothing=0.1, boxes=boxes, inplace=True, backend="cpp")[1]
    for r in checked:
        want_x, want_y = _expected_row(saved, r, int(perm[r]), t, lam, boxes, 1000, 0.1)
        assert torch.equal(x[r], want_x), f"row {r} (elements from {r * row}) differs from the reference"
        assert torch.equal(y[r], want_y), f"targets of row {r} differ"
        x[r].zero_()
    # Every other row was zero with a zero partner: still zero everywhere.
    assert _count_nonzero_bits(x) == 0, "an unchecked row changed: a stray write"
    print("CHILD OK")


def child_cpp_uint8_normalize_cutmix() -> None:
    """uint8 [2745, 3, 509, 513]: 2**31 + 2.8M elements (2 GiB), normalised,
    CutMix'ed and mixed into bfloat16 (4 GiB), out of place. The mean is 0 so
    that a zero image stays exactly zero. (Contiguous: the channels_last
    normalising loop is 2.5x slower on this machine, and the row arithmetic
    is the same.)"""
    torch.set_num_threads(2)
    B, C, H, W = 2745, 3, 509, 513
    row = C * H * W
    assert B * row > INT32_LIMIT
    x, perm, checked, saved, lam, t, boxes = _big_batch((B, C, H, W), torch.uint8, 21841, seed=5)
    mean, std = [0.0, 0.0, 0.0], [58.395, 57.12, 57.375]
    out, y = mf.mix(
        x, t, perm, lam, num_classes=21841, boxes=boxes, mean=mean, std=std, out_dtype=torch.bfloat16, backend="cpp"
    )
    assert out.dtype == torch.bfloat16 and out.is_contiguous()
    mean_t, std_t = torch.tensor(mean), torch.tensor(std)
    for r in checked:
        want_x, want_y = _expected_row(
            saved, r, int(perm[r]), t, lam, boxes, 21841, 0.0, mean=mean_t, std=std_t, out_dtype=torch.bfloat16
        )
        assert torch.equal(out[r], want_x), f"row {r} (elements from {r * row}) differs from the reference"
        assert torch.equal(y[r], want_y), f"targets of row {r} differ"
        out[r].zero_()
    assert _count_nonzero_bits(out) == 0, "an unchecked row is not the (zero) mix of two zero images"
    print("CHILD OK")


@pytest.mark.slow
@pytest.mark.skipif(not mf.HAS_CPP, reason="needs the C++ extension")
@pytest.mark.parametrize(
    "case, need, env",
    [
        ("child_cpp_bf16_inplace", 2 * GiB, {"NUMPY_MADVISE_HUGEPAGE": "0"}),
        ("child_cpp_uint8_normalize_cutmix", 5 * GiB, {"NUMPY_MADVISE_HUGEPAGE": "0"}),
    ],
    ids=["bf16_inplace", "uint8_normalize_cutmix"],
)
def test_cpp_past_2_31_elements(case, need, env):
    if _available_bytes() < need:
        pytest.skip(f"needs {need / GiB:.0f} GiB of free memory")
    _run_child(case, timeout=400, env=env)


# ----------------------------------------------------------------------------
# Triton: the compiled PTX (compiled in a child process without the
# interpreter, for sm_90, with no GPU)
# ----------------------------------------------------------------------------

# Row lengths and strides, under the names the kernel has used for them.
ROW_SCALARS = ("row_len", "x_stride", "out_stride", "row_len_v", "x_stride_v", "out_stride_v")
WIDENING = ("cvt.s64.s32", "cvt.u64.u32", "mul.wide.s32", "mul.wide.u32", "mad.wide.s32", "mad.wide.u32")
MUL64 = ("mul.lo.s64", "mul.lo.u64", "mad.lo.s64", "mad.lo.u64")

# triton.jit reads TRITON_INTERPRET when it decorates the kernel, and conftest
# turns the interpreter on: compile in a separate interpreter without it.
PTX_CHILD = """
import json, os, sys
import torch
from triton_aot import compile_config, kernel_configs
from mixup_fused.triton.kernel import mix_images_targets_kernel
out_dir = sys.argv[1]
names = [n for n in sys.argv[2].split(",") if n in mix_images_targets_kernel.arg_names]
wanted = [
    dict(x=torch.bfloat16, CUT=0, INPLACE=False, BACKWARD=False, NORMALIZE=False),
    dict(x=torch.bfloat16, CUT=1, CHANNELS_LAST=True, INPLACE=True),
    dict(x=torch.float32, CUT=1, CHANNELS_LAST=False, BACKWARD=True),
    dict(x=torch.uint8, CUT=1, CHANNELS_LAST=True, NORMALIZE=True),
]
configs = list(kernel_configs())
n = 0
for want in wanted:
    cfg = next(c for c in configs if all(c.get(k) == v for k, v in want.items()))
    # A kernel with a separate long-row variant compiles both.
    for variant in ([dict(cfg, LONG_ROW=False), dict(cfg, LONG_ROW=True)] if "LONG_ROW" in cfg else [cfg]):
        ptx = compile_config(variant, 90).asm["ptx"]
        meta = {k: (str(v) if isinstance(v, torch.dtype) else v) for k, v in variant.items()}
        meta["params"] = {name: mix_images_targets_kernel.arg_names.index(name) for name in names}
        with open(os.path.join(out_dir, f"{n}.json"), "w") as f:
            json.dump(meta, f)
        with open(os.path.join(out_dir, f"{n}.ptx"), "w") as f:
            f.write(ptx)
        n += 1
print("CHILD OK")
"""


@pytest.fixture(scope="module")
def compiled_ptx(tmp_path_factory):
    """Representative configurations (mixup, CutMix channels_last in place,
    backward, uint8 normalise) compiled for sm_90."""
    import json

    if not HAS_TRITON:
        pytest.skip("needs triton")
    d = tmp_path_factory.mktemp("ptx")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", PTX_CHILD, str(d), ",".join(ROW_SCALARS)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=os.path.dirname(HERE),
    )
    assert proc.returncode == 0 and "CHILD OK" in proc.stdout, (proc.stdout + proc.stderr)[-4000:]
    out = []
    for meta_file in sorted(d.glob("*.json")):
        out.append((json.loads(meta_file.read_text()), meta_file.with_suffix(".ptx").read_text()))
    assert len(out) >= 4
    return out


def _param_register(ptx: str, index: int) -> str | None:
    """The 32-bit register a scalar parameter is loaded into (None if the
    parameter is 64-bit or was specialised away)."""
    m = re.search(r"ld\.param\.[bsu]32\s+(%r\d+),\s*\[\w+_param_" + str(index) + r"\]", ptx)
    return m.group(1) if m else None


def test_ptx_row_index_is_widened_before_the_row_offset(compiled_ptx):
    """The row index (program id // blocks per row) is widened to 64 bits and
    multiplied in 64 bits: row * stride may pass 2**31 even when both fit."""
    from triton_aot import ptx_instructions, ptx_reads

    for cfg, ptx in compiled_ptx:
        insns = list(ptx_instructions(ptx))
        divs = [ops[0] for op, ops in insns if op == "div.s32"]
        assert divs, f"no row index division in the PTX of {cfg}"
        widened = [ops[0] for op, ops in insns if op in WIDENING and ptx_reads(ops, divs[0])]
        assert widened, f"the row index {divs[0]} is never widened to 64 bits in {cfg}"
        assert any(op in MUL64 and any(ptx_reads(ops, w) for w in widened) for op, ops in insns), (
            f"the widened row index is not multiplied in 64 bits in {cfg}"
        )


def test_ptx_row_lengths_and_strides_are_not_scaled_in_32_bits(compiled_ptx):
    """Row strides and lengths are only compared, or widened before any
    arithmetic: a 32-bit multiply or shift of them wraps once rows reach
    2**31 elements (the first kernel passed them divided by VEC and multiplied
    back with `x_stride_v * VEC` in int32)."""
    from triton_aot import ptx_instructions, ptx_reads

    bad = []
    for cfg, ptx in compiled_ptx:
        assert cfg["params"], "none of the row length / stride parameters found in the kernel"
        for name, index in cfg["params"].items():
            reg = _param_register(ptx, index)
            if reg is None:
                continue
            for op, ops in ptx_instructions(ptx):
                if ptx_reads(ops, reg) and op not in WIDENING and not op.startswith(("setp", "mov", "selp")):
                    bad.append(f"{name}: `{op} {', '.join(ops)}` (x={cfg['x']})")
    assert not bad, "32-bit arithmetic on row lengths/strides:\n" + "\n".join(sorted(set(bad)))


# ----------------------------------------------------------------------------
# Triton: the interpreter, on rows that start past 2**31 elements
# ----------------------------------------------------------------------------


def child_triton_strided_rows(dtype_name: str, inplace: str, stride: str) -> None:
    """Rows of 96 elements, ``stride`` elements apart, so that a row starts
    past element 2**31 (byte 2**33 for float32), through the launcher (the
    public API makes rows dense first, so row strides are the row lengths).
    The storage is never touched except for the rows themselves."""
    import mixup_fused.triton.launcher as tm

    dtype = getattr(torch, dtype_name)
    S, R = int(stride), 96
    B = INT32_LIMIT // S + 2
    assert (B - 1) * S > INT32_LIMIT
    storage = torch.empty((B - 1) * S + R, dtype=dtype)
    x = storage.as_strided((B, R), (S, 1))
    g = torch.Generator().manual_seed(11)
    x.copy_(torch.randn(B, R, generator=g).to(dtype))
    x0 = x.clone()
    perm = torch.arange(B).flip(0)
    lam = torch.rand(B, generator=g)
    t = torch.arange(B) % 10
    want_x, want_y = mix_reference(x0, t, perm, lam, num_classes=10, label_smoothing=0.2)
    if inplace == "inplace":
        y = tm.triton_mix_(x, t, perm, lam, None, None, None, 10, 0.2)
        got = x
    else:
        out = torch.full((B, R), float("nan"), dtype=dtype)
        got, y, _ = tm.triton_mix(x, t, perm, lam, None, None, None, 10, 0.2, None, None, out)
        assert torch.equal(x, x0), "the input changed"
    assert_matches(got, want_x, what=f"rows {S} apart, {dtype_name} {inplace}", backend="triton")
    assert_matches(y, want_y, what="targets", backend="triton")
    print("CHILD OK")


@pytest.mark.skipif(not TRITON_ON_CPU, reason="the Triton interpreter runs on CPU tensors only without CUDA")
@pytest.mark.parametrize("inplace", ["out_of_place", "inplace"])
@pytest.mark.parametrize(
    "dtype_name, stride",
    [
        ("float32", 2**29 + 32),  # row 4 starts past 2**31: the row index times a 32-bit stride
        ("bfloat16", 2**29 + 32),
        ("float32", 2**31 + 64),  # the stride itself does not fit in 32 bits
    ],
)
def test_triton_interpreter_rows_past_2_31(dtype_name, stride, inplace):
    _run_child("child_triton_strided_rows", dtype_name, inplace, str(stride), timeout=120)


def child_triton_long_row(row_len: str, expect: str) -> None:
    """A real contiguous float16 [2, row_len] batch (no RAM: only the first
    blocks are touched) through the public API, with the launch cut down to the
    first programs of row 0 so that the interpreter finishes quickly. A row
    the kernel can index (``expect == "mixed"``) is mixed; a longer one
    (``"refused"``) is refused with a ValueError that names x and its length
    before anything is launched, never half done."""
    import mixup_fused.triton.launcher as tm

    R = int(row_len)
    programs, launched = 3, []
    real_kernel = tm.mix_images_targets_kernel

    class FirstPrograms:
        def __getitem__(self, grid):
            launched.append(grid)
            return real_kernel[(min(grid[0], programs),)]

    tm.mix_images_targets_kernel = FirstPrograms()
    block = getattr(tm, "BLOCK", None) or tm.pick_block(R)[0]
    n = programs * block
    x = torch.empty(2, R, dtype=torch.float16)
    g = torch.Generator().manual_seed(12)
    x[:, :n] = torch.randn(2, n, generator=g).to(torch.float16)
    perm, lam, t = torch.tensor([1, 0]), torch.tensor([0.25, 0.75]), torch.tensor([0, 1])
    if expect == "refused":
        try:
            mf.mix(x, t, perm, lam, num_classes=2, backend="triton")
        except ValueError as err:
            msg = str(err)
            assert "each sample of x must have fewer than" in msg and f"got {R}" in msg, f"unclear refusal: {msg}"
            assert not launched, "the kernel was launched before the refusal"
            print("CHILD OK")
            return
        raise AssertionError(f"a row of {R} elements was mixed, not refused")
    # Not poisoned: that would write all 8 GiB of the output. Fresh pages
    # read as zero, which the reference values are not.
    out, _ = mf.mix(x, t, perm, lam, num_classes=2, backend="triton")
    assert launched, "the kernel was not launched through mix_images_targets_kernel[grid]"
    want, _ = mix_reference(x[:, :n], t, perm, lam, num_classes=2)
    assert bool((want[0] != 0).all())
    assert_matches(out[0, :n], want[0], what=f"first {n} elements of a row of {R} elements", backend="triton")
    print("CHILD OK")


@pytest.mark.skipif(not TRITON_ON_CPU, reason="the Triton interpreter runs on CPU tensors only without CUDA")
@pytest.mark.parametrize(
    "row_len, expect",
    [(2**31 - 2**13, "mixed"), (2**31 + 8, "refused")],
    ids=["row_2_31_minus_8192", "row_2_31_plus_8"],
)
def test_triton_interpreter_long_row(row_len, expect):
    """A row just below 2**31 - BLOCK elements is mixed (the first kernel
    wrapped `row_len_v * VEC` in int32, so its mask was all false and the
    output was never written); a row of 2**31 + 8 is refused."""
    _run_child("child_triton_long_row", str(row_len), expect, timeout=120)


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_row_of_2_31_elements():
    """On a GPU, a real [2, 2**31 + 8] bfloat16 batch (8 GiB): refused with a
    ValueError naming x, as under the interpreter, and x is left alone."""
    if torch.cuda.mem_get_info()[0] < 12 * GiB:
        pytest.skip("needs 12 GiB of free GPU memory")
    R = 2**31 + 8
    x = torch.empty(2, R, dtype=torch.bfloat16, device="cuda")
    x[0].fill_(1.0)
    x[1].fill_(3.0)
    ids, perm = torch.tensor([0, 1], device="cuda"), torch.tensor([1, 0], device="cuda")
    with pytest.raises(ValueError, match="each sample of x must have fewer than"):
        mf.mix(x, ids, perm, 0.5, num_classes=2)
    with pytest.raises(ValueError, match="each sample of x must have fewer than"):
        mf.mix(x, ids, perm, 0.5, num_classes=2, inplace=True)
    torch.cuda.synchronize()
    assert bool((x[0] == 1.0).all()) and bool((x[1] == 3.0).all()), "a refused call changed x"


def _tail_matches(out, x, perm, lam, cols):
    """Mixup is per element within a row: compare the last ``cols`` columns of every row."""
    ids = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
    ex, _ = mix_reference(x[:, -cols:], ids, perm, lam, num_classes=1)
    assert_matches(out[:, -cols:], ex, backend="triton")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("inplace", [False, True])
def test_gpu_batch_offsets_past_int32(inplace):
    """B * row_len > 2**31: the start of the last row needs an int64 offset."""
    if torch.cuda.get_device_properties(0).total_memory < 24 * GiB:
        pytest.skip("needs 24 GiB of device memory")
    B, row = 3, 2**30 + 8
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.empty(B, row, dtype=torch.float16, device="cuda").uniform_(-1, 1, generator=g)
    perm = torch.tensor([2, 1, 0], device="cuda")
    lam = torch.tensor([0.25, 0.5, 0.75], device="cuda")
    target = torch.zeros(B, dtype=torch.int64, device="cuda")
    tail = x[:, -4096:].clone()
    out, _ = mf.mix(x, target, perm, lam, num_classes=1, inplace=inplace)
    _tail_matches(out, tail, perm, lam, 4096)
    del x, out
    torch.cuda.empty_cache()


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
