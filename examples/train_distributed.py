"""Processes of the training example: set-up under torchrun, per-rank random streams, all-reduce."""

from __future__ import annotations

import datetime
import os

import numpy as np
import torch
import torch.distributed as dist

# Purposes of the random streams (one seed per purpose, rank and epoch).
STREAM_MIX, STREAM_AUGMENT, STREAM_LABEL_NOISE = 1, 2, 3


def setup_distributed(device_arg: str):
    """(rank, world_size, local_rank, device). Under torchrun: one process group (nccl on CUDA, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg == "auto":
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_arg)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10), **kwargs)
    return rank, world, local_rank, device


def stream_seed(seed: int, rank: int, epoch: int, purpose: int) -> int:
    """A 63-bit seed of its own for each (global seed, rank, epoch, purpose)."""
    state = np.random.SeedSequence([seed, rank, epoch, purpose]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & ((1 << 63) - 1)


def all_reduce_(t: torch.Tensor, world: int, op=None) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t
