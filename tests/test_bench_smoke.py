"""Smoke test of the benchmark: ``python -m bench --quick`` runs end to end,
verifies every provider against the reference before timing it, and writes
the results file, the markdown table and the plot."""

from __future__ import annotations

import json
import math
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


@pytest.mark.slow
def test_quick_mode_covers_maps_audio_video(quick_run):
    """The small seg / classmix / audio / video cases ran: ours and the per-sample
    loop verified and timed against the case's in-place roofline, whose bytes
    (images + maps, + cut mask) the roofline row declares."""
    _, data, _, _ = quick_run
    rows = data["rows"]
    for workload in ("seg", "classmix", "audio", "video"):
        case_rows = {r["provider"]: r for r in rows if r["workload"] == workload}
        assert case_rows, f"no {workload} case in the quick run"
        ours = "ours_inplace_maps" if workload in ("seg", "classmix") else "ours_Mixup_cutmix"
        for key in (ours, "loop"):
            r = case_rows.get(key)
            assert r is not None and r["status"] == "ok" and r["verified"] is True, (workload, key, r)
            assert r["kind"] == "inplace" and r["x_roofline"] > 0, r
            assert 0.3 < r["check"]["cut_fraction"] < 0.7, r  # about half the image is cut
        roof = [r for r in case_rows.values() if r["roofline"]]
        assert len(roof) == 1 and roof[0]["status"] == "ok", roof
        if workload in ("seg", "classmix"):
            case = roof[0]
            pixels = case["shape"][0] * case["shape"][2] * case["shape"][3]
            mask = 2 * pixels if workload == "classmix" else 0
            assert case["bytes"] == 2 * 4 * math.prod(case["shape"]) + 2 * 8 * pixels + mask, case


def test_every_target_names_a_case_and_providers_of_the_full_run():
    """Each target's case is one the full run builds, and its providers run on that case."""
    import torch

    from bench import providers as prov
    from bench.cases import build_cases
    from bench.targets import TARGETS

    for device, targets in TARGETS.items():
        cases = {c.label: c for c in build_cases(torch.device(device), quick=False)}
        for t in targets:
            assert t.case in cases, (device, t.name, t.case)
            keys = {p.key for p in prov.providers_for(cases[t.case], quick=False)}
            assert {t.ours, *t.against} <= keys, (device, t.name, keys)


@pytest.mark.slow
def test_quick_mode_writes_the_matrix(quick_run):
    """The headline matrix: every mode x branch of ``Mixup`` in place, checked
    against the reference, timed against the in-place roofline, drawn as a heat map."""
    stdout, data, _, base = quick_run
    from bench import matrix

    rows = data["matrix"]["rows"]
    groups = {(tuple(r["shape"]), r["dtype"]) for r in rows}
    assert len(groups) == len(matrix.cells(quick=True))
    assert len(rows) == len(groups) * len(matrix.MODES) * len(matrix.BRANCHES)
    for r in rows:
        assert r["status"] == "ok", r
        assert "max_abs_err_x" in r["check"] and "max_abs_err_y" in r["check"], r
        assert r["x_roofline"] > 0 and r["roofline_ms"] > 0, r
        assert r["verdict"] == ("PASS" if r["x_roofline"] <= matrix.bound(r["branch"]) else "FAIL"), r
    assert "#### Mixup in place, 64x3x224x224" in stdout
    assert "#### Mixup in place" in Path(str(base) + ".md").read_text()
    png = Path(str(base) + "-matrix.png")
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deadline_reports_cases_not_started_as_not_run():
    """A time-limited run (``--deadline-s``, as ``make gpu-check`` uses) still
    lists every case it did not start, marked not run, and runs no matrix group."""
    import time

    import torch

    from bench import matrix, suite
    from bench.cases import build_cases
    from bench.timing import Budget, make_timer

    device = torch.device("cpu")
    cases = build_cases(device, quick=True)[:3]
    timer = make_timer(device, flush=False)
    past = time.perf_counter() - 1.0
    rows = suite.run(device, timer, Budget(), quick=True, cases=cases, show_progress=False, deadline=past)
    assert rows and {r["case"] for r in rows} == {c.label for c in cases}
    assert all(r["status"] == "skipped" and "deadline" in r["reason"] for r in rows)
    assert matrix.run(device, timer, Budget(), quick=True, deadline=past) == []


def test_tables_show_host_time_per_call_where_measured():
    """CUDA rows carry the host time to issue a call beside the device time; CPU rows do not."""
    from bench import report

    row = {"case": "c", "useful_bytes": 1e6, "label": "ours", "status": "ok", "roofline": False, "verified": True,
           "median_ms": 0.1, "gbps": 10.0, "x_roofline": 1.1}  # fmt: skip
    cuda = report.markdown_tables([{**row, "host_ms": 0.0421}, {**row, "label": "syncs", "host_ms": None}])
    assert "host us / call" in cuda and "| ours | 0.100 |" in cuda and "| 42 |" in cuda
    assert "| syncs |" in cuda and " - | yes |" in cuda
    cpu = report.markdown_tables([{**row, "host_ms": None}])
    assert "host us" not in cpu


def test_host_cost_rows_on_cpu():
    """``python -m bench.host_cost``: every call runs and gets a host time (syncs are counted on CUDA only)."""
    import torch

    from bench import host_cost

    result = host_cost.measure(torch.device("cpu"), calls=3, kernel=False)
    names = [r["call"] for r in result["host"]]
    assert "op mix_ (checks off)" in names and "Mixup switch" in names and result["graph_replay"] == []
    assert all(r["host_us"] > 0 and r["syncs_per_call"] is None for r in result["host"])
    assert "| Mixup switch |" in host_cost.markdown(result)
