"""``make gpu-check``: its dry run (what CI runs without a GPU) and its summary of each step."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import gpu_check


@pytest.mark.slow
def test_dry_run_plans_everything_and_exits_0():
    proc = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--dry-run"], cwd=gpu_check.ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "dry run" in out and "tests collect" in out and "cases" in out
    assert int(out.split("pytest -m gpu: ")[1].split()[0]) > 100  # the GPU tests are there to run
    for step in gpu_check.plan(sys.executable, install=True):
        assert step.name in out


def test_plan_fits_eight_minutes():
    assert sum(s.limit_s for s in gpu_check.plan(sys.executable, install=True)) <= 8 * 60


def test_summary_of_each_step():
    tests = gpu_check.Step("pytest -m gpu", [], 1, output="... 1890 passed, 4 skipped, 2 failed in 120.3s")
    assert gpu_check.summarise(tests) == "1890 passed, 4 skipped, 2 failed"
    bench = gpu_check.Step("benchmark (cuda)", [], 1, output="- PASS a\n- FAIL b\n- PASS c\n- SKIP d\n")
    assert gpu_check.summarise(bench) == "2 PASS, 1 FAIL, 1 SKIP"
    install = gpu_check.Step("build + install", [], 1, output="error: ninja failed\n\n")
    assert gpu_check.summarise(install) == "error: ninja failed"
    tests.detail = gpu_check.summarise(tests)
    assert "| pytest -m gpu | not run | 0 | 1890 passed, 4 skipped, 2 failed |" in gpu_check.table([tests])
