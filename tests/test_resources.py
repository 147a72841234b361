"""Resources: no leaks, concurrency.

- 10,000 calls keep the resident set flat (and CUDA memory, on a GPU).
- The CPU op runs inside DataLoader workers (fork and spawn) in a collate
  function, and from two Python threads at once, with correct results.
"""

from __future__ import annotations

import gc
import os
import threading

import pytest
import torch

import mixup_fused as mf
from mixup_fused.reference import NO_BOX, mix_reference

needs_cpp = pytest.mark.skipif(not mf.HAS_CPP, reason="needs the C++ extension")

# ----------------------------------------------------------------------------
# No leaks
# ----------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


LEAK_BUDGET = 12 * 2**20  # a leak of one 4 KiB buffer per call would be 40 MiB


def _leak_workload(n: int, device="cpu", backend="auto"):
    """n calls of every kind: out of place, in place, CutMix, soft targets,
    autograd (forward and backward), and calls that raise."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g).to(device)  # 4 KiB: a leaked copy per call would show
    img = torch.randn(64, 1, 4, 4, generator=g).to(device)
    t = torch.randint(0, 10, (64,), generator=g).to(device)
    soft = torch.softmax(torch.randn(64, 10, generator=g), 1).to(device)
    perm = torch.arange(64).view(-1, 2).flip(1).reshape(-1).to(device)
    lam = torch.rand(64, generator=g).to(device)
    boxes = torch.tensor([[0, 2, 1, 3]] * 64).to(device)
    bad_perm = torch.zeros(64, dtype=torch.int64, device=device)
    xg = x.clone().requires_grad_()
    for k in range(n):
        kind = k % 6
        if kind == 0:
            mf.mix(x, t, perm, lam, num_classes=10, backend=backend)
        elif kind == 1:
            mf.mix(x, t, perm, 0.3, num_classes=10, inplace=True, backend=backend)
        elif kind == 2:
            mf.mix(img, soft, perm, lam, num_classes=10, boxes=boxes, label_smoothing=0.1, backend=backend)
        elif kind == 3:
            out, _ = mf.mix(xg, t, perm, lam, num_classes=10, backend=backend)
            out.sum().backward()
            xg.grad = None
        elif kind == 4:
            try:
                mf.mix(x, t, bad_perm, lam, num_classes=10, backend=backend)
            except ValueError:
                pass
        else:
            try:
                mf.mix(x, t, perm, lam, num_classes=10, inplace=True, backend=backend, label_smoothing=2.0)
            except ValueError:
                pass


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_10000_calls_keep_rss_flat(backend):
    if backend == "cpp" and not mf.HAS_CPP:
        pytest.skip("needs the C++ extension")
    n = 10_000
    _leak_workload(600, backend=backend)  # warm up: allocator pools, lazy imports, dispatcher caches
    gc.collect()
    before = _rss_bytes()
    _leak_workload(n, backend=backend)
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < LEAK_BUDGET, f"RSS grew by {grown / 2**20:.1f} MiB over {n} calls"


@pytest.mark.gpu
def test_10000_calls_keep_cuda_memory_flat():
    _leak_workload(600, device="cuda")
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    _leak_workload(10_000, device="cuda")
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - before <= 0, "CUDA memory grew"


# ----------------------------------------------------------------------------
# Concurrency: DataLoader workers and threads
# ----------------------------------------------------------------------------


def _sample(i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + i)
    return torch.randn(3, 9, 11, generator=g)


class _Images(torch.utils.data.Dataset):
    def __len__(self):
        return 48

    def __getitem__(self, i):
        return _sample(i), i % 10, i


def _batch_params(first: int, n: int):
    g = torch.Generator().manual_seed(first)
    perm = torch.arange(n).view(-1, 2).flip(1).reshape(-1) if n % 2 == 0 else torch.arange(n)
    lam = torch.rand(n, generator=g)
    boxes = torch.tensor([(1, 6, 2, 9), NO_BOX] * (n // 2) + [NO_BOX] * (n % 2)) if first % 16 else None
    return perm, lam, boxes


def mix_collate(batch):
    """A collate function that mixes the batch on the CPU (module level, so
    that spawn workers can unpickle it)."""
    x = torch.stack([b[0] for b in batch])
    t = torch.tensor([b[1] for b in batch])
    idx = torch.tensor([b[2] for b in batch])
    perm, lam, boxes = _batch_params(int(idx[0]), len(batch))
    inplace = int(idx[0]) % 3 == 0
    x_in = x.clone()
    out, y = mf.mix(x, t, perm, lam, num_classes=10, label_smoothing=0.1, boxes=boxes, inplace=inplace)
    return dict(x=out, y=y, x_in=x_in, t=t, idx=idx, pid=os.getpid(), threads=torch.get_num_threads())


@needs_cpp
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_dataloader_workers(start_method):
    # Use the op (and its thread pool) in the parent before the workers start.
    big = torch.randn(64, 3, 64, 64)
    mf.mix(big, torch.zeros(64, dtype=torch.int64), torch.randperm(64), 0.5, num_classes=2)
    loader = torch.utils.data.DataLoader(
        _Images(),
        batch_size=8,
        num_workers=2,
        collate_fn=mix_collate,
        multiprocessing_context=start_method,
    )
    pids, seen = set(), []
    for batch in loader:
        idx = batch["idx"].tolist()
        seen += idx
        pids.add(batch["pid"])
        want_in = torch.stack([_sample(i) for i in idx])
        assert torch.equal(batch["x_in"], want_in), "the worker built a different batch"
        perm, lam, boxes = _batch_params(idx[0], len(idx))
        want_x, want_y = mix_reference(want_in, batch["t"], perm, lam, num_classes=10, label_smoothing=0.1, boxes=boxes)
        assert torch.equal(batch["x"], want_x), f"images mixed in a {start_method} worker differ from the reference"
        assert torch.equal(batch["y"], want_y), f"targets mixed in a {start_method} worker differ from the reference"
    assert sorted(seen) == list(range(48))
    assert os.getpid() not in pids and len(pids) == 2, "the batches were not made by two worker processes"


@needs_cpp
def test_two_threads_at_once():
    """Two Python threads call the C++ op at the same time (the op releases the
    GIL and parallelises internally), one in place, one out of place, on
    inputs of different shapes; every result is right."""
    g = torch.Generator().manual_seed(5)
    jobs = []
    for k, shape in enumerate([(16, 3, 32, 33), (10, 2, 17, 40)]):
        n = shape[0]
        xs = [torch.randn(shape, generator=g) for _ in range(4)]
        t = torch.randint(0, 100, (n,), generator=g)
        perm = torch.arange(n).view(-1, 2).flip(1).reshape(-1)
        lam = torch.rand(n, generator=g)
        boxes = torch.tensor([(2, 12, 3, 20), NO_BOX] * (n // 2))
        want = [mix_reference(x, t, perm, lam, num_classes=100, boxes=boxes) for x in xs]
        jobs.append((k, xs, t, perm, lam, boxes, want))
    barrier = threading.Barrier(2)
    errors = []

    def run(k, xs, t, perm, lam, boxes, want):
        try:
            barrier.wait()
            for j in range(150):
                x = xs[j % len(xs)]
                if k == 0:
                    x = x.clone()
                    y = mf.mix(x, t, perm, lam, num_classes=100, boxes=boxes, inplace=True, backend="cpp")[1]
                    out = x
                else:
                    out, y = mf.mix(x, t, perm, lam, num_classes=100, boxes=boxes, backend="cpp")
                if not (torch.equal(out, want[j % len(xs)][0]) and torch.equal(y, want[j % len(xs)][1])):
                    errors.append(f"thread {k}, call {j}: wrong result")
                    return
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(f"thread {k}: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors
