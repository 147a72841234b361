"""Memory layouts and dtypes of the op's outputs, shared by the Triton path,
the reference backend and the fake kernels (csrc/mix_ops.cpp has the C++ twin).

The kernels address a sample as one dense run of elements, in contiguous or
channels-last order (the channel fastest, then the spatial dims in order:
``channels_last`` for ``[B, C, H, W]``, ``channels_last_3d`` for
``[B, C, D, H, W]``, and the same order for ``[B, C, T]``); any other strides
are copied to contiguous first.
"""

from __future__ import annotations

import torch


def channels_last_order(dim: int) -> tuple[int, ...]:
    """The dims of a ``dim``-d tensor from the slowest to the fastest in channels-last order."""
    return (0,) + tuple(range(2, dim)) + (1,)


def is_channels_last(x: torch.Tensor) -> bool:
    """Dense in channels-last order and not contiguous (a tensor that is both is contiguous)."""
    if x.dim() not in (3, 4, 5) or x.is_contiguous():
        return False
    return x.permute(channels_last_order(x.dim())).is_contiguous()


def dense_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows as dense runs in contiguous or channels-last order (else a contiguous copy)."""
    if x.is_contiguous() or is_channels_last(x):
        return x
    return x.contiguous()


def empty_out_like(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The output of a mix: ``x``'s shape, channels-last if ``x`` is, else contiguous."""
    if not is_channels_last(x):
        return torch.empty(x.shape, dtype=dtype, device=x.device)
    order = channels_last_order(x.dim())
    inverse = tuple(order.index(d) for d in range(x.dim()))
    return torch.empty([x.shape[d] for d in order], dtype=dtype, device=x.device).permute(inverse)


def as_layout_of(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out`` (x's shape) in x's layout: channels-last if x is, else contiguous."""
    if is_channels_last(x):
        return empty_out_like(x, out.dtype).copy_(out)
    return out.contiguous()


def default_out_dtype(x: torch.Tensor, out_dtype: torch.dtype | None) -> torch.dtype:
    """The images' dtype: as asked, else ``x``'s (float32 for uint8 input)."""
    if out_dtype is not None:
        return out_dtype
    return torch.float32 if x.dtype == torch.uint8 else x.dtype


def weights_dtype(*dtypes: torch.dtype | None) -> torch.dtype:
    """The dtype the kernels compute in: float64 if any side is float64, else float32."""
    return torch.float64 if torch.float64 in dtypes else torch.float32
