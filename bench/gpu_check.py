"""``python -m bench.gpu_check`` (``make gpu-check``): the GPU proof in one command.

On a CUDA machine (torch and triton already installed, no network): builds
and installs this package into the running Python, runs the GPU tests
(``pytest -m gpu``), runs the benchmark on the GPU (which writes
``bench/results/<gpu>.{json,md,png}``), and prints one summary table, also
written to ``bench/results/<gpu>-gpu-check.md``. Each step has a time limit,
so the whole check ends within ``--budget`` seconds.

Without a CUDA device it says so and does a dry run: it imports everything
the check would use, collects the GPU tests and builds the benchmark's CUDA
cases, prints the plan, and exits 0 (CI runs this).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")


@dataclass
class Step:
    name: str
    argv: list[str]
    limit_s: int
    status: str = "not run"
    seconds: float = 0.0
    detail: str = ""
    output: str = field(default="", repr=False)


BENCH_LIMIT_S = 140
# Seconds the benchmark keeps for its tables, results files and plots once it
# stops starting cases.
BENCH_REPORT_S = 30


def test_workers() -> int:
    """pytest-xdist workers for the GPU tests: each compiles its own Triton
    kernels, so the compiles spread over the CPU cores (0: xdist not installed)."""
    import importlib.util

    if importlib.util.find_spec("xdist") is None:
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def plan(python: str, install: bool, workers: int = 0) -> list[Step]:
    """The steps of the check, in order, with their time limits (8 minutes in all)."""
    steps = []
    if install:
        steps.append(Step("build + install", [python, "-m", "pip", "install", "-q", "--no-build-isolation",
                                              "--no-deps", "-e", ROOT], 100))  # fmt: skip
    spread = ["-n", str(workers)] if workers > 1 else []
    # -v: each result on its own line as it ends, so a run cut at its limit still names its failures.
    steps.append(Step("pytest -m gpu", [python, "-m", "pytest", "-v", "--tb=short", "-m", "gpu", "-p",
                                        "no:cacheprovider", "-rfE", "--durations=15", *spread,
                                        os.path.join(ROOT, "tests")], 240))  # fmt: skip
    deadline = str(BENCH_LIMIT_S - BENCH_REPORT_S)
    steps.append(Step("benchmark (cuda)", [python, "-m", "bench", "--device", "cuda", "--no-progress",
                                           "--deadline-s", deadline], BENCH_LIMIT_S))  # fmt: skip
    return steps


def run_step(step: Step) -> None:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(step.argv, cwd=ROOT, capture_output=True, text=True, timeout=step.limit_s)
        step.output = proc.stdout + proc.stderr
        step.status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired as err:
        step.output = _text(err.stdout) + _text(err.stderr)
        step.status = f"timed out after {step.limit_s} s"
    step.seconds = time.perf_counter() - t0
    step.detail = summarise(step)


def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def summarise(step: Step) -> str:
    """One line of what a step found: the pytest counts, or the benchmark's target lines."""
    if step.name.startswith("pytest"):
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", step.output)
        return ", ".join(f"{n} {what}" for n, what in found) or _last_line(step.output)
    if step.name.startswith("benchmark"):
        verdicts = re.findall(r"^- (PASS|FAIL|SKIP)", step.output, flags=re.M)
        if verdicts:
            return ", ".join(f"{verdicts.count(v)} {v}" for v in ("PASS", "FAIL", "SKIP") if v in verdicts)
    return _last_line(step.output)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:160] if lines else ""


def table(steps: list[Step]) -> str:
    rows = ["| step | status | s | found |", "|---|---|---:|---|"]
    rows += [f"| {s.name} | {s.status} | {s.seconds:.0f} | {s.detail} |" for s in steps]
    return "\n".join(rows)


def dry_run(steps: list[Step]) -> int:
    """Import and plan everything the check would run, without a GPU."""
    import torch

    import mixup_fused

    from . import providers
    from .cases import build_cases

    print(f"no CUDA device (torch {torch.__version__}): dry run, nothing is timed")
    print(f"mixup_fused {mixup_fused.__version__} from {os.path.dirname(mixup_fused.__file__)}")
    try:
        from mixup_fused.triton import launcher  # noqa: F401

        print("triton kernel and launcher: import")
    except ImportError as err:
        print(f"triton kernel and launcher: not importable here ({err})")
    collect = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu", "-p", "no:cacheprovider",
         os.path.join(ROOT, "tests")],  # fmt: skip
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    found = re.search(r"(\d+)(?:/\d+)? tests? (?:collected|selected)", collect.stdout)
    if collect.returncode not in (0, 5) or not found:  # 5: none selected
        print(collect.stdout[-2000:] + collect.stderr[-2000:])
        print("the GPU tests do not collect")
        return 1
    cases = build_cases(torch.device("cuda"), quick=False)
    print(f"pytest -m gpu: {found.group(1)} tests collect")
    print(f"benchmark on cuda: {len(cases)} cases, {len(providers.PROVIDERS)} providers known")
    print("plan (each step with its time limit):")
    for s in steps:
        print(f"  [{s.limit_s:4d} s] {s.name}: {' '.join(s.argv)}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="plan only, even where a GPU is present")
    p.add_argument("--no-install", action="store_true", help="use the package as installed")
    p.add_argument("--log-dir", default=None, help="also write each step's whole output to <log-dir>/<step>.log")
    args = p.parse_args(argv)
    steps = plan(sys.executable, install=not args.no_install, workers=test_workers())

    import torch

    if args.dry_run or not torch.cuda.is_available():
        return dry_run(steps)
    from .env import device_slug

    gpu = device_slug(torch.device("cuda"))
    print(f"GPU check on {torch.cuda.get_device_name(0)}: torch {torch.__version__}, Python {sys.version.split()[0]}")
    for s in steps:
        print(f"-> {s.name} (limit {s.limit_s} s)", flush=True)
        run_step(s)
        print(f"   {s.status} in {s.seconds:.0f} s: {s.detail}", flush=True)
        if args.log_dir:
            os.makedirs(args.log_dir, exist_ok=True)
            with open(os.path.join(args.log_dir, re.sub(r"[^a-z0-9]+", "-", s.name).strip("-") + ".log"), "w") as f:
                f.write(s.output)
        if s.name == "build + install" and s.status != "ok":
            break
    summary = table(steps)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{gpu}-gpu-check.md")
    with open(path, "w") as f:
        f.write(f"# GPU check on {torch.cuda.get_device_name(0)}\n\n")
        f.write(f"torch {torch.__version__}, Python {sys.version.split()[0]}\n\n{summary}\n")
        for s in steps:
            f.write(f"\n## {s.name}: {s.status}\n\n```\n{s.output[-6000:]}\n```\n")
    print()
    print(summary)
    print(f"\nwrote {os.path.relpath(path, ROOT)}")
    return 0 if all(s.status == "ok" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
