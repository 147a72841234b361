"""Functional API: the fused mix and its thin variants.

The one entry layer between the user (or the drop-in classes) and the op: it
converts Python arguments (floats, sequences) to tensors, resolves the
backend and calls the op once. The argument rules themselves live in
``_checks`` (and in C++ for the CPU kernels)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _backend, _checks
from ._checks import check_tensor
from ._layout import weights_dtype
from .reference import mix_targets_reference

__all__ = ["mix", "mix_features", "mix_targets"]


def channel_stats(mean, std) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """Per-channel normalisation settings of the drop-in classes, as tuples of floats."""
    _checks.check_mean_std_pair(mean, std)
    if mean is None:
        return None, None
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _as_lam(lam, x: torch.Tensor, out_dtype) -> torch.Tensor:
    """lam as a ``[B]`` tensor: float64 as given (a Python float is one), else
    in the dtype the kernels compute in. The kernels round lam and ``1 - lam``
    once each from it."""
    B = x.shape[0]
    wdt = weights_dtype(x.dtype, out_dtype)
    if isinstance(lam, torch.Tensor):
        if not lam.is_floating_point():
            raise TypeError(f"mixup_fused: lam must be a float or a floating tensor, got a {lam.dtype} tensor")
        if lam.dim() == 0:
            lam = lam.expand(B)
        return lam if lam.dtype == torch.float64 else lam.to(wdt)
    if isinstance(lam, bool) or not isinstance(lam, (int, float)):
        raise TypeError(f"mixup_fused: lam must be a float or a float tensor of shape [B], got {type(lam).__name__}")
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:  # NaN fails too
        raise ValueError(f"mixup_fused: lam = {lam} must be in [0, 1]")
    return torch.full((B,), lam, dtype=torch.float64, device=x.device)


def _as_channel_tensor(v, name: str, x: torch.Tensor):
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        # A small CPU tensor follows x; any other device is left for the
        # argument checks to report.
        return v.to(device=x.device) if v.device.type == "cpu" and x.device.type != "meta" else v
    if isinstance(v, (int, float)):
        v = [float(v)] * (x.shape[1] if x.dim() > 1 else 1)
    if not isinstance(v, Sequence):
        raise TypeError(f"mixup_fused: {name} must be a sequence of floats or a tensor, got {type(v).__name__}")
    return torch.tensor([float(e) for e in v], dtype=torch.float32, device=x.device)


def mix(
    x: torch.Tensor,
    target: torch.Tensor | None,
    perm: torch.Tensor,
    lam,
    *,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
    boxes: torch.Tensor | None = None,
    cut_mask: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
    inplace: bool = False,
    backend: str = "auto",
    mean=None,
    std=None,
    out_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format | None = None,
    check: bool = True,
):
    """Mixup (or CutMix, with ``boxes`` or a ``cut_mask``) of a batch, its
    targets and its label maps in one pass.

    Args:
        x: ``[B, ...]`` floating tensor (float32, float16, bfloat16; float64 on
            CPU), any strides. CutMix, cut masks and label maps need
            ``[B, C, *spatial]`` with 1, 2 or 3 spatial dims (``[B, C, T]``,
            ``[B, C, H, W]``, ``[B, C, D, H, W]``); the output keeps ``x``'s
            memory format (contiguous or channels-last). uint8 images are
            accepted with ``mean`` and ``std``.
        target: int64 ``[B]`` class ids, floating ``[B, K]`` soft (or
            multi-hot) targets, or ``None`` when only the images and maps are
            wanted (``y_out`` is then ``None``).
        perm: int64 ``[B]``, a permutation of ``0..B-1``: sample ``i`` is mixed
            with ``perm[i]``.
        lam: weight of the sample itself: a float, or a float tensor ``[B]``;
            the partner's weight is ``1 - lam``. Both are rounded once from the
            lam given (a float is float64) to the compute dtype, as timm and
            torchvision compute them.
            With ``boxes`` or ``cut_mask`` it only weights the targets (pass
            timm's corrected ``lam = 1 - cut volume / total volume``).
        num_classes: K, the width of the returned targets (inferred from soft
            targets; required with class ids).
        label_smoothing: eps; targets are ``onehot * (1 - eps) + eps / K``.
        boxes: optional int ``[B, 2n]`` for ``n`` spatial dims, half-open
            ``(lo, hi)`` per dim in dim order (2-D: ``(y0, y1, x0, x1)``):
            ``x'[i]`` takes ``x[perm[i]]`` inside the box, ``x[i]`` outside. A
            row of all -1 (``NO_BOX``) mixes that sample with ``lam`` instead,
            so one call can cut some samples and mix others.
        cut_mask: optional bool (or uint8) ``[B, *spatial]`` or ``[B, 1,
            *spatial]``, exclusive with ``boxes``: ``x'[i] = where(cut_mask[i],
            x[perm[i]], x[i])`` over all channels (FMix, ClassMix).
        masks: optional integer label maps (int64, int32 or uint8) ``[B,
            *spatial]`` or ``[B, 1, *spatial]``: a pixel inside row i's cut
            takes ``masks[perm[i]]``'s label, every other pixel (and every row
            blended with lam) keeps its own. Labels move, they are never
            blended; ignore labels (e.g. 255) move like any other.
        inplace: write the mixed images into ``x`` (and the maps into
            ``masks``); ``perm`` must be an involution (``perm[perm[i]] ==
            i``) and ``x`` must not require grad.
        backend: ``"auto"`` (by device), ``"triton"``, ``"cpp"`` or ``"reference"``.
        mean, std: per-channel normalisation applied first, ``(x - mean) / std``
            in float32, in the units of ``x`` (0..255 for uint8 images).
        out_dtype: dtype of the mixed images (default: ``x``'s, float32 for uint8).
        memory_format: memory format of the mixed images (default: ``x``'s).
        check: validate data-dependent arguments (perm, class ids, lam, boxes).
            On a GPU this costs one host synchronisation; ``check=False``
            skips it (e.g. inside a captured CUDA graph).

    Returns:
        ``(x_out, y_out)``, or ``(x_out, y_out, masks_out)`` with ``masks``:
        the mixed images (``x`` itself when ``inplace``), the mixed, smoothed
        float32 targets ``[B, K]`` (``None`` without ``target``) and the mixed
        label maps (``masks``' shape and dtype; ``masks`` itself when ``inplace``).
    """
    check_tensor("x", x)
    check_tensor("target", target, optional=True)
    check_tensor("perm", perm)
    check_tensor("boxes", boxes, optional=True)
    check_tensor("cut_mask", cut_mask, optional=True)
    check_tensor("masks", masks, optional=True)
    if x.dim() < 1:
        raise ValueError("mixup_fused: x must have a batch dimension, got a 0-d tensor")
    target, num_classes, want_y = _targets_arg(target, num_classes, x)
    _checks.check_label_smoothing(label_smoothing)
    if out_dtype is not None and not isinstance(out_dtype, torch.dtype):
        raise TypeError(f"mixup_fused: out_dtype must be a torch.dtype or None, got {out_dtype!r}")
    backend = _backend.resolve_backend(backend, x)
    lam_t = _as_lam(lam, x, out_dtype)
    mean_t = _as_channel_tensor(mean, "mean", x)
    std_t = _as_channel_tensor(std, "std", x)
    if inplace:
        _checks.check_inplace(x, out_dtype, memory_format, normalize=mean_t is not None or std_t is not None)
        maps = masks
        if masks is not None and not masks.is_contiguous():
            # The kernels write maps as dense rows; the checks run before anything is written.
            _checks.check_args(x, target, perm, lam_t, boxes, num_classes, label_smoothing, inplace=True,
                               cut_mask=cut_mask, masks=masks)  # fmt: skip
            maps = masks.contiguous()
        y = _backend.run_mix_(backend, x, target, perm, lam_t, boxes, cut_mask, maps, num_classes, label_smoothing,
                              check)  # fmt: skip
        if maps is not masks:
            masks.copy_(maps)
        y = y if want_y else None
        return (x, y) if masks is None else (x, y, masks)
    if memory_format is not None and memory_format != torch.preserve_format:
        if memory_format == torch.channels_last and x.dim() != 4:
            raise ValueError(f"mixup_fused: memory_format=channels_last needs a 4-d x, got {x.dim()}-d")
        if memory_format == torch.channels_last_3d and x.dim() != 5:
            raise ValueError(f"mixup_fused: memory_format=channels_last_3d needs a 5-d x, got {x.dim()}-d")
        # Convert on the input side: for uint8 images that is the cheap side.
        x = x.contiguous(memory_format=memory_format)
    out, y, maps = _backend.run_mix(backend, x, target, perm, lam_t, boxes, cut_mask, masks, num_classes,
                                    label_smoothing, mean_t, std_t, out_dtype, check)  # fmt: skip
    y = y if want_y else None
    return (out, y) if masks is None else (out, y, maps)


def _targets_arg(target, num_classes, x):
    """``(target, num_classes, targets wanted)`` for the op, which always builds
    targets: without ``target``, a single class (negligible work)."""
    if target is None:
        if num_classes is not None:
            _checks.check_num_classes(num_classes)
        B = x.shape[0] if x.dim() > 0 else 0
        return torch.zeros(B, dtype=torch.int64, device=x.device), 1, False
    if num_classes is None:
        if target.is_floating_point() and target.dim() == 2:
            num_classes = target.shape[1]
        else:
            raise ValueError("mixup_fused: num_classes is required with class-id targets")
    _checks.check_num_classes(num_classes)
    return target, num_classes, True


def mix_targets(
    target: torch.Tensor,
    perm: torch.Tensor,
    lam,
    *,
    num_classes: int,
    label_smoothing: float = 0.0,
    check: bool = True,
) -> torch.Tensor:
    """Only the targets: ``lam * s(t) + (1 - lam) * s(t[perm])``, float32 ``[B, K]``.

    Validated like :func:`mix` (a class id out of range, a perm that is not a
    permutation or lam outside [0, 1] raise errors naming the argument);
    ``check=False`` skips the checks of values, as in :func:`mix` (on a GPU
    they read the tensors back)."""
    check_tensor("target", target)
    check_tensor("perm", perm)
    _checks.check_num_classes(num_classes)
    _checks.check_label_smoothing(label_smoothing)
    if target.dim() < 1:
        raise ValueError("mixup_fused: target must have a batch dimension, got a 0-d tensor")
    B = target.shape[0]
    # The checks want an x of the batch's size and device; a zero-width one costs nothing.
    x = torch.empty((B, 0), dtype=torch.float32, device=target.device)
    lam = _as_lam(lam, x, None)
    _checks.check_args(x, target, perm, lam, None, num_classes, label_smoothing)
    if check and target.device.type != "meta":
        _checks.check_values(x, target, perm, lam, None, num_classes)
    return mix_targets_reference(target, perm, lam, num_classes, label_smoothing)


def mix_features(
    h: torch.Tensor,
    perm: torch.Tensor,
    lam,
    target: torch.Tensor | None = None,
    *,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
    backend: str = "auto",
    check: bool = True,
):
    """Mix hidden features ``h`` (any ``[B, ...]`` floating tensor) for Manifold Mixup.

    ``h'[i] = lam[i] * h[i] + (1 - lam[i]) * h[perm[i]]``, differentiable with
    respect to ``h`` (the backward is the same kernel through the inverse
    permutation). With ``target`` (and ``num_classes``) the mixed, smoothed
    targets are built in the same launch and ``(h', y')`` is returned;
    otherwise only ``h'``.

    Example (mix at a random layer)::

        k = int(torch.randint(0, len(blocks), ()))      # the layer to mix at
        lam = float(np.random.beta(2.0, 2.0))
        perm = torch.randperm(B, device=x.device)
        for j, block in enumerate(blocks):
            if j == k:
                x, y = mix_features(x, perm, lam, target, num_classes=K)
            x = block(x)
        loss = soft_target_cross_entropy(head(x), y)
    """
    check_tensor("h", h)
    check_tensor("target", target, optional=True)
    if target is None:
        if num_classes is not None:
            raise ValueError("mixup_fused: num_classes is only used together with target")
        out, _ = mix(h, None, perm, lam, backend=backend, check=check)
        return out
    return mix(
        h, target, perm, lam, num_classes=num_classes, label_smoothing=label_smoothing, backend=backend, check=check
    )
