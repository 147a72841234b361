"""torchvision-v2-style ``MixUp`` and ``CutMix`` on the fused op.

Same call conventions as ``torchvision.transforms.v2.MixUp`` / ``CutMix``: a
batch of images and labels in (``transform(images, labels)``, a
``(images, labels)`` tuple, or any nesting that the labels getter
understands), mixed images and soft labels out, with torchvision's pairing
``x.roll(1, 0)`` (sample ``i`` with ``i - 1``). With ``torch.manual_seed`` set
the same way, the draws are torchvision's (torch's global RNG, in the same
order), so the results match torchvision up to rounding.

The pairing is a cycle, not an involution, so the images are mixed out of
place, as torchvision does. Images are computed in float32 and rounded once;
targets are float32 (or the dtype of 2-D floating labels). As in torchvision,
every ``tv_tensors.Image`` and ``Video`` of the sample is mixed with the same
draw and comes back as the same type (a video ``[B, T, C, H, W]`` with the
same lam and box on every frame); without them, the first plain tensor other
than the labels is the image batch; PIL images, bounding boxes, keypoints and
masks are refused with torchvision's error. torchvision is never imported
here: its types are recognised when the caller has imported it.
"""

from __future__ import annotations

import collections.abc
import sys
from contextlib import suppress

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from . import sampling
from .functional import channel_stats, mix, mix_targets

__all__ = ["CutMix", "MixUp"]


def _find_labels_default(inputs):
    # torchvision's default heuristic: the second item of a tuple/list, or a
    # label-like key of a dict (first an exact "labels", then any key containing "label").
    if isinstance(inputs, (tuple, list)):
        inputs = inputs[1]
    if isinstance(inputs, torch.Tensor):
        return inputs
    if not isinstance(inputs, collections.abc.Mapping):
        raise ValueError(
            "When using the default labels_getter, the input passed to forward must be a dictionary or a two-tuple "
            f"whose second item is a dictionary or a tensor, but got {type(inputs).__name__} instead."
        )
    key = None
    with suppress(StopIteration):
        key = next(k for k in inputs.keys() if k.lower() == "labels")
    if key is None:
        with suppress(StopIteration):
            key = next(k for k in inputs.keys() if "label" in k.lower())
    if key is None:
        raise ValueError(
            "Could not infer where the labels are in the sample. Try passing a callable as the labels_getter parameter?"
            "If there are no labels in the sample by design, pass labels_getter=None."
        )
    return inputs[key]


def _parse_labels_getter(labels_getter):
    if labels_getter is None:
        return lambda _: None
    if labels_getter == "default":
        return _find_labels_default
    if callable(labels_getter):
        return labels_getter
    raise ValueError(f"labels_getter should either be 'default', None or a callable, but got {labels_getter!r}.")


def _tv_tensors():
    """torchvision's tv_tensors when the caller has imported torchvision (then
    their inputs may hold them), else None: this module never imports it."""
    return sys.modules.get("torchvision.tv_tensors")


def _is_image_or_video(t, tv) -> bool:
    return tv is not None and isinstance(t, (tv.Image, tv.Video))


def _is_pure_tensor(t, tv) -> bool:
    return isinstance(t, torch.Tensor) and (tv is None or not isinstance(t, tv.TVTensor))


def _mask_indices(flat_inputs) -> list[int]:
    tv = _tv_tensors()
    if tv is None or not hasattr(tv, "Mask"):
        return []
    return [i for i, t in enumerate(flat_inputs) if isinstance(t, tv.Mask)]


def _reject_unsupported(name: str, flat_inputs) -> None:
    # torchvision's message and rule: no PIL images, bounding boxes or keypoints (masks: see the transforms).
    tv = _tv_tensors()
    pil = sys.modules.get("PIL.Image")
    kinds = tuple(getattr(tv, n) for n in ("BoundingBoxes", "KeyPoints") if tv is not None and hasattr(tv, n))
    kinds += (pil.Image,) if pil is not None else ()
    if kinds and any(isinstance(t, kinds) for t in flat_inputs):
        raise ValueError(f"{name}() does not support PIL images, bounding boxes, keypoints and masks.")


def _images_to_mix(flat_inputs, label_idx: int) -> list[int]:
    """torchvision's rule: every ``tv_tensors.Image`` and ``Video``; without
    any, the first pure tensor other than the labels."""
    tv = _tv_tensors()
    explicit = [i for i, t in enumerate(flat_inputs) if i != label_idx and _is_image_or_video(t, tv)]
    if explicit:
        return explicit
    first = next((i for i, t in enumerate(flat_inputs) if i != label_idx and _is_pure_tensor(t, tv)), None)
    return [] if first is None else [first]


def _check_image_or_video(t: torch.Tensor, *, batch_size: int) -> None:
    tv = _tv_tensors()
    expected = 5 if tv is not None and isinstance(t, tv.Video) else 4
    if t.ndim != expected:
        raise ValueError(f"Expected a batched input with {expected} dims, but got {t.ndim} dimensions instead.")
    if t.shape[0] != batch_size:
        raise ValueError(
            "The batch size of the image or video does not match the batch size of the labels: "
            f"{t.shape[0]} != {batch_size}."
        )


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A tv_tensor as a plain tensor; a video ``[B, T, C, H, W]`` as ``[B, T * C, H, W]``
    (the same lam and box for every frame)."""
    tv = _tv_tensors()
    if tv is not None and isinstance(t, tv.TVTensor):
        t = t.as_subclass(torch.Tensor)
    return t.reshape(t.shape[0], -1, *t.shape[-2:]) if t.ndim == 5 else t


def _wrap_like(mixed: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    mixed = mixed.reshape(like.shape) if like.ndim == 5 else mixed
    tv = _tv_tensors()
    return tv.wrap(mixed, like=like) if _is_image_or_video(like, tv) else mixed


def _plain_mask(m: torch.Tensor) -> torch.Tensor:
    """A ``tv_tensors.Mask`` as a plain integer map the op takes (a bool mask as uint8)."""
    m = m.as_subclass(torch.Tensor)
    return m.view(torch.uint8) if m.dtype == torch.bool else m


def _wrap_mask(mixed: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.dtype == torch.bool:
        mixed = mixed.view(torch.bool)
    return _tv_tensors().wrap(mixed, like=like)


def _paste(t: torch.Tensor, box) -> torch.Tensor:
    """``t`` with its partner's (``i - 1``) values inside the box, over the last two dims."""
    y0, y1, x0, x1 = box
    out = t.clone()
    out[..., y0:y1, x0:x1] = t.roll(1, 0)[..., y0:y1, x0:x1]
    return out


class _BaseMixUpCutMix(torch.nn.Module):
    def __init__(
        self,
        *,
        alpha: float = 1.0,
        num_classes: int | None = None,
        labels_getter="default",
        generator: torch.Generator | None = None,
        backend: str = "auto",
        mean=None,
        std=None,
        out_dtype: torch.dtype | None = None,
        memory_format: torch.memory_format | None = None,
    ) -> None:
        super().__init__()
        self.mean, self.std = channel_stats(mean, std)
        self.out_dtype = out_dtype
        self.memory_format = memory_format
        if not float(alpha) > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self.num_classes = num_classes
        self._labels_getter = _parse_labels_getter(labels_getter)
        self.generator = generator
        self.backend = backend

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, num_classes={self.num_classes}"

    # CutMix moves label maps with its box; MixUp has no per-pixel label for a blended image.
    takes_masks = False

    def forward(self, *inputs):
        inputs = inputs if len(inputs) > 1 else inputs[0]
        flat_inputs, spec = tree_flatten(inputs)
        name = type(self).__name__
        mask_idx = _mask_indices(flat_inputs)
        if mask_idx and not self.takes_masks:
            raise ValueError(
                f"mixup_fused: {name}() cannot mix segmentation masks: a blended image has no single label per pixel. "
                "Use CutMix (it pastes the masks with the box), or keep the masks unmixed and train with "
                "mixup_fused.mixed_segmentation_loss(logits, masks, perm, lam)."
            )
        _reject_unsupported(name, [t for i, t in enumerate(flat_inputs) if i not in mask_idx])
        labels = self._labels_getter(inputs)
        if labels is None and mask_idx:
            return self._forward_masks_only(flat_inputs, spec, mask_idx)
        if not isinstance(labels, torch.Tensor):
            raise ValueError(f"The labels must be a tensor, but got {type(labels)} instead.")
        if labels.ndim not in (1, 2):
            raise ValueError(
                "labels should be index based with shape (batch_size,) or probability based with shape "
                f"(batch_size, num_classes), but got a tensor of shape {labels.shape} instead."
            )
        if labels.ndim == 2 and self.num_classes is not None and labels.shape[-1] != self.num_classes:
            raise ValueError(
                "When passing 2D labels, the number of elements in last dimension must match num_classes: "
                f"{labels.shape[-1]} != {self.num_classes}. You can Leave num_classes to None."
            )
        if labels.ndim == 1 and self.num_classes is None:
            raise ValueError("num_classes must be passed if the labels are index-based (1D)")
        label_idx = next(i for i, t in enumerate(flat_inputs) if t is labels)
        image_idx = _images_to_mix(flat_inputs, label_idx)
        if not image_idx:
            raise TypeError("No image was found in the sample")
        for i in image_idx:
            _check_image_or_video(flat_inputs[i], batch_size=labels.shape[0])
        params = self.make_params(flat_inputs[image_idx[0]])
        flat_inputs = list(flat_inputs)
        y = self._mix_all(flat_inputs, image_idx, mask_idx, labels, params)
        flat_inputs[label_idx] = y
        return tree_unflatten(flat_inputs, spec)

    def _forward_masks_only(self, flat_inputs, spec, mask_idx):
        """``labels_getter=None`` with masks: the images and masks are mixed, no labels."""
        image_idx = _images_to_mix(flat_inputs, -1)
        image_idx = [i for i in image_idx if i not in mask_idx]
        if not image_idx:
            raise TypeError("No image was found in the sample")
        B = flat_inputs[image_idx[0]].shape[0]
        for i in image_idx:
            _check_image_or_video(flat_inputs[i], batch_size=B)
        params = self.make_params(flat_inputs[image_idx[0]])
        flat_inputs = list(flat_inputs)
        self._mix_all(flat_inputs, image_idx, mask_idx, None, params)
        return tree_unflatten(flat_inputs, spec)

    def _mix_all(self, flat_inputs, image_idx, mask_idx, labels, params):
        """Mix every image (and, with the first, every mask) in ``flat_inputs``; returns the labels."""
        y = None
        for n, i in enumerate(image_idx):
            image = flat_inputs[i]
            masks = [flat_inputs[j] for j in mask_idx] if n == 0 else []
            mixed, y_i, masks_out = self._mix(_plain(image), labels, params, [_plain_mask(m) for m in masks])
            flat_inputs[i] = _wrap_like(mixed, image)
            for j, m, out in zip(mask_idx, masks, masks_out, strict=True):
                flat_inputs[j] = _wrap_mask(out, m)
            y = y_i if y is None else y
        return y

    def make_params(self, images: torch.Tensor) -> dict:
        raise NotImplementedError

    def _targets_in(self, labels: torch.Tensor | None, device):
        if labels is None:
            return None, None
        if labels.device != device and labels.device.type != "cpu":
            raise ValueError(f"mixup_fused: labels are on {labels.device} but the images are on {device}")
        if labels.ndim == 1:
            return labels.to(device).long(), self.num_classes
        soft = labels.to(device)
        return (soft if soft.is_floating_point() else soft.float()), labels.shape[-1]

    def _targets_out(self, y: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor | None:
        # torchvision keeps the dtype of floating 2-D labels; one-hot labels become float32.
        if labels is not None and labels.ndim == 2 and labels.is_floating_point():
            return y.to(labels.dtype)
        return y

    def _run(self, images, labels, lam: float, box, masks=()):
        """``(mixed images, labels, mixed masks)``: the first mask in the op's launch, any others cut alike."""
        B = images.shape[0]
        perm = sampling.roll_permutation(B, 1, device=images.device)
        target, K = self._targets_in(labels, images.device)
        wdt = torch.float64 if images.dtype == torch.float64 else torch.float32
        lam_t = torch.full((B,), lam, dtype=wdt, device=images.device)
        if box is not None and not images.is_floating_point() and self.mean is None:
            # CutMix of integer images is a pure copy; the op mixes floating images only.
            out = _paste(images, box)
            y = None if target is None else mix_targets(target, perm, lam_t, num_classes=K)
            return out, self._targets_out(y, labels), [_paste(m, box) for m in masks]
        boxes = None
        if box is not None:
            boxes = sampling.to_device(torch.tensor([box], dtype=torch.int64).expand(B, 4).contiguous(), images.device)
        first = masks[0] if masks else None
        if first is not None and first.device != images.device:
            raise ValueError(f"mixup_fused: the masks are on {first.device} but the images are on {images.device}")
        result = mix(
            images,
            target,
            perm,
            lam_t,
            num_classes=K,
            boxes=boxes,
            inplace=False,
            backend=self.backend,
            check=not images.is_cuda,
            # uint8 images: normalised and mixed in the same pass.
            mean=self.mean,
            std=self.std,
            out_dtype=self.out_dtype,
            memory_format=self.memory_format,
            masks=first,
        )
        out, y = result[0], result[1]
        masks_out = [result[2]] + [_paste(m, box) for m in masks[1:]] if masks else []
        return out, self._targets_out(y, labels), masks_out


class MixUp(_BaseMixUpCutMix):
    """Apply MixUp to a batch of images and labels (torchvision v2 semantics).

    ``x'[i] = lam * x[i] + (1 - lam) * x[i - 1]`` with one ``lam ~ Beta(alpha, alpha)``
    for the batch; labels (class ids ``[B]`` or probabilities ``[B, K]``) are
    mixed the same way.

    Args:
        alpha: the Beta distribution's parameter.
        num_classes: number of classes, for one-hot encoding of index labels;
            may be None only for 2-D labels.
        labels_getter: ``"default"`` (the second item of a tuple, or a
            label-like dict key) or a callable that returns the labels.
        generator: keyword extension: a CPU ``torch.Generator`` to draw from
            instead of torch's global RNG.
        backend: keyword extension: the op's backend.
        mean, std, out_dtype, memory_format: keyword extensions: normalise
            ``(x - mean) / std`` (units of the images, 0..255 for uint8) in the
            same pass, writing ``out_dtype`` images in ``memory_format``.
    """

    def make_params(self, images: torch.Tensor) -> dict:
        return {"lam": sampling.torchvision_lam(self.alpha, generator=self.generator)}

    def _mix(self, images, labels, params, masks=()):
        return self._run(images, labels, params["lam"], None)


class CutMix(_BaseMixUpCutMix):
    """Apply CutMix to a batch of images and labels (torchvision v2 semantics).

    One box for the batch: centre uniform, half sides ``int(0.5 * sqrt(1 - lam) * side)``
    with ``lam ~ Beta(alpha, alpha)``, clipped to the image; ``x'[i]`` takes
    ``x[i - 1]`` inside it, and the labels are mixed with lam corrected to the
    clipped area. Arguments as :class:`MixUp`. Integer (uint8) images are
    supported, as in torchvision (the box is a pure copy).

    Segmentation: every ``tv_tensors.Mask`` in the sample (label maps ``[B,
    H, W]`` or ``[B, 1, H, W]``) takes the partner's labels inside the same
    box; with ``labels_getter=None`` no class labels are needed::

        images, masks = CutMix(labels_getter=None)(tv_tensors.Image(x), tv_tensors.Mask(m))
    """

    takes_masks = True

    def make_params(self, images: torch.Tensor) -> dict:
        lam = sampling.torchvision_lam(self.alpha, generator=self.generator)
        H, W = images.shape[-2:]
        box, lam_adjusted = sampling.torchvision_cutmix_box(H, W, lam, generator=self.generator)
        return {"box": box, "lam_adjusted": lam_adjusted}

    def _mix(self, images, labels, params, masks=()):
        return self._run(images, labels, params["lam_adjusted"], params["box"], masks)
