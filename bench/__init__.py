"""Benchmark of mixup_fused against the ways people mix batches today.

Run it from the repository root with ``python -m bench`` (``make bench``) or
``python -m bench --quick``. See ``python -m bench --help`` and bench/README.md.

This package must not import torch at import time: ``__main__`` sets the
allocator environment (``THP_MEM_ALLOC_ENABLE``) before torch is loaded.
"""
