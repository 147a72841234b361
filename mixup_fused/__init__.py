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

# Drop-in layers: timm-compatible Mixup, torchvision-style transforms, loss, sampling.
from . import sampling  # noqa: E402
from .loss import SoftTargetCrossEntropy, soft_target_cross_entropy  # noqa: E402
from .mixup import Mixup  # noqa: E402
from .transforms import CutMix, MixUp  # noqa: E402

__all__ += ["CutMix", "MixUp", "Mixup", "SoftTargetCrossEntropy", "sampling", "soft_target_cross_entropy"]
