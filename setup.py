"""Builds the C++ CPU kernels as ``mixup_fused._C``.

``DEBUG=1`` builds without optimisation and with debug symbols. The Triton
kernels need no build step. Install with ``pip install --no-build-isolation -e .``
against an existing torch.
"""

import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

debug = os.environ.get("DEBUG", "0") == "1"
# MIXUP_FUSED_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer (``make test-asan``).
sanitize = os.environ.get("MIXUP_FUSED_SANITIZE", "0") == "1"
extra_cxx = ["-O0", "-g"] if debug else ["-O3", "-fno-math-errno"]
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

setup(
    name="mixup_fused",
    packages=find_packages(include=["mixup_fused", "mixup_fused.*"]),
    ext_modules=[
        CppExtension(
            "mixup_fused._C",
            sorted(glob.glob("csrc/*.cpp")),
            extra_compile_args={"cxx": extra_cxx},
            extra_link_args=extra_link,
            py_limited_api=False,
        )
    ],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
