"""The run: every case, every provider: verify, then time; rooflines in the same run."""

from __future__ import annotations

import gc
import time
import traceback
from dataclasses import asdict

import torch

from . import providers as prov
from .cases import WORKLOAD_THREADS, Case, build_cases, make_inputs
from .timing import Budget
from .verify import VerificationError


def configure_compile() -> None:
    """One static graph per case: raise dynamo's recompile limits (every case is a new shape)."""
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, 256)
    if hasattr(cfg, "accumulated_recompile_limit"):
        cfg.accumulated_recompile_limit = 4096
    if hasattr(cfg, "accumulated_cache_size_limit"):
        cfg.accumulated_cache_size_limit = 4096


def _case_dict(case: Case) -> dict:
    return {
        "case": case.label,
        "workload": case.workload,
        "shape": list(case.shape),
        "dtype": str(case.dtype).replace("torch.", ""),
        "out_dtype": str(case.out_dtype).replace("torch.", ""),
        "num_classes": case.num_classes,
        "label_smoothing": case.label_smoothing,
        "useful_bytes": case.useful_bytes(),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_case(case: Case, device, timer, budget: Budget, *, quick: bool, only=None, skip=None, progress=None):
    """Verify every provider of the case, then time the verified ones together
    (on the workload's number of threads, see ``WORKLOAD_THREADS``)."""
    threads = WORKLOAD_THREADS.get(case.workload)
    if threads is None:
        return _run_case(case, device, timer, budget, quick=quick, only=only, skip=skip, progress=progress)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_case(case, device, timer, budget, quick=quick, only=only, skip=skip, progress=progress)
    finally:
        torch.set_num_threads(previous)


def _run_case(case: Case, device, timer, budget: Budget, *, quick: bool, only=None, skip=None, progress=None):
    rows, fns = [], {}
    inp = make_inputs(case, device)
    for p in prov.providers_for(case, quick=quick, only=only, skip=skip):
        if progress is not None:
            progress.set_postfix_str(f"{case.label} | check {p.label}"[:70], refresh=True)
        row = {**_case_dict(case), "provider": p.key, "label": p.label, "kind": p.kind, "roofline": p.roofline}
        row["timm_key"] = p.timm_key or prov.TIMM_BASELINE.get(case.workload)
        try:
            prepared = p.prepare(inp)
            t0 = time.perf_counter()
            row["check"] = prepared.check()
            _sync(device)
            row["check_s"] = round(time.perf_counter() - t0, 3)  # includes torch.compile's compilation
            row["verified"] = True
            if prepared.roofline_bytes is not None:
                row["roofline_bytes"] = prepared.roofline_bytes
            if prepared.note:
                row["note"] = prepared.note
            fns[p.key] = prepared.fn
        except prov.Skip as s:
            row.update(status="skipped", reason=str(s))
        except VerificationError as err:
            row.update(status="failed", verified=False, reason=f"verification: {err}")
        except Exception as err:  # a provider that crashes is reported, not fatal
            tb = traceback.format_exception_only(type(err), err)[-1].strip()
            row.update(status="error", verified=False, reason=tb[:500])
        rows.append(row)
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.set_postfix_str(f"{case.label} | timing {len(fns)} providers"[:70], refresh=True)
    try:
        timings = timer.time_all(fns, budget)
        _sync(device)
    except Exception as err:  # a crash while timing: report it on every row of the case
        tb = traceback.format_exception_only(type(err), err)[-1].strip()
        timings = {}
        for row in rows:
            if row["provider"] in fns:
                row.update(status="error", reason=f"while timing: {tb[:400]}")
    for row in rows:
        t = timings.get(row["provider"])
        if t is not None:
            row.update({k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(t).items()})
            row["status"] = "ok"
    fns.clear()
    del inp
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    derive(rows)
    return rows


def derive(rows: list[dict]) -> None:
    """GB/s of useful bytes, ratio to the same-run roofline of the provider's kind, speed-up over timm."""
    by_key = {r["provider"]: r for r in rows if r.get("status") == "ok"}
    bandwidth = {}
    for r in rows:
        if r.get("status") == "ok" and r["roofline"]:
            case = r
            kind = r["kind"]
            nbytes = _roofline_bytes_from_row(case, kind)
            bandwidth[kind] = nbytes / (r["median_ms"] * 1e-3) / 1e9
    for r in rows:
        if r.get("status") != "ok":
            continue
        if r["roofline"]:
            nbytes = _roofline_bytes_from_row(r, r["kind"])
            r["bytes"] = nbytes
            r["gbps"] = round(nbytes / (r["median_ms"] * 1e-3) / 1e9, 3)
            r["x_roofline"] = 1.0
            continue
        r["bytes"] = r["useful_bytes"]
        r["gbps"] = round(r["useful_bytes"] / (r["median_ms"] * 1e-3) / 1e9, 3)
        bw = bandwidth.get(r["kind"])
        if bw:
            roof_ms = r["useful_bytes"] / (bw * 1e9) * 1e3
            r["roofline_ms"] = round(roof_ms, 5)
            r["x_roofline"] = round(r["median_ms"] / roof_ms, 3)
        base = by_key.get(r["timm_key"]) if r["timm_key"] else None
        if base is not None:
            r["speedup_vs_timm"] = round(base["median_ms"] / r["median_ms"], 3)


def _roofline_bytes_from_row(r: dict, kind: str) -> int:
    """The bytes a roofline row moves: what it declared (``Prepared.roofline_bytes``),
    else x read and written (uint8 -> float: x read, the float copy written)."""
    if r.get("roofline_bytes") is not None:
        return r["roofline_bytes"]
    numel = 1
    for s in r["shape"]:
        numel *= s
    size = {"float32": 4, "bfloat16": 2, "float16": 2, "uint8": 1}
    if kind == "convert":
        return numel * (1 + size[r["out_dtype"]])
    return 2 * numel * size[r["dtype"]]


def run(
    device, timer, budget: Budget, *, quick: bool, only=None, skip=None, cases=None, show_progress=True, deadline=None
):
    """Every case in turn. ``deadline`` (a ``time.perf_counter()`` value): cases
    not started by then are reported as skipped, so a time-limited run still
    writes its results."""
    configure_compile()
    cases = cases if cases is not None else build_cases(device, quick)
    total = sum(len(prov.providers_for(c, quick=quick, only=only, skip=skip)) for c in cases)
    progress = None
    if show_progress:
        from tqdm import tqdm

        progress = tqdm(total=total, desc="bench", unit="provider", dynamic_ncols=True)
    rows = []
    try:
        for case in cases:
            if deadline is not None and time.perf_counter() > deadline:
                rows.extend(_not_run(case, quick=quick, only=only, skip=skip))
                continue
            rows.extend(run_case(case, device, timer, budget, quick=quick, only=only, skip=skip, progress=progress))
    finally:
        if progress is not None:
            progress.close()
    return rows


def _not_run(case: Case, *, quick: bool, only=None, skip=None) -> list[dict]:
    rows = []
    for p in prov.providers_for(case, quick=quick, only=only, skip=skip):
        row = {**_case_dict(case), "provider": p.key, "label": p.label, "kind": p.kind, "roofline": p.roofline}
        rows.append({**row, "status": "skipped", "reason": "not run: past --deadline-s"})
    return rows
