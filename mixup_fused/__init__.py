"""mixup_fused: Mixup and CutMix with mixed, label-smoothed targets in one pass.

A Triton kernel on CUDA tensors, a C++ kernel on CPU tensors, a pure-PyTorch
reference, all behind one registered op (``torch.ops.mixup_fused.mix``) with
autograd, fake kernels for torch.compile, and a functional API.
"""

from . import reference, sampling
from ._backend import BACKENDS
from ._registration import HAS_CPP
from .collate import FastCollateMixup
from .functional import mix, mix_features, mix_targets
from .loss import BinaryCrossEntropy, SoftTargetCrossEntropy, mixed_segmentation_loss, soft_target_cross_entropy
from .mixup import Mixup
from .reference import NO_BOX
from .transforms import CutMix, MixUp

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "HAS_CPP",
    "NO_BOX",
    "BinaryCrossEntropy",
    "CutMix",
    "FastCollateMixup",
    "MixUp",
    "Mixup",
    "SoftTargetCrossEntropy",
    "mix",
    "mix_features",
    "mix_targets",
    "mixed_segmentation_loss",
    "reference",
    "sampling",
    "soft_target_cross_entropy",
]
