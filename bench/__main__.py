"""``python -m bench``: the benchmark of mixup_fused on this machine's device.

Every provider is checked against ``mixup_fused.reference`` before it is timed;
each reported time is the median of repeated calls after warm-up; the copy and
in-place rooflines are measured in the same run. Prints markdown tables and the
performance targets, and writes ``bench/results/<device>.json``, ``.md`` and
``.png`` (``--quick`` writes ``<device>-quick.*`` so it never overwrites a full run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few cases and providers, few repetitions (< 60 s on CPU)")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu or cuda")
    p.add_argument(
        "--thp",
        choices=("on", "off", "env"),
        default=None,
        help="CPU allocator: transparent huge pages for torch allocations (THP_MEM_ALLOC_ENABLE=1, "
        "results written to *-thp-on.*). Default: 'env', torch's own default unless the variable is set",
    )
    p.add_argument("--no-flush", action="store_true", help="CPU: do not flush the caches between timed calls")
    p.add_argument("--results-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--tag", default="", help="suffix for the results file names")
    p.add_argument("--only", default="", help="comma-separated provider keys to run (rooflines always run)")
    p.add_argument("--skip", default="", help="comma-separated provider keys to leave out")
    p.add_argument(
        "--workloads",
        default="",
        help="comma-separated workloads (mixup, elem, cutmix, uint8, backward, collate, seg, classmix, audio, video, "
        "matrix: Mixup in place in every mode x branch x dtype)",
    )
    p.add_argument(
        "--deadline-s",
        type=float,
        default=None,
        help="start no case after this many seconds; the rest are reported as not run (for time-limited runs)",
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def set_allocator_env(thp: str | None) -> str:
    """Must run before torch is imported: torch reads THP_MEM_ALLOC_ENABLE once."""
    if thp is None:
        # What a user of torch gets: torch leaves huge pages off unless asked.
        thp = "env"
    if thp == "on":
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"
    elif thp == "off":
        os.environ.pop("THP_MEM_ALLOC_ENABLE", None)
    return thp


def main(argv=None) -> int:
    args = parse_args(argv)
    thp = set_allocator_env(args.thp)
    if "torch" in sys.modules and thp != "env":
        print("warning: torch was imported before the allocator settings; THP setting may not apply", file=sys.stderr)

    import torch

    from . import env, matrix, report, suite
    from . import providers as prov
    from .cases import WORKLOADS, build_cases
    from .targets import evaluate_targets
    from .timing import Budget, make_timer

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    timer = make_timer(device, flush=not args.no_flush)
    budget = Budget(warmup=1, min_reps=3, max_reps=8, seconds=0.3) if args.quick else Budget()
    only = {s for s in args.only.split(",") if s} or None
    skip = {s for s in args.skip.split(",") if s} or None
    cases = build_cases(device, args.quick)
    wanted = set(args.workloads.split(",")) if args.workloads else None
    if wanted is not None:
        cases = [c for c in cases if c.workload in wanted]
    run_matrix = (wanted is None or "matrix" in wanted) and only is None
    matrix_budget = (
        Budget(warmup=1, min_reps=3, max_reps=5, seconds=0.2)
        if args.quick
        else Budget(warmup=2, min_reps=9, max_reps=25, seconds=3.0)
    )

    meta = env.describe(device)
    thp_on = os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"
    print(f"# mixup_fused benchmark on {meta['machine']} ({'quick' if args.quick else 'full'} mode)")
    dirty = " (dirty)" if meta["git_dirty"] else ""
    print(f"torch {meta['torch']}, triton {meta['triton']}, commit {meta['git_commit']}{dirty}")
    if device.type == "cpu":
        print(
            f"allocator: THP_MEM_ALLOC_ENABLE={'1' if thp_on else 'unset'} (transparent huge pages for torch "
            f"allocations {'on' if thp_on else 'off'}; same for every provider in this run)"
        )
        load = meta.get("loadavg_at_start")
        if load and load[0] > 0.5 * (os.cpu_count() or 1):
            print(f"warning: load average {load[0]:.2f} at start: other processes compete for the CPU", file=sys.stderr)
    print(f"timer: {timer.describe()}")
    availability = prov.availability()
    missing = {k: v for k, v in availability.items() if v is not True}
    if missing:
        print("not available (their providers are skipped): " + "; ".join(f"{k}: {v}" for k, v in missing.items()))

    contention = env.CPUContention()
    t0 = time.perf_counter()
    deadline = None if args.deadline_s is None else t0 + args.deadline_s
    rows = suite.run(
        device,
        timer,
        budget,
        quick=args.quick,
        only=only,
        skip=skip,
        cases=cases,
        show_progress=not args.no_progress,
        deadline=deadline,
    )
    matrix_rows = []
    if run_matrix:
        show = None if args.no_progress else (lambda what: print(what, file=sys.stderr, flush=True))
        matrix_rows = matrix.run(device, timer, matrix_budget, args.quick, progress=show, deadline=deadline)
    host = None
    if device.type == "cuda" and wanted is None and only is None:
        from . import host_cost

        host = host_cost.measure(device, calls=100 if args.quick else 300)
    elapsed = time.perf_counter() - t0
    other_cpu = contention.other_fraction()
    meta["other_processes_cpu_fraction"] = None if other_cpu is None else round(other_cpu, 3)
    meta["loadavg_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    tables = report.markdown_tables(rows)
    targets = evaluate_targets(rows, device.type)
    print()
    print(tables)
    print("### Targets, from this run")
    print(report.targets_text(targets))
    matrix_md = ""
    if matrix_rows:
        matrix_md = "### " + matrix.__doc__.split("\n\n")[0].replace("\n", " ") + "\n\n" + matrix.markdown(matrix_rows)
        print()
        print(matrix_md)
    host_md = ""
    if host is not None:
        host_md = "### Host cost per call, and device time alone (CUDA graph replay)\n\n" + host_cost.markdown(host)
        print()
        print(host_md)
    failed = [r for r in rows if r.get("status") in ("failed", "error")]
    failed += [
        {
            "case": f"matrix {r['mode']}/{r['branch']} {r['dtype']}",
            "label": "mixup_fused.Mixup",
            "provider": "ours",
            "reason": r.get("reason"),
        }
        for r in matrix_rows
        if r.get("status") == "failed"
    ]
    if failed:
        print("\n### Providers that failed verification or crashed (not timed)")
        for r in failed:
            print(f"- {r['case']} / {r['label']}: {r.get('reason')}")

    slug = env.device_slug(device)
    if args.quick:
        slug += "-quick"
    if device.type == "cpu" and thp_on:
        slug += "-thp-on"
    if args.tag:
        slug += "-" + args.tag
    os.makedirs(args.results_dir, exist_ok=True)
    base = os.path.join(args.results_dir, slug)
    from .peers import kornia_version, timm_version

    payload = {
        "schema": 1,
        "mode": "quick" if args.quick else "full",
        "machine": meta,
        "peers": {"timm": timm_version(), "kornia": kornia_version()},
        "availability": availability,
        "method": {
            "timer": timer.describe(),
            "budget": vars(budget),
            "useful_bytes": "inputs read once + outputs written once (x, class ids, float32 [B,K] targets; "
            "backward: h, out, incoming grad, grad of h)",
            "x_roofline": "median ms / (useful bytes / bandwidth of the roofline of the provider's kind, same run)",
            "speedup_vs_timm": "median ms of the case's timm provider / median ms",
            "workloads": WORKLOADS,
            "thp_mem_alloc_enable": thp_on if device.type == "cpu" else None,
        },
        "elapsed_s": round(elapsed, 1),
        "rows": rows,
        "targets": targets,
        "matrix": {"bound": matrix.BOUND, "cutmix_bound": matrix.CUTMIX_BOUND, "rows": matrix_rows},
        "host_cost": host,
    }
    report.write_json(base + ".json", payload)
    with open(base + ".md", "w") as f:
        f.write(f"# mixup_fused benchmark: {meta['machine']}\n\n")
        f.write(f"torch {meta['torch']}, triton {meta['triton']}, commit {meta['git_commit']}, {meta['timestamp']}; ")
        f.write(f"{timer.describe()}; THP_MEM_ALLOC_ENABLE={'1' if thp_on else 'unset'}\n\n")
        f.write(tables + "\n### Targets\n\n" + report.targets_text(targets) + "\n")
        if matrix_md:
            f.write("\n" + matrix_md)
        if host_md:
            f.write("\n\n" + host_md + "\n")
    written = [base + ".json", base + ".md"]
    if not args.no_plot:
        title = (
            f"mixup_fused benchmark on {meta['machine']}, torch {meta['torch']}, commit "
            f"{(meta['git_commit'] or '')[:10]}; THP {'on' if thp_on else 'off'}"
        )
        if rows:
            report.plot(rows, base + ".png", title)
            written.append(base + ".png")
        if matrix_rows:
            matrix.plot(matrix_rows, base + "-matrix.png", title)
            written.append(base + "-matrix.png")
    if other_cpu is not None:
        note = "  WARNING: timings are noisy, rerun on an idle machine" if other_cpu > 0.1 else ""
        print(f"\nother processes used {100 * other_cpu:.0f}% of the CPU during the run.{note}")
    print(f"wrote {', '.join(os.path.relpath(p) for p in written)} in {elapsed:.0f} s")
    # A peer that fails is reported above; a failure of ours fails the run.
    return 1 if any(r["provider"].startswith("ours") for r in failed) else 0


if __name__ == "__main__":
    sys.exit(main())
