"""``Mixup``: a drop-in replacement for ``timm.data.Mixup`` on the fused op.

Same constructor arguments and defaults, same ``__call__(x, target) -> (x, target)``,
same in-place mixing of ``x``, and -- with numpy's global RNG seeded the same
way -- the same lam, boxes and pairing as timm, so the same numbers up to
rounding. Every mode is at most one launch of :func:`mixup_fused.mix`.

Differences from timm, all on purpose:

* odd batch sizes (and B = 1) work: the middle sample is paired with itself,
  keeps lam = 1, its image unchanged and its own smoothed target;
* images are computed in float32 and rounded once (timm rounds each of its
  2-3 half-precision operations);
* targets are always float32 and use the float32 lam; timm's per-sample modes
  round lam to ``x.dtype`` for the targets first (``torch.tensor(lam_batch,
  dtype=x.dtype)``), so with bf16 images timm's targets are off by up to
  ``2**-9`` (the bf16 rounding of lam) from the weights its own images use;
* ``mode='half'`` (from timm's ``FastCollateMixup``) is also available on an
  already-collated batch, see :class:`Mixup`;
* an unknown ``mode`` raises instead of silently meaning ``'batch'``;
* ``x`` that requires grad (e.g. Manifold Mixup on hidden features) is mixed
  out of place, with gradients, and the new tensor is returned.
"""

from __future__ import annotations

import dataclasses

import torch

from . import _backend, _checks, sampling
from .functional import _as_lam, channel_stats, mix, mix_targets

__all__ = ["Mixup"]

PAIRINGS = ("flip", "random")


class Mixup:
    """Mixup / CutMix per batch, per pair or per sample, with mixed smoothed targets.

    Args (timm's, same defaults):
        mixup_alpha: Mixup's Beta alpha; Mixup is on when > 0.
        cutmix_alpha: CutMix's Beta alpha; CutMix is on when > 0.
        cutmix_minmax: (min, max) box side as a fraction of the image side;
            turns CutMix on with random rectangular boxes (forces
            ``cutmix_alpha = 1``, as timm).
        prob: probability of mixing a batch / pair / sample at all.
        switch_prob: probability of CutMix instead of Mixup when both are on.
        mode: ``'batch'`` (one draw for the batch), ``'pair'`` (one draw per
            pair, both samples of a pair get the same lam / box), ``'elem'``
            (one draw per sample), or ``'half'``: as timm's
            ``FastCollateMixup``, sample ``k`` of the first ``ceil(B / 2)``
            is mixed with sample ``B - 1 - k`` (one draw per sample) and only
            the first ``ceil(B / 2)`` images and targets are returned -- as
            views of the mixed-in-place ``x`` (its second half is not changed).
            timm uses it with loaders that repeat each sample twice in a batch.
        correct_lam: correct lam to the clipped box area.
        label_smoothing: eps; targets are ``onehot * (1 - eps) + eps / K``.
        num_classes: K.
        multi_label: dense ``[B, K]`` multi-label targets, smoothed towards 0.5
            (timm >= 1.0.20).

    Keyword-only extensions (the defaults keep timm's behaviour):
        generator: a ``torch.Generator``. The draws are then made with torch,
            vectorised, on the generator's device, and numpy's RNG is not
            touched. The distributions are timm's, the draw order is not.
        pairing: ``'flip'`` (timm: sample ``i`` with ``B - 1 - i``) or
            ``'random'`` (a random involution, drawn fresh each call; in
            ``'half'`` mode each of the first samples gets a random partner in
            the second half).
        backend: the op's backend (``'auto'``, ``'triton'``, ``'cpp'``,
            ``'reference'``).
        sampler: ``'host'`` (default: numpy in timm's order, or ``generator``)
            or ``'device'``: lam, pairing and boxes are drawn with torch on the
            batch's device, from ``generator`` (which must live there) or from
            torch's default generator of that device, and the op skips its
            value checks. Nothing is read back to the host, so the whole step
            can be captured in a CUDA graph or compiled without graph breaks.
            Before a capture, make one call outside it (it compiles the
            kernel and puts the pairing and mean/std on the device) and
            register a generator of your own with the graph
            (``graph.register_generator_state(generator)``).
        mean, std: per-channel normalisation ``(x - mean) / std`` applied in
            the same pass, in the units of ``x`` (0..255 for uint8 images,
            i.e. timm's ``IMAGENET_DEFAULT_MEAN`` times 255). Required for
            uint8 ``x``; the batch is then mixed out of place and a new
            ``out_dtype`` tensor is returned.
        out_dtype: dtype of the mixed images when normalising (default
            float32).
        memory_format: memory format of the mixed images when normalising
            (default: ``x``'s).
        return_params: also return the draws: ``(x, y, params)`` with
            ``params.perm`` (int64 ``[B]``, each row's partner), ``params.lam``
            (float32 ``[B]``, the weight of each row's own sample in its
            target) and ``params.boxes`` (None or int64 ``[B, 2n]``), e.g. for
            the interpolated loss ``lam * CE(out, y) + (1 - lam) * CE(out,
            y[perm])`` or to remap detection boxes.

    ``__call__(x, target, masks=None)`` mixes ``x`` in place and returns ``(x,
    y)`` with ``y`` float32 ``[B, K]``; ``target`` is int class ids ``[B]`` or
    soft ``[B, K]`` rows. Both tensors should be on the same device. ``x`` may
    be any ``[B, ...]`` tensor for Mixup; CutMix takes ``[B, C, T]`` (audio,
    sequences), ``[B, C, H, W]`` and ``[B, C, D, H, W]`` (video, volumes),
    with timm's box law generalised to ``n`` spatial dims: side ratio ``(1 -
    lam) ** (1 / n)`` per dim, a uniform centre, clipped, and ``correct_lam``
    giving ``lam = 1 - cut volume / total volume`` (2-D is timm's, bit for
    bit). With integer label maps ``masks`` (``[B, *spatial]`` or ``[B, 1,
    *spatial]``) the maps are cut with the same boxes, in place, and ``(x, y,
    masks)`` is returned; rows blended with lam keep their own map (use
    :func:`mixup_fused.mixed_segmentation_loss` for them).
    ``sample_params`` and ``apply`` split the call in two (draws, then one
    launch), e.g. to inspect or reuse the draws.
    """

    def __init__(
        self,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        cutmix_minmax=None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.1,
        num_classes: int = 1000,
        multi_label: bool = False,
        *,
        generator: torch.Generator | None = None,
        pairing: str = "flip",
        backend: str = "auto",
        sampler: str = "host",
        mean=None,
        std=None,
        out_dtype: torch.dtype | None = None,
        memory_format: torch.memory_format | None = None,
        return_params: bool = False,
    ):
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.cutmix_minmax = cutmix_minmax
        if self.cutmix_minmax is not None:
            if len(self.cutmix_minmax) != 2 or not 0.0 <= self.cutmix_minmax[0] < self.cutmix_minmax[1] <= 1.0:
                raise ValueError(
                    f"mixup_fused: cutmix_minmax must be (min, max) with 0 <= min < max <= 1, got {cutmix_minmax!r}"
                )
            # As timm: with minmax boxes, alpha only decides nothing but "CutMix is on".
            self.cutmix_alpha = 1.0
        self.mix_prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self.num_classes = num_classes
        self.multi_label = multi_label
        if mode not in sampling.MODES:
            raise ValueError(f"mixup_fused: mode must be one of {sampling.MODES}, got {mode!r}")
        self.mode = mode
        self.correct_lam = correct_lam
        self.mixup_enabled = True  # as timm: the training loop may switch mixing off
        if pairing not in PAIRINGS:
            raise ValueError(f"mixup_fused: pairing must be one of {PAIRINGS}, got {pairing!r}")
        self.pairing = pairing
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"mixup_fused: generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator
        self.backend = backend
        if sampler not in sampling.SAMPLERS:
            raise ValueError(f"mixup_fused: sampler must be one of {sampling.SAMPLERS}, got {sampler!r}")
        self.sampler = sampler
        self.mean, self.std = channel_stats(mean, std)
        self.out_dtype = out_dtype
        self.memory_format = memory_format
        self._norm_cache = None
        self.return_params = bool(return_params)
        self._check_settings()

    def _check_settings(self) -> None:
        """The checks of the settings that need them all (subclasses add theirs)."""
        _checks.check_num_classes(self.num_classes)
        _checks.check_label_smoothing(self.label_smoothing)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, "
            f"cutmix_minmax={self.cutmix_minmax}, prob={self.mix_prob}, switch_prob={self.switch_prob}, "
            f"mode={self.mode!r}, correct_lam={self.correct_lam}, label_smoothing={self.label_smoothing}, "
            f"num_classes={self.num_classes}, pairing={self.pairing!r})"
        )

    @property
    def config(self) -> sampling.MixupConfig:
        """The current draw settings (read at every call: they may be changed between calls, as in timm)."""
        minmax = None if self.cutmix_minmax is None else tuple(float(v) for v in self.cutmix_minmax)
        return sampling.MixupConfig(
            float(self.mixup_alpha),
            float(self.cutmix_alpha),
            minmax,
            float(self.mix_prob),
            float(self.switch_prob),
            bool(self.correct_lam),
            bool(self.mixup_enabled),
        )

    def sample_params(self, batch_size: int, img_size=None, device=None) -> sampling.MixParams:
        """Draw lam, boxes and pairing for a batch (``img_size``: the spatial
        shape, ``(T,)``, ``(H, W)`` or ``(D, H, W)``, needed for CutMix)."""
        if self.sampler == "device":
            device = torch.device(device) if device is not None else torch.device("cpu")
            if self.generator is not None and self.generator.device != device:
                raise ValueError(
                    f"mixup_fused: sampler='device' draws on the batch's device {device}, "
                    f"but generator is on {self.generator.device}"
                )
        sampler = sampling.make_sampler(self.generator, self.sampler, device)
        params = sampler.sample(self.config, self.mode, batch_size, img_size, self.pairing)
        return params if device is None else params.to(device)

    def __call__(self, x: torch.Tensor, target: torch.Tensor, masks: torch.Tensor | None = None):
        if not isinstance(x, torch.Tensor) or x.dim() < 1:
            raise TypeError("mixup_fused: Mixup expects a batch tensor x of shape [B, ...]")
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"mixup_fused: target must be a tensor, got {type(target).__name__}")
        img_size = tuple(x.shape[2:]) if 3 <= x.dim() <= 5 else None
        if img_size is None and self.mixup_enabled and self.config.cutmix_on:
            raise ValueError(
                f"mixup_fused: CutMix needs x of shape [B, C, T], [B, C, H, W] or [B, C, D, H, W], got {list(x.shape)}"
            )
        device = x.device if self.sampler == "device" else None
        return self.apply(x, target, self.sample_params(x.shape[0], img_size, device), masks=masks)

    def apply(self, x: torch.Tensor, target: torch.Tensor, params: sampling.MixParams, masks=None):
        """Mix ``x`` (in place), the label maps ``masks`` when given, and build
        the targets with drawn ``params``: at most one launch."""
        # (Both on the CPU, the common case, is told by two flags: cheaper than
        # building and comparing device objects on every step.)
        if not (x.is_cpu and target.is_cpu) and target.device != x.device:
            if not target.is_cpu:
                raise ValueError(f"mixup_fused: target is on {target.device} but x is on {x.device}")
            target = target.to(x.device, non_blocking=True)
        if self.multi_label:
            if target.dim() != 2 or target.shape[1] != self.num_classes:
                raise ValueError("mixup_fused: multi-label Mixup expects dense targets shaped [B, num_classes]")
            # timm smooths multi-label targets towards 0.5, not towards 1 / K.
            target = target.float() * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
            eps = 0.0
        else:
            eps = float(self.label_smoothing)
            if target.dtype != torch.int64 and not target.is_floating_point():
                target = target.long()
        if not (x.is_cpu and params.lam.is_cpu):
            params = params.to(x.device)
        normalize = self.mean is not None or x.dtype == torch.uint8
        maps = masks
        # Our own draws are valid; on a GPU the value checks would cost a sync.
        check = not x.is_cuda and self.sampler != "device"
        if params.mixes is False and not normalize:
            # Nothing to mix (prob < 1, or mixing disabled): leave x alone, as
            # timm does; the targets are checked like the op's.
            if masks is not None:
                _checks.check_args(x, target, params.perm, params.lam, None, self.num_classes, eps, masks=masks)
            y = mix_targets(target, params.perm, 1.0, num_classes=self.num_classes, label_smoothing=eps, check=check)
            x_out = x
        else:
            # In place, except where the result is a new tensor: a normalised
            # (uint8) batch changes dtype, and x that requires grad (Manifold
            # Mixup) keeps its gradient.
            inplace = not normalize and not x.requires_grad
            if inplace and masks is None:
                # The common step: straight to the registered op, which checks
                # every argument itself (our draws are valid: lam is float64
                # [B], boxes int64 [B, 2n]), without mix()'s generic argument
                # handling, a host cost that is paid on every training step.
                backend = _backend.resolve_backend(self.backend, x)
                if backend == "cpp" or (backend == "triton" and x.is_cuda):
                    lam = params.lam if params.lam.dtype == torch.float64 else _as_lam(params.lam, x, None)
                    y = _backend.run_mix_(backend, x, target, params.perm, lam, params.boxes, None, None,
                                          self.num_classes, eps, check)  # fmt: skip
                    return self._result(x, (x, y), params)
            mean, std = self._norm_tensors(x.device)
            out = mix(
                x,
                target,
                params.perm,
                params.lam,
                num_classes=self.num_classes,
                label_smoothing=eps,
                boxes=params.boxes,
                masks=masks,
                inplace=inplace,
                backend=self.backend,
                mean=mean,
                std=std,
                out_dtype=self.out_dtype if normalize else None,
                memory_format=self.memory_format if normalize else None,
                check=check,
            )
            x_out, y = out[0], out[1]
            if masks is not None:
                # The maps are mixed in place, except beside a batch that is not (x requires grad, or normalised).
                maps = out[2]
        return self._result(x, (x_out, y) if masks is None else (x_out, y, maps), params)

    def _result(self, x, result: tuple, params: sampling.MixParams):
        if self.mode == "half":
            n = x.shape[0] - x.shape[0] // 2
            result = tuple(t[:n] for t in result)
        if self.return_params:
            return (*result, dataclasses.replace(params, lam=params.lam.float()))
        return result

    def _norm_tensors(self, device):
        """mean/std as float32 tensors on ``device``, made once per device."""
        if self.mean is None:
            return None, None
        if self._norm_cache is None or self._norm_cache[0] != (device, self.mean, self.std):
            sampling.refuse_in_capture(device, "mean/std")
            mean = torch.tensor(self.mean, dtype=torch.float32)
            std = torch.tensor(self.std, dtype=torch.float32)
            self._norm_cache = ((device, self.mean, self.std), sampling.to_device(mean, device),
                                sampling.to_device(std, device))  # fmt: skip
        return self._norm_cache[1], self._norm_cache[2]
