"""Smoke test of the benchmark: ``python -m bench --quick`` runs end to end,
verifies every provider against the reference before timing it, and writes
the results file, the markdown table and the plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("bench")
    env = dict(os.environ)
    # The benchmark measures the default backend on the default device.
    for var in ("MIXUP_FUSED_BACKEND", "TRITON_INTERPRET"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-progress", "--results-dir", str(out_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"python -m bench --quick failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    files = sorted(out_dir.iterdir())
    jsons = [f for f in files if f.suffix == ".json"]
    assert len(jsons) == 1 and jsons[0].name.endswith("-quick.json"), files
    return proc.stdout, json.loads(jsons[0].read_text()), out_dir, jsons[0].with_suffix("")


@pytest.mark.slow
def test_quick_mode_writes_json_table_and_plot(quick_run):
    stdout, data, _, base = quick_run
    assert "| provider | ms | GB/s | x roofline | speed-up vs timm | checked |" in stdout
    assert "### Targets" in stdout
    assert Path(str(base) + ".md").read_text().count("| provider |") >= 1
    png = Path(str(base) + ".png")
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["mode"] == "quick"
    machine = data["machine"]
    for key in ("machine", "torch", "triton", "git_commit", "timestamp", "allocator"):
        assert key in machine, key
    assert "THP_MEM_ALLOC_ENABLE" in machine["allocator"]
    assert data["targets"], "no performance targets evaluated"
    assert {t["status"] for t in data["targets"]} <= {"PASS", "FAIL", "SKIP", "MISSING"}


@pytest.mark.slow
def test_quick_mode_verified_every_timed_provider(quick_run):
    _, data, _, _ = quick_run
    rows = data["rows"]
    timed = [r for r in rows if r["status"] == "ok"]
    assert timed, "nothing was timed"
    for r in timed:
        assert r["median_ms"] > 0 and r["gbps"] > 0, r
        if r["roofline"]:
            continue
        assert r["verified"] is True, r
        assert "max_abs_err_x" in r["check"], r
        assert r["x_roofline"] > 0, r
    # Ours ran, matched the reference, and was timed in every case.
    for case in {r["case"] for r in rows}:
        ours = [r for r in rows if r["case"] == case and r["provider"].startswith("ours")]
        assert any(r["status"] == "ok" for r in ours), (case, ours)
        assert not [r for r in ours if r["status"] in ("failed", "error")], (case, ours)
        assert any(r["roofline"] and r["status"] == "ok" for r in rows if r["case"] == case), case
    # Nothing we ship failed verification or crashed; a peer that did would be reported, not hidden.
    bad = [r for r in rows if r["status"] in ("failed", "error")]
    assert not [r for r in bad if r["provider"].startswith("ours")], bad
