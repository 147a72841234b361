"""Ahead-of-time compilation of the Triton kernel, with no GPU: the harness
behind the PTX tests.

``compile_config(cfg, arch)`` builds one configuration from
:func:`mixup_fused.triton.kernel.kernel_configs` for ``sm_<arch>`` and
returns the compiled kernel (``.asm["ptx"]`` holds the PTX).
"""

from __future__ import annotations

import importlib.util
import os
import re

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction

from mixup_fused.triton import kernel as _kernel
from mixup_fused.triton.kernel import NUM_WARPS, kernel_configs

__all__ = ["FLOAT_FMA", "compilable_kernel", "compile_config", "kernel_configs", "ptx_instructions", "ptx_reads"]

# A fused multiply-add on floating point values (integer mad.lo / mad.wide are fine).
FLOAT_FMA = re.compile(r"\b(?:fma|mad)(?:\.\w+)*?\.(?:f16|bf16|f32|f64)(?:x2)?\b")

_TL_TYPES = {
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float64: "fp64",
    torch.uint8: "u8",
}
_COMPILABLE = None


def compilable_kernel() -> JITFunction:
    """The kernel as a compilable JITFunction. Under ``TRITON_INTERPRET=1``
    (the suite on CPU machines) ``triton.jit`` yields interpreter objects, so
    a second copy of the kernel module is loaded with the interpreter off."""
    global _COMPILABLE
    if isinstance(_kernel.mix_images_targets_kernel, JITFunction):
        return _kernel.mix_images_targets_kernel
    if _COMPILABLE is None:
        old = os.environ.get("TRITON_INTERPRET")
        os.environ["TRITON_INTERPRET"] = "0"
        try:
            spec = importlib.util.spec_from_file_location("mixup_fused.triton._kernel_aot", _kernel.__file__)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        finally:
            if old is None:
                del os.environ["TRITON_INTERPRET"]
            else:
                os.environ["TRITON_INTERPRET"] = old
        _COMPILABLE = mod.mix_images_targets_kernel
    return _COMPILABLE


def compile_config(cfg: dict, arch: int = 90, aligned: bool = True, fp_fusion: bool = False):
    """Compile one configuration for ``sm_<arch>`` with no GPU, with the
    launcher's options (no FMA contraction unless ``fp_fusion``). ``aligned``
    gives the pointers 16-byte alignment and the lengths divisibility by 16,
    as Triton's specialisation sees typical image rows."""
    fn = compilable_kernel()
    names = fn.arg_names
    signature = {
        "x_ptr": "*" + _TL_TYPES[cfg["x"]],
        "out_ptr": "*" + _TL_TYPES[cfg["out"]],
        "src_ptr": "*i64",
        "lam_ptr": "*fp64",  # every weight is rounded once from the float64 lam
        "box_ptr": "*i64",
        "cut_ptr": "*u8",  # cut masks (bool viewed as uint8)
        "map_ptr": "*u8",  # label maps of any integer dtype, moved as bytes
        "map_out_ptr": "*u8",
        "mean_ptr": "*fp32",
        "std_ptr": "*fp32",
        "ids_ptr": "*i64",
        "soft_ptr": "*fp32",
        "y_ptr": "*fp32",
        "off_value": "fp32",
        "on_value": "fp32",
        "keep": "fp32",
        "spread": "fp32",
    }
    constexprs = {k: v for k, v in cfg.items() if k not in ("x", "out")}
    for name in names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name not in signature:
            signature[name] = "i32"
    attrs = {}
    if aligned:
        divisible = [n for n in names if signature[n].startswith("*")] + ["row_len", "x_stride", "out_stride"]
        attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in divisible}
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": NUM_WARPS, "enable_fp_fusion": fp_fusion}
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def ptx_instructions(ptx: str):
    """(opcode, operands) for every instruction of a PTX listing; predicates,
    directives and labels dropped."""
    for line in ptx.splitlines():
        line = line.split("//")[0].strip().rstrip(";").strip()
        if line.startswith("@"):
            line = line.split(None, 1)[1] if " " in line else ""
        if not line or line[0] in ".${}" or line.endswith(":"):
            continue
        parts = line.split(None, 1)
        if len(parts) == 2:
            yield parts[0], [o.strip() for o in parts[1].split(",")]


def ptx_reads(ops, reg: str) -> bool:
    """Whether an instruction's operands (after the destination) read register ``reg``."""
    pat = re.compile(re.escape(reg) + r"(?!\d)")
    return any(pat.search(o) for o in ops[1:])
