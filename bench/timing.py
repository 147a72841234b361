"""Timers: medians of repeated calls after warm-up.

CPU: ``time.perf_counter`` around each call, with the last-level cache flushed
before every timed call by reading a buffer the size of the L3 cache (outside
the timed region). Without it, a 38 MB batch on a machine with a large L3
stays in cache between calls and every provider looks faster than it is in a
training step, where the batch arrives from DRAM.

GPU: ``triton.testing.do_bench`` (CUDA events around each call, L2 cleared
between calls, median), or plain CUDA events if triton is missing.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    median_ms: float
    min_ms: float
    p25_ms: float
    p75_ms: float
    reps: int
    # CUDA: median host time to issue one call (Python, dispatch, launches).
    host_ms: float | None = None


@dataclass
class Budget:
    """How long to time one case: ``warmup`` untimed calls per provider, then
    rounds of one timed call per provider: at least ``min_reps`` rounds, more
    until about ``seconds`` of measured time, at most ``max_reps``."""

    warmup: int = 2
    min_reps: int = 5
    max_reps: int = 15
    seconds: float = 1.0


def _summary(samples_ms: list[float]) -> Timing:
    samples_ms = sorted(samples_ms)
    q = statistics.quantiles(samples_ms, n=4) if len(samples_ms) > 1 else [samples_ms[0]] * 3
    return Timing(statistics.median(samples_ms), samples_ms[0], q[0], q[2], len(samples_ms))


class CacheFlusher:
    """Evicts the CPU caches by reading a buffer as large as the last-level cache."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.buffer = torch.ones(max(nbytes // 4, 1), dtype=torch.float32) if nbytes > 0 else None

    def __call__(self) -> None:
        if self.buffer is not None:
            self.buffer.sum()


class CPUTimer:
    """Times a case's providers interleaved: round r calls every provider once
    (in an order rotated by r), so that a burst of load from other processes
    lands on all providers alike instead of on whichever ran at that moment."""

    def __init__(self, flusher: CacheFlusher | None):
        self.flusher = flusher

    def describe(self) -> str:
        how = "time.perf_counter per call, providers of a case interleaved round by round"
        if self.flusher is None or self.flusher.buffer is None:
            return how + "; caches NOT flushed (warm cache)"
        return (
            f"{how}; before each timed call the caches are flushed by reading a "
            f"{self.flusher.nbytes / 2**20:.0f} MiB buffer (the L3 size), outside the timed region"
        )

    def _once(self, fn) -> float:
        if self.flusher is not None:
            self.flusher()
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    def time_all(self, fns: dict[str, Callable[[], object]], budget: Budget, on_round=None) -> dict[str, Timing]:
        keys = list(fns)
        if not keys:
            return {}
        for k in keys:
            for _ in range(budget.warmup):
                fns[k]()
        samples = {k: [self._once(fns[k])] for k in keys}
        per_round_s = sum(v[0] for v in samples.values()) / 1e3
        rounds = min(budget.max_reps, max(budget.min_reps, math.ceil(budget.seconds / max(per_round_s, 1e-9))))
        for r in range(1, rounds):
            order = keys[r % len(keys) :] + keys[: r % len(keys)]
            for k in order:
                samples[k].append(self._once(fns[k]))
            if on_round is not None:
                on_round(r, rounds)
        return {k: _summary(v) for k, v in samples.items()}


class CUDATimer:
    """Device time per call: before each timed call the stream gets the L2
    flush and then a GPU sleep longer than the host needs to issue the call,
    so the events around the call see only its device work (a call that
    synchronises with the device pays the wait). The host time to issue each
    call is measured too (``Timing.host_ms``)."""

    def __init__(self):
        self._cycles_per_ms = None

    def describe(self) -> str:
        return (
            "CUDA events per call, L2 cleared and the host's issue time hidden behind a GPU sleep before each "
            "call (device time); host time per call measured beside it; median"
        )

    def time_all(self, fns: dict[str, Callable[[], object]], budget: Budget, on_round=None) -> dict[str, Timing]:
        return {k: self.time_one(fn, budget) for k, fn in fns.items()}

    def _cycles(self) -> float:
        """GPU clock cycles per millisecond of ``torch.cuda._sleep``, measured once."""
        if self._cycles_per_ms is None:
            torch.cuda._sleep(1_000_000)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.cuda._sleep(10_000_000)
            end.record()
            end.synchronize()
            self._cycles_per_ms = 10_000_000 / max(start.elapsed_time(end), 1e-3)
        return self._cycles_per_ms

    def time_one(self, fn: Callable[[], object], budget: Budget) -> Timing:
        scratch = torch.empty(256 * 2**20 // 4, dtype=torch.int32, device="cuda")
        for _ in range(budget.warmup):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        once_ms = (time.perf_counter() - t0) * 1e3
        sleep_ms = 1.0
        reps = min(budget.max_reps, max(budget.min_reps, math.ceil(budget.seconds * 1e3 / (once_ms + 1.5))))
        covered = False
        for _ in range(3):
            samples, host = [], []
            for _ in range(reps):
                scratch.zero_()
                torch.cuda._sleep(int(sleep_ms * self._cycles()))
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                h0 = time.perf_counter()
                fn()
                host.append((time.perf_counter() - h0) * 1e3)
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end))
            # The sleep must outlast every issue, or the device idled inside the timed region.
            covered = max(host) < 0.8 * sleep_ms
            if covered:
                break
            sleep_ms = 2.0 * max(host)
        t = _summary(samples)
        # (None: the call waited for the device, its issue time is not its own.)
        t.host_ms = statistics.median(host) if covered else None
        return t


def make_timer(device: torch.device, flush: bool):
    if device.type == "cuda":
        return CUDATimer()
    from .env import l3_cache_bytes

    return CPUTimer(CacheFlusher(l3_cache_bytes()) if flush else None)
