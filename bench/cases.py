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
AUDIO = (32, 1, 16000)  # one second of 16 kHz mono
VIDEO = (8, 3, 16, 112, 112)  # 16-frame clips at 112x112 (C3D / R(2+1)D inputs)
SEG_CLASSES = 19  # Cityscapes' training classes
# Small versions for --quick.
SEG_QUICK = (4, 3, 128, 128)
AUDIO_QUICK = (8, 1, 4000)
VIDEO_QUICK = (2, 3, 8, 32, 32)

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
    "collate_hwc": "the same over timm's ToNumpy samples (HWC images viewed as CHW by np.rollaxis), one thread",
    "seg": "CutMix of images + int64 label maps in place, one box of half the image per pair, no class targets",
    "classmix": "ClassMix cut mask (drawn once, not timed) on images + int64 label maps in place, no class targets",
    "audio": "CutMix in 1-D (Mixup(mixup_alpha=0, cutmix_alpha=1)), 1000 classes, label smoothing 0.1",
    "video": "CutMix in 3-D (Mixup(mixup_alpha=0, cutmix_alpha=1)), 1000 classes, label smoothing 0.1",
    "matrix": "Mixup in place, every mode x branch (mixup, CutMix, switch) x dtype, against x.mul_ (bench/matrix.py)",
}

# Workloads with integer label maps [B, *spatial] (segmentation) and no class targets.
MAP_WORKLOADS = ("seg", "classmix")
# Workloads whose CutMix box is drawn by the providers from np.random with one
# seed (``Inputs.extra["cut_seed"]``), the same before every call; ``Inputs.boxes``
# holds that box (for the bare op, which takes it without drawing).
SEEDED_CUT_WORKLOADS = ("audio", "video")

# Threads a workload runs on (None: torch's default). Collate-time mixing runs
# in DataLoader workers, which torch sets to one thread.
WORKLOAD_THREADS = {"collate": 1, "collate_hwc": 1}
COLLATE_WORKLOADS = ("collate", "collate_hwc")


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

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.shape[2:]

    def map_numel(self) -> int:
        """Pixels of the label maps ``[B, *spatial]`` (0 without maps)."""
        return self.batch * math.prod(self.spatial) if self.workload in MAP_WORKLOADS else 0

    def image_bytes(self) -> int:
        """x read once plus the mixed x written once."""
        return self.numel * (self.dtype.itemsize + self.out_dtype.itemsize)

    def useful_bytes(self) -> int:
        """Inputs read once plus outputs written once.

        Images and targets: x read and the mixed x written, class ids read and the
        float32 ``[B, K]`` targets written (perm, lam and boxes are negligible).
        Backward: the forward (h read, mixed h written) plus the backward (the
        incoming gradient read, the gradient of h written); no targets.
        Label maps (seg, classmix): x and the int64 maps read and written, no
        class targets; ClassMix also reads its bool cut mask.
        """
        if self.workload == "backward":
            return 2 * self.image_bytes()
        if self.workload in MAP_WORKLOADS:
            mask = self.map_numel() if self.workload == "classmix" else 0
            return self.image_bytes() + 2 * 8 * self.map_numel() + mask
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
    boxes: torch.Tensor  # int64 [B, 2n], (lo, hi) per spatial dim (2-D: y0, y1, x0, x1); seg: one box per pair
    box_lam: float  # 1 - box volume / image volume (the same on every row)
    mean: torch.Tensor | None = None  # float32 [C]
    std: torch.Tensor | None = None
    grad: torch.Tensor | None = None  # the incoming gradient (backward workload)
    samples: list | None = None  # (uint8 CHW numpy array, class id) per sample (collate workload)
    maps: torch.Tensor | None = None  # int64 label maps [B, *spatial] (seg, classmix)
    cut_mask: torch.Tensor | None = None  # bool [B, *spatial], ClassMix's (classmix)
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
    if case.workload == "collate_hwc":  # what timm's ToNumpy returns: np.rollaxis(HWC array, 2)
        inp.samples = [(np.rollaxis(x[i].permute(1, 2, 0).contiguous().numpy(), 2), int(target[i])) for i in range(B)]
    if case.workload in MAP_WORKLOADS:
        inp.maps = label_maps(case, gen).to(device)
    if case.workload == "seg":
        inp.boxes, inp.box_lam = half_area_boxes(case, inp.perm.cpu())
        inp.boxes = inp.boxes.to(device)
    if case.workload == "classmix":
        from mixup_fused.sampling import classmix_masks

        draw = torch.Generator(device=device).manual_seed(seed)
        inp.cut_mask = classmix_masks(inp.maps, inp.perm, generator=draw)
    if case.workload in SEEDED_CUT_WORKLOADS:
        from .peers import cutmix_draw_nd

        inp.extra["cut_seed"] = seed_ = half_cut_seed(case.spatial)
        np.random.seed(seed_)
        box, inp.box_lam = cutmix_draw_nd(case.spatial)  # the box every call of the seeded providers cuts
        inp.boxes = torch.tensor([box] * B, dtype=torch.int64, device=device)
    return inp


def label_maps(case: Case, gen: torch.Generator) -> torch.Tensor:
    """int64 segmentation maps ``[B, *spatial]``: a 16-per-side grid of
    regions, each of one of ``case.num_classes`` classes (nearest-upsampled
    from a coarse random map, so that the maps are piecewise constant)."""
    grid = 16
    coarse = torch.randint(0, case.num_classes, (case.batch,) + (grid,) * len(case.spatial), generator=gen)
    maps = coarse
    for d, size in enumerate(case.spatial):
        idx = torch.arange(size) * grid // size
        maps = maps.index_select(d + 1, idx)
    return maps.contiguous()


def half_area_boxes(case: Case, perm: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One box per pair (row i and perm[i] share it), each of sides
    ``round(side / sqrt(2))``, about half the image, placed differently for
    every pair. Returns ``(int64 [B, 4] boxes, 1 - box area / image area)``."""
    H, W = case.spatial
    h, w = round(H / math.sqrt(2)), round(W / math.sqrt(2))
    boxes = torch.zeros(case.batch, 4, dtype=torch.int64)
    for i in range(case.batch):
        pair = min(i, int(perm[i]))
        y0, x0 = (pair * 53) % (H - h + 1), (pair * 97) % (W - w + 1)
        boxes[i] = torch.tensor([y0, y0 + h, x0, x0 + w])
    return boxes, 1.0 - h * w / (H * W)


def half_cut_seed(spatial: tuple[int, ...]) -> int:
    """The first ``np.random`` seed whose CutMix draw (timm's batch-mode law,
    ``bench.peers.cutmix_draw_nd``) cuts between 45% and 55% of the volume: a
    fixed amount of work per call, like the half-image box of 'seg'."""
    from .peers import cutmix_draw_nd

    total = math.prod(spatial)
    for seed in range(1000):
        np.random.seed(seed)
        box, _ = cutmix_draw_nd(spatial)
        volume = math.prod(box[2 * d + 1] - box[2 * d] for d in range(len(spatial)))
        if 0.45 <= volume / total <= 0.55:
            return seed
    raise RuntimeError(f"no seed below 1000 cuts about half of {spatial}")


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
            *([Case(w, IMAGENET, u8, u8) for w in COLLATE_WORKLOADS] if device.type == "cpu" else []),
            Case("seg", SEG_QUICK, f32, f32, num_classes=SEG_CLASSES, label_smoothing=0.0),
            Case("classmix", SEG_QUICK, f32, f32, num_classes=SEG_CLASSES, label_smoothing=0.0),
            Case("audio", AUDIO_QUICK, f32, f32),
            Case("video", VIDEO_QUICK, f32, f32),
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
        cases += [Case(w, IMAGENET, u8, u8) for w in COLLATE_WORKLOADS]
    cases += dense_cases()
    return cases


def dense_cases() -> list[Case]:
    """Segmentation, audio and video: the full-size cases of the new input kinds."""
    f32, bf16 = torch.float32, torch.bfloat16
    return [
        Case("seg", LARGE, f32, f32, num_classes=SEG_CLASSES, label_smoothing=0.0),
        Case("classmix", LARGE, f32, f32, num_classes=SEG_CLASSES, label_smoothing=0.0),
        Case("audio", AUDIO, f32, f32),
        Case("video", VIDEO, f32, f32),
        Case("video", VIDEO, bf16, bf16),
    ]
