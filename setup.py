"""Builds the C++ CPU kernels as ``mixup_fused._C``.

``DEBUG=1`` builds without optimisation and with debug symbols. The Triton
kernels need no build step. Install with ``pip install --no-build-isolation -e .``
against an existing torch.
"""

import fcntl
import glob
import hashlib
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

debug = os.environ.get("DEBUG", "0") == "1"
# MIXUP_FUSED_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer (``make test-asan``).
sanitize = os.environ.get("MIXUP_FUSED_SANITIZE", "0") == "1"
# -g0: Python's compiler flags carry -g; debug information made the build a
# fifth slower (and the kernels' objects six times larger).
extra_cxx = ["-O0", "-g"] if debug else ["-O3", "-g0", "-fno-math-errno"]
if sanitize:
    # -O1 keeps the build short; every undefined behaviour found is an error.
    extra_cxx = ["-O1", "-g", "-fno-math-errno", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                 "-fno-sanitize-recover=undefined"]  # fmt: skip
# No FMA contraction: every backend rounds exactly like the reference.
extra_cxx += ["-ffp-contract=off"]
# at::parallel_for is an inline '#pragma omp parallel' in ATen's headers: without
# OpenMP the extension's loops would run on one thread. The libgomp.so.1 that
# torch ships (and has already loaded) serves the extension too.
extra_cxx += ["-fopenmp"]
extra_link = ["-fopenmp"] + (["-fsanitize=address,undefined"] if sanitize else [])

# The kernels (csrc/kernels_*.cpp, over the loops in csrc/*.h) include no
# torch header: built alone with fixed flags, their objects are the same for
# every torch, and they take most of the build. They are kept in an object
# cache (``MIXUP_FUSED_OBJECT_CACHE``, default build/kernel-objects) under a
# key of their sources, flags and compiler, so that builds against two torch
# versions (``make test``) or a rebuild after a change elsewhere compile them
# once. Concurrent builds share the cache: each object is compiled under a lock.
KERNELS = sorted(glob.glob("csrc/kernels_*.cpp"))
HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.abspath(os.environ.get("MIXUP_FUSED_OBJECT_CACHE") or os.path.join(HERE, "build", "kernel-objects"))


def kernel_flags() -> list[str]:
    python_flags = ["-DNDEBUG", "-fwrapv", "-Wall", "-Wsign-compare"]  # as for the extension's own sources
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    return ["-std=c++17", "-fPIC", abi, *python_flags, *extra_cxx, "-Icsrc"]


def compiler() -> list[str]:
    return shlex.split(os.environ.get("CXX") or "c++")


def kernel_object(source: str, key_base: bytes) -> str:
    with open(source, "rb") as f:
        key = hashlib.sha256(key_base + f.read()).hexdigest()[:20]
    name = os.path.splitext(os.path.basename(source))[0]
    obj = os.path.join(CACHE, f"{name}-{key}.o")
    if os.path.exists(obj):
        os.utime(obj)  # used: kept by the pruning below
        return obj
    with open(obj + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build may be compiling it
        if not os.path.exists(obj):
            tmp = f"{obj}.{os.getpid()}.tmp"
            cmd = [*compiler(), *kernel_flags(), "-c", source, "-o", tmp]
            print(" ".join(cmd), flush=True)
            subprocess.check_call(cmd, cwd=HERE)
            os.replace(tmp, obj)
    return obj


def kernel_objects() -> list[str]:
    os.makedirs(CACHE, exist_ok=True)
    version = subprocess.run([*compiler(), "--version"], capture_output=True, check=True).stdout
    key_base = version + repr(kernel_flags()).encode()
    for header in sorted(glob.glob(os.path.join(HERE, "csrc", "*.h"))):
        with open(header, "rb") as f:
            key_base += os.path.basename(header).encode() + f.read()
    jobs = int(os.environ.get("MAX_JOBS") or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(KERNELS)))) as pool:
        objects = list(pool.map(lambda src: kernel_object(src, key_base), KERNELS))
    for old in glob.glob(os.path.join(CACHE, "kernels_*.o")):  # objects of older sources, unused for a day
        if old not in objects and time.time() - os.path.getmtime(old) > 86400:
            os.remove(old)
    return objects


class Build(BuildExtension):
    def finalize_options(self):
        super().finalize_options()
        # A build folder per torch and flags, kept between builds (pip's
        # editable install would use a new temporary one): ninja then
        # recompiles only the sources that changed.
        tag = f"torch-{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
        tag += "-debug" if debug else "-sanitize" if sanitize else ""
        self.build_temp = os.path.join(HERE, "build", "temp-" + tag)

    def build_extensions(self):
        for ext in self.extensions:
            ext.extra_objects = [*ext.extra_objects, *kernel_objects()]
        super().build_extensions()


setup(
    name="mixup_fused",
    packages=find_packages(include=["mixup_fused", "mixup_fused.*"]),
    ext_modules=[
        CppExtension(
            "mixup_fused._C",
            sorted(set(glob.glob("csrc/*.cpp")) - set(KERNELS)),
            extra_compile_args={"cxx": extra_cxx},
            extra_link_args=extra_link,
            py_limited_api=False,
        )
    ],
    cmdclass={"build_ext": Build.with_options(use_ninja=True)},
)
