"""The Triton backend: the kernel (:mod:`.kernel`) and its host launchers (:mod:`.launcher`)."""

from .launcher import interpreter_active, mix_backward_triton, mix_inplace_triton, mix_triton

__all__ = ["interpreter_active", "mix_backward_triton", "mix_inplace_triton", "mix_triton"]
