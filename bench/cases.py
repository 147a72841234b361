"""What is measured: workloads x shapes x dtypes, and the inputs of one case."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.uint8: "uint8"}

CIFAR = (128, 3, 32, 32)
IMAGENET = (64, 3, 224, 224)
IMAGENET_GPU = (256, 3, 224, 224)
LARGE = (16, 3, 512, 512)
FEATURES = (32, 197, 768)

# timm's ImageNet mean/std in 0..255 units (what timm's PrefetchLoader uses on uint8 batches).
MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)

WORKLOADS = {
    "mixup": "Mixup, one lam per batch, 1000 classes, label smoothing 0.1",
    "elem": "Mixup, one lam per sample (timm mode='elem'), 1000 classes, label smoothing 0.1",
    "cutmix": "CutMix, one box per batch, 1000 classes, label smoothing 0.1",
    "uint8": "uint8 images in: normalise (0..255 mean/std) + Mixup, half/float out",
    "backward": "feature mixing (Manifold Mixup) forward + backward through autograd",
    "collate": "collate uint8 samples with Mixup/CutMix per sample (timm FastCollateMixup 'elem'), one thread",
}

# Threads a workload runs on (None: torch's default). Collate-time mixing runs
# in DataLoader workers, which torch sets to one thread.
WORKLOAD_THREADS = {"collate": 1}


@dataclass(frozen=True)
class Case:
    workload: str
    shape: tuple[int, ...]
    dtype: torch.dtype  # storage dtype of x
    out_dtype: torch.dtype  # dtype of the mixed x
    num_classes: int = 1000
    label_smoothing: float = 0.1

    @property
    def batch(self) -> int:
        return self.shape[0]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def shape_str(self) -> str:
        return "x".join(str(s) for s in self.shape)

    @property
    def dtype_str(self) -> str:
        if self.dtype == self.out_dtype:
            return DTYPE_NAMES[self.dtype]
        return f"{DTYPE_NAMES[self.dtype]}->{DTYPE_NAMES[self.out_dtype]}"

    @property
    def label(self) -> str:
        return f"{self.workload} {self.shape_str} {self.dtype_str}"

    def image_bytes(self) -> int:
        """x read once plus the mixed x written once."""
        return self.numel * (self.dtype.itemsize + self.out_dtype.itemsize)

    def useful_bytes(self) -> int:
        """Inputs read once plus outputs written once.

        Images and targets: x read and the mixed x written, class ids read and the
        float32 ``[B, K]`` targets written (perm, lam and boxes are negligible).
        Backward: the forward (h read, mixed h written) plus the backward (the
        incoming gradient read, the gradient of h written); no targets.
        """
        if self.workload == "backward":
            return 2 * self.image_bytes()
        return self.image_bytes() + self.batch * 8 + self.batch * self.num_classes * 4


@dataclass
class Inputs:
    """One case's inputs; providers clone ``x`` before they write into it."""

    case: Case
    x: torch.Tensor
    target: torch.Tensor  # int64 [B], distinct class ids (so a mixed target reveals its lam)
    perm: torch.Tensor  # flip: an involution, timm's pairing
    lam: float
    lam_vec: torch.Tensor  # float32 [B]
    boxes: torch.Tensor  # int64 [B, 4] (y0, y1, x0, x1), the same box on every row
    box_lam: float  # 1 - box area / image area
    mean: torch.Tensor | None = None  # float32 [C]
    std: torch.Tensor | None = None
    grad: torch.Tensor | None = None  # the incoming gradient (backward workload)
    samples: list | None = None  # (uint8 CHW numpy array, class id) per sample (collate workload)
    extra: dict = field(default_factory=dict)

    def x_float(self) -> torch.Tensor:
        """x as the float the mix sees (normalised for uint8)."""
        if self.case.dtype == torch.uint8:
            return (self.x.float() - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return self.x.float()


def make_inputs(case: Case, device: torch.device, seed: int = 0) -> Inputs:
    gen = torch.Generator().manual_seed(seed)
    B = case.batch
    if case.dtype == torch.uint8:
        x = torch.randint(0, 256, case.shape, generator=gen, dtype=torch.uint8)
    else:
        x = torch.randn(case.shape, generator=gen).to(case.dtype)
    if B <= case.num_classes:
        target = torch.randperm(case.num_classes, generator=gen)[:B]
    else:
        target = torch.arange(B) % case.num_classes
    rng = np.random.default_rng(seed)
    lam_vec = torch.from_numpy(rng.beta(1.0, 1.0, size=B).astype(np.float32))
    boxes = torch.zeros(B, 4, dtype=torch.int64)
    box_lam = 1.0
    if len(case.shape) == 4:
        H, W = case.shape[-2:]
        y0, y1, x0, x1 = H // 5, H // 5 + H // 2, W // 3, W // 3 + W // 2  # a box of a quarter of the image
        boxes[:] = torch.tensor([y0, y1, x0, x1])
        box_lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)
    inp = Inputs(
        case=case,
        x=x.to(device),
        target=target.to(device),
        perm=torch.arange(B - 1, -1, -1, device=device),
        lam=0.3,
        lam_vec=lam_vec.to(device),
        boxes=boxes.to(device),
        box_lam=box_lam,
    )
    if case.dtype == torch.uint8:
        inp.mean = torch.tensor(MEAN_255, dtype=torch.float32, device=device)
        inp.std = torch.tensor(STD_255, dtype=torch.float32, device=device)
    if case.workload == "backward":
        inp.grad = torch.randn(case.shape, generator=gen).to(case.dtype).to(device)
    if case.workload == "collate":
        inp.samples = [(x[i].numpy(), int(target[i])) for i in range(B)]
    return inp


def build_cases(device: torch.device, quick: bool) -> list[Case]:
    f32, bf16, f16, u8 = torch.float32, torch.bfloat16, torch.float16, torch.uint8
    images = [CIFAR, IMAGENET, LARGE]
    if device.type == "cuda":
        images = [CIFAR, IMAGENET, IMAGENET_GPU, LARGE]
    if quick:
        return [
            Case("mixup", CIFAR, f32, f32),
            Case("mixup", IMAGENET, f32, f32),
            Case("mixup", IMAGENET, bf16, bf16),
            Case("elem", IMAGENET, f32, f32),
            Case("cutmix", CIFAR, f32, f32),
            Case("uint8", IMAGENET, u8, bf16),
            Case("backward", FEATURES, f32, f32),
            *([Case("collate", IMAGENET, u8, u8)] if device.type == "cpu" else []),
        ]
    cases: list[Case] = []
    for shape in [*images, FEATURES]:
        for dt in (f32, bf16):
            cases.append(Case("mixup", shape, dt, dt))
        if shape in (IMAGENET, FEATURES):
            cases.append(Case("mixup", shape, f16, f16))
    for shape in images:
        cases.append(Case("elem", shape, f32, f32))
    cases.append(Case("elem", IMAGENET, bf16, bf16))
    for shape in images:
        cases.append(Case("cutmix", shape, f32, f32))
    cases.append(Case("cutmix", IMAGENET, bf16, bf16))
    for shape in images:
        cases.append(Case("uint8", shape, u8, bf16))
    cases.append(Case("uint8", IMAGENET, u8, f32))
    for dt in (f32, bf16):
        cases.append(Case("backward", FEATURES, dt, dt))
    if device.type == "cpu":
        cases.append(Case("collate", IMAGENET, u8, u8))
    return cases
