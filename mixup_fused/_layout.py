"""Memory layouts and dtypes of the op's outputs, shared by the Triton path,
the reference backend and the fake kernels (csrc/mix_ops.cpp has the C++ twin).

The kernels address a sample as one dense run of elements, in contiguous or
channels_last order; any other strides are copied to contiguous first.
"""

from __future__ import annotations

import torch


def is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def dense_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows as dense runs in contiguous or channels_last order (else a contiguous copy)."""
    if x.is_contiguous() or is_channels_last(x):
        return x
    return x.contiguous()


def empty_out_like(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The output of a mix: ``x``'s shape, channels_last if ``x`` is, else contiguous."""
    fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format
    return torch.empty(x.shape, dtype=dtype, device=x.device, memory_format=fmt)


def default_out_dtype(x: torch.Tensor, out_dtype: torch.dtype | None) -> torch.dtype:
    """The images' dtype: as asked, else ``x``'s (float32 for uint8 input)."""
    if out_dtype is not None:
        return out_dtype
    return torch.float32 if x.dtype == torch.uint8 else x.dtype


def weights_dtype(*dtypes: torch.dtype | None) -> torch.dtype:
    """The dtype the kernels compute in: float64 if any side is float64, else float32."""
    return torch.float64 if torch.float64 in dtypes else torch.float32
