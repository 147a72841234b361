"""Ahead-of-time compilation of the Triton kernel for sm_80 and sm_90, with no
GPU: every configuration the launcher can pick compiles, aligned rows get
128-bit loads and stores, row offsets are int64, no floating-point FMA is
emitted (the launcher turns fp fusion off), and the launcher never picks a
configuration that ``kernel_configs()`` does not list.
"""

from __future__ import annotations

import functools
import re

import pytest
import torch

triton = pytest.importorskip("triton")
pytestmark = pytest.mark.triton_aot

import triton_aot  # noqa: E402

from mixup_fused.triton import launcher  # noqa: E402
from mixup_fused.triton.kernel import CUT_BOX, CUT_MASK, CUT_NONE  # noqa: E402

ARCHS = [80, 90]
FLAGS = ("BLOCK", "TBLOCK", "CUT", "CHANNELS_LAST", "NORMALIZE", "INPLACE", "BACKWARD", "F64")
CUT_NAMES = {CUT_NONE: "mixup", CUT_BOX: "cutmix", CUT_MASK: "cutmask"}
CONFIGS = triton_aot.kernel_configs()
_SHORT = {
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float64: "fp64",
    torch.uint8: "u8",
}


def _cfg_id(cfg):
    parts = [f"{_SHORT[cfg['x']]}-{_SHORT[cfg['out']]}", CUT_NAMES[cfg["CUT"]]]
    parts += ["nhwc"] if cfg["CHANNELS_LAST"] else []
    parts += ["norm"] if cfg["NORMALIZE"] else []
    parts += ["inplace"] if cfg["INPLACE"] else (["backward"] if cfg["BACKWARD"] else [])
    return "-".join(parts)


def _key(cfg):
    return tuple((f, cfg[f]) for f in FLAGS) + (("x", cfg["x"]), ("out", cfg["out"]))


@functools.cache
def _compiled(index, arch):
    return triton_aot.compile_config(CONFIGS[index], arch)


def _arg_names(ttir):
    sig = re.search(r"tt\.func public @mix_images_targets_kernel\((.*?)\) attributes", ttir, re.S)
    assert sig, "kernel signature not found in TTIR"
    return re.findall(r"(%[\w.]+)\s*:", sig.group(1))


def _row_base_is_int64(ttir, arg):
    """``arg + (int64 row) * stride``: an addptr on the argument with a scalar i64 offset."""
    return re.search(rf"tt\.addptr {re.escape(arg)}, %[\w.]+ : !tt\.ptr<\w+>, i64", ttir) is not None


def test_configs_are_unique_and_cover_every_mode():
    assert len({_key(c) for c in CONFIGS}) == len(CONFIGS)
    for flag in ("CHANNELS_LAST", "NORMALIZE", "INPLACE", "BACKWARD", "F64"):
        assert {c[flag] for c in CONFIGS} == {False, True}, flag
    assert {c["CUT"] for c in CONFIGS} == {CUT_NONE, CUT_BOX, CUT_MASK}


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"sm{a}")
@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=[_cfg_id(c) for c in CONFIGS])
def test_kernel_config_compiles(index, arch):
    cfg = CONFIGS[index]
    kernel = _compiled(index, arch)
    ptx, ttir = kernel.asm["ptx"], kernel.asm["ttir"]
    assert re.search(rf"\.target sm_{arch}a?\b", ptx)
    assert ".entry mix_images_targets_kernel" in ptx
    assert kernel.asm.get("cubin"), "no cubin"
    if cfg["CUT"] == CUT_NONE and not cfg["NORMALIZE"]:
        # 16-byte aligned rows: 128-bit accesses for every dtype (two float64s or four 32-bit words).
        wide = {True: r"\.v2\.b64", False: r"\.v4\.b32"}
        assert re.search(r"ld\.global" + wide[cfg["x"] == torch.float64], ptx), "aligned rows: 128-bit loads"
        assert re.search(r"st\.global" + wide[cfg["out"] == torch.float64], ptx), "aligned rows: 128-bit stores"
    # Row offsets in int64: the row start of x (and out, y, the label maps and
    # the cut mask) is an i64 offset ...
    arg = dict(zip(triton_aot.compilable_kernel().arg_names, _arg_names(ttir), strict=False))  # constexprs last
    assert _row_base_is_int64(ttir, arg["x_ptr"]), "x row offset is not int64"
    if not cfg["INPLACE"]:
        assert _row_base_is_int64(ttir, arg["out_ptr"]), "out row offset is not int64"
    if not cfg["BACKWARD"]:
        assert _row_base_is_int64(ttir, arg["y_ptr"]), "target row offset is not int64"
        if not cfg["INPLACE"]:
            assert _row_base_is_int64(ttir, arg["map_ptr"]), "label map row offset is not int64"
            assert _row_base_is_int64(ttir, arg["map_out_ptr"]), "label map output row offset is not int64"
        elif cfg["CUT"] != CUT_NONE:  # in place, plain mixup moves no label
            assert _row_base_is_int64(ttir, arg["map_ptr"]), "label map row offset is not int64"
    if cfg["CUT"] == CUT_MASK:
        assert _row_base_is_int64(ttir, arg["cut_ptr"]), "cut mask row offset is not int64"
    # ... which reaches the PTX as a 64-bit multiply of the row index.
    assert re.search(r"\bmul\.(wide\.[su]32|lo\.[su]64)\b", ptx)
    # No FMA contraction: every product and sum is rounded on its own, as in
    # the reference and the C++ kernel (the README's bit-for-bit claim).
    fused = sorted({m.group(0) for m in triton_aot.FLOAT_FMA.finditer(ptx)})
    assert not fused, f"floating-point FMA in the PTX: {fused}"
    if cfg["INPLACE"]:
        assert _exits_before_touching_the_image(ptx), "in place: a program with i > perm[i] runs the image path"


def _exits_before_touching_the_image(ptx: str) -> bool:
    """In place, program i of a pair with i > p = perm[i] has nothing to
    write: p (the first 64-bit word loaded) is compared with a 64-bit
    integer and that predicate branches away before the first image store."""
    lines = ptx.splitlines()
    p_reg = next((m.group(1) for ln in lines if (m := re.search(r"ld\.global\.[bsu]64\s+\{?\s*(%rd\d+)", ln))), None)
    if p_reg is None:
        return False
    preds = set()
    for ln in lines:
        if re.search(r"\bst\.global\b", ln):
            return False
        m = re.search(r"setp\.\w+\.[bsu]64\s+(%p\d+),\s*(.*)$", ln)
        if m and re.search(re.escape(p_reg) + r"(?!\d)", m.group(2)):
            preds.add(m.group(1))
        m = re.search(r"@!?(%p\d+)\s+bra\b", ln)
        if m and m.group(1) in preds:
            return True
    return False


def test_fma_check_sees_contraction():
    """The FMA check is not blind: with contraction allowed, the float32
    mixup kernel (w * a + r * b) compiles to fma.rn.f32."""
    cfg = next(c for c in CONFIGS if c["x"] == torch.float32 and not (c["CUT"] or c["INPLACE"] or c["BACKWARD"]))
    ptx = triton_aot.compile_config(cfg, 90, fp_fusion=True).asm["ptx"]
    assert triton_aot.FLOAT_FMA.search(ptx), "no FMA even with fp fusion on: the regex or the kernel changed"


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"sm{a}")
def test_uint8_normalise_reads_16_bytes_per_load(arch):
    cfg = next(c for c in CONFIGS if c["x"] == torch.uint8 and not c["CUT"] and not c["CHANNELS_LAST"])
    ptx = triton_aot.compile_config(cfg, arch).asm["ptx"]
    assert "ld.global.v4.b32" in ptx, "uint8 rows should be read 16 bytes at a time"


def test_unaligned_rows_compile_with_narrow_accesses():
    cfg = next(c for c in CONFIGS if c["x"] == torch.float32 and not (c["CUT"] or c["INPLACE"] or c["BACKWARD"]))
    ptx = triton_aot.compile_config(cfg, 90, aligned=False).asm["ptx"]
    assert ".entry mix_images_targets_kernel" in ptx
    assert "ld.global.v4" not in ptx  # nothing proves alignment, so no vector loads


# ----------------------------------------------------------------------------
# What the launcher actually picks
# ----------------------------------------------------------------------------


class _LaunchRecorder:
    """Stands in for the kernel: ``kernel[grid](*args, **kwargs)`` records the call."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((args, kwargs))


# x shapes by layout: flat rows, then 1-D, 2-D and 3-D samples, contiguous and channels-last.
_LAYOUTS = {
    "flat": ((60,), False),
    "ncl": ((3, 20), False),
    "nlc": ((3, 20), True),
    "nchw": ((3, 4, 5), False),
    "nhwc": ((3, 4, 5), True),
    "ncdhw": ((3, 2, 3, 4), False),
    "ndhwc": ((3, 2, 3, 4), True),
}


def _meta_x(B, layout, dtype):
    meta = torch.device("meta")
    shape, channels_last = _LAYOUTS[layout]
    if not channels_last:
        return torch.empty((B, *shape), dtype=dtype, device=meta)
    x = torch.empty((B, *shape[1:], shape[0]), dtype=dtype, device=meta)
    return x.permute(0, x.dim() - 1, *range(1, x.dim() - 1))


def _launcher_choices(monkeypatch, recorder=None):
    """Run the ops-level Triton paths on meta tensors over the documented input
    space and record each launch's dtypes and flags."""
    meta = torch.device("meta")
    recorder = recorder or _LaunchRecorder()
    monkeypatch.setattr(launcher, "mix_images_targets_kernel", recorder)
    B, K = 3, 5
    for xdt in (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8):
        for layout in _LAYOUTS:
            for cut in ("none", "box", "mask"):
                for soft in (False, True):
                    for normalize in (False, True):
                        for odt in (None, torch.float32, torch.float16, torch.bfloat16, torch.float64):
                            spatial = (_LAYOUTS[layout][0][1:]) if layout != "flat" else None
                            if (cut != "none" and spatial is None) or (xdt == torch.uint8 and not normalize):
                                continue
                            if normalize and layout not in ("nchw", "nhwc"):
                                continue  # mean/std need [B, C, H, W]
                            x = _meta_x(B, layout, xdt)
                            t = (
                                torch.empty(B, K, device=meta)
                                if soft
                                else torch.empty(B, dtype=torch.int64, device=meta)
                            )
                            perm = torch.empty(B, dtype=torch.int64, device=meta)
                            lam = torch.empty(B, device=meta)
                            boxes = (
                                torch.empty(B, 2 * len(spatial), dtype=torch.int64, device=meta)
                                if cut == "box"
                                else None
                            )
                            cm = torch.empty((B, *spatial), dtype=torch.bool, device=meta) if cut == "mask" else None
                            # Label maps are a run-time argument: soft-target calls carry them.
                            maps = (
                                torch.empty((B, 1, *spatial), dtype=torch.int32, device=meta)
                                if soft and spatial is not None
                                else None
                            )
                            ms = torch.empty(3, device=meta) if normalize else None
                            launcher.mix_triton(x, t, perm, lam, boxes, cm, maps, K, 0.1, ms, ms, odt, False)
                            if not normalize and odt is None:
                                launcher.mix_inplace_triton(x, t, perm, lam, boxes, cm, maps, K, 0.1, False)
                                launcher.mix_backward_triton(x, perm, lam, boxes, cm)
    choices = {}
    for args, kwargs in recorder.calls:
        cfg = {f: kwargs[f] for f in FLAGS}
        cfg.update(x=args[0].dtype, out=args[1].dtype)
        choices[_key(cfg)] = cfg
    return choices


def test_every_launch_turns_fp_fusion_off(monkeypatch):
    """The launcher compiles with ``enable_fp_fusion=False`` for every
    configuration: what the PTX checks above compile with."""
    recorder = _LaunchRecorder()
    monkeypatch.setattr(launcher, "mix_images_targets_kernel", recorder)
    _launcher_choices(monkeypatch, recorder)
    assert recorder.calls
    assert all(kwargs.get("enable_fp_fusion") is False for _, kwargs in recorder.calls)


def test_every_launcher_choice_is_listed_and_every_listed_config_is_reachable(monkeypatch):
    choices = _launcher_choices(monkeypatch)
    listed = {_key(c) for c in CONFIGS}
    missing = [_cfg_id(c) for k, c in choices.items() if k not in listed]
    assert not missing, f"the launcher picks configurations kernel_configs() does not list: {missing[:5]}"
    unreachable = [_cfg_id(c) for c in CONFIGS if _key(c) not in choices]
    assert not unreachable, f"kernel_configs() lists configurations the launcher never picks: {unreachable[:5]}"


def test_a_sample_longer_than_int32_is_refused_with_a_clear_error():
    meta = torch.device("meta")
    x = torch.empty((2, 2**31), device=meta)
    t = torch.empty(2, dtype=torch.int64, device=meta)
    perm = torch.empty(2, dtype=torch.int64, device=meta)
    with pytest.raises(ValueError, match="each sample of x"):
        launcher.mix_triton(x, t, perm, torch.empty(2, device=meta), None, None, None, 3, 0.0, None, None, None, False)


def test_compile_config_works_under_the_interpreter():
    # The suite runs with TRITON_INTERPRET=1 on CPU machines; compile_config
    # must still produce real PTX there.
    kernel = triton_aot.compile_config(CONFIGS[0], 90)
    assert ".entry mix_images_targets_kernel" in kernel.asm["ptx"]
