"""What a result was measured on: machine, versions, commit, allocator settings."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import time

import torch

# Environment variables that change how tensors are allocated, hence timings.
ALLOCATOR_VARS = (
    "THP_MEM_ALLOC_ENABLE",
    "PYTORCH_CUDA_ALLOC_CONF",
    "PYTORCH_NO_CUDA_MEMORY_CACHING",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "LD_PRELOAD",
    "OMP_NUM_THREADS",
    "MIXUP_FUSED_BACKEND",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def l3_cache_bytes(default: int = 512 * 2**20) -> int:
    """Size of the last-level cache from sysfs (the largest ``cache/index*``)."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            if not entry.startswith("index"):
                continue
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip()
            m = re.fullmatch(r"(\d+)([KMG]?)", text)
            if m:
                best = max(best, int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)])
    except OSError:
        pass
    return best or default


def thp_system_setting() -> str | None:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().strip()
    except OSError:
        return None


def git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def slugify(text: str) -> str:
    text = re.sub(r"\(r\)|\(tm\)|\bcpu\b|@.*$", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def device_slug(device: torch.device) -> str:
    if device.type == "cuda":
        return "cuda-" + slugify(torch.cuda.get_device_name(device))
    return f"cpu-{slugify(cpu_model())}-{torch.get_num_threads()}t"


def describe(device: torch.device) -> dict:
    """The machine and software a result was measured on."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    info = {
        "device": str(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "l3_cache_bytes": l3_cache_bytes(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton_version,
        "torch_cuda": torch.version.cuda,
        # A copy of the tree without its own git history (a lent GPU machine)
        # is told its commit by MIXUP_FUSED_SOURCE_COMMIT.
        "git_commit": os.environ.get("MIXUP_FUSED_SOURCE_COMMIT") or git("rev-parse", "HEAD"),
        "git_dirty": None
        if os.environ.get("MIXUP_FUSED_SOURCE_COMMIT")
        else bool(git("status", "--porcelain", "--untracked-files=no")),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "allocator": {k: os.environ.get(k) for k in ALLOCATOR_VARS},
        "transparent_hugepage": thp_system_setting(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_bytes"] = props.total_memory
        info["gpu_sm_count"] = props.multi_processor_count
        info["machine"] = props.name
    else:
        info["machine"] = f"{info['cpu']}, {info['cpu_count']} cores ({info['torch_threads']} torch threads)"
    return info


class CPUContention:
    """How much CPU other processes used during the run (from /proc/stat minus our own
    CPU time), as a fraction of all cores: timings taken beside other work are noisy."""

    def __init__(self):
        self.start = self._snapshot()

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        # user nice system idle iowait irq softirq steal (guest time is already inside user)
        busy = sum(fields[:3]) + sum(fields[5:8])
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return {"busy_s": busy / hz, "own_s": own, "wall": time.monotonic()}

    def other_fraction(self) -> float | None:
        end = self._snapshot()
        if self.start is None or end is None:
            return None
        wall = end["wall"] - self.start["wall"]
        other = (end["busy_s"] - self.start["busy_s"]) - (end["own_s"] - self.start["own_s"])
        return max(0.0, other) / max(wall * (os.cpu_count() or 1), 1e-9)
