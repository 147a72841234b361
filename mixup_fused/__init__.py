"""mixup_fused: Mixup and CutMix with mixed, label-smoothed targets in one pass.

A Triton kernel on CUDA tensors, a C++ kernel on CPU tensors, a pure-PyTorch
reference, all behind one registered op (``torch.ops.mixup_fused.mix``) with
autograd, fake kernels for torch.compile, and a functional API.
"""

from . import ops, reference
from .functional import mix, mix_features, mix_targets
from .ops import BACKENDS, HAS_CPP
from .reference import NO_BOX

__version__ = "0.1.0"

__all__ = ["BACKENDS", "HAS_CPP", "NO_BOX", "mix", "mix_features", "mix_targets", "ops", "reference"]
