"""ERM vs Mixup vs CutMix over several seeds on the embedded data, plus the cost of mixing per backend.

    python examples/experiment.py

runs ``examples/train.py`` once per (method, seed) -- ERM (no mixing), Mixup
(alpha 1) and CutMix (alpha 1), seeds 0, 1, 2 -- then short runs that time
the augmentation step with ``--backend fused``, ``timm`` and ``reference``.
It writes ``examples/results/experiment.{md,json,png}``: the table (mean,
standard deviation and every seed), the plot (test error, NLL and expected
calibration error per method, with the spread over seeds, and test error per
epoch) and every run's full report. Runs that already finished with the same
settings (``examples/runs/experiment/<run>/metrics.json``) are reused; pass
``--rerun`` to start over. Arguments after ``--`` go to every training run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, "train.py")

METHODS = {
    "ERM": ["--backend", "none", "--mixup-alpha", "0", "--cutmix-alpha", "0"],
    "Mixup": ["--backend", "fused", "--mixup-alpha", "1", "--cutmix-alpha", "0"],
    "CutMix": ["--backend", "fused", "--mixup-alpha", "0", "--cutmix-alpha", "1"],
}
OVERHEAD_BACKENDS = ("fused", "timm", "reference")
METRICS = (("test_error", "test error", 100, "%"), ("test_nll", "NLL", 1, ""), ("test_ece", "ECE (15 bins)", 100, "%"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--train-size", type=int, default=1500)
    p.add_argument("--eval-every", type=int, default=5, help="score the test set every N epochs (and the last)")
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1: steadier timings)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="training runs at a time (default 2; the timing runs go one by one)")  # fmt: skip
    p.add_argument("--overhead-epochs", type=int, default=3, help="epochs of each backend-timing run (first untimed)")
    p.add_argument("--overhead-train-size", type=int, default=2560)
    p.add_argument("--no-overhead", action="store_true", help="skip the backend-timing runs")
    p.add_argument("--overhead-only", action="store_true", help="only the backend-timing runs")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="where experiment.{md,json,png} go")
    p.add_argument("--runs", default=None, help="one folder per training run (default examples/runs/NAME)")
    p.add_argument("--name", default="experiment", help="file names of the results (default experiment)")
    p.add_argument("--rerun", action="store_true", help="run again even where a finished run is found")
    p.add_argument("train_args", nargs="*", help="after --: passed to every training run")
    return p.parse_args(argv)


def run_train(run_dir: str, train_args: list[str], rerun: bool) -> dict:
    """One training run in its own process; its metrics.json (reused when it exists with the same arguments)."""
    metrics_path = os.path.join(run_dir, "metrics.json")
    args_path = os.path.join(run_dir, "args.json")
    if not rerun and os.path.isfile(metrics_path) and os.path.isfile(args_path):
        with open(args_path) as f:
            if json.load(f) == train_args:
                with open(metrics_path) as f:
                    return json.load(f)
    os.makedirs(run_dir, exist_ok=True)
    for stale in (metrics_path, os.path.join(run_dir, "checkpoint.pt")):
        if os.path.exists(stale):
            os.remove(stale)
    with open(args_path, "w") as f:
        json.dump(train_args, f)
    cmd = [sys.executable, TRAIN, *train_args, "--out", run_dir, "--no-progress"]
    with open(os.path.join(run_dir, "log.txt"), "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(os.path.join(run_dir, "log.txt")) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"run failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    with open(metrics_path) as f:
        return json.load(f)


def summarise(values):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "values": values}


def git_state() -> dict:
    """HEAD's commit id and the paths with uncommitted changes (``git status --porcelain``), at the time of the call."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=HERE, capture_output=True, text=True).stdout
    except OSError:
        return {"commit": "unknown", "uncommitted": []}
    return {"commit": head or "unknown", "uncommitted": [line[3:] for line in status.splitlines() if line.strip()]}


def git_commit() -> str:
    """The short commit id, with ``+dirty`` when the tree has uncommitted changes."""
    state = git_state()
    return state["commit"][:7] + ("+dirty" if state["uncommitted"] else "")


def plot_band(ax, epochs, curves, label: str, colour: str):
    """The mean of ``curves`` (one list of values per seed, at ``epochs``) as a line, their min-max as a band."""
    n = min(len(c) for c in curves)
    epochs = epochs[:n]
    ax.plot(epochs, [statistics.fmean(c[e] for c in curves) for e in range(n)], label=label, color=colour)
    lo = [min(c[e] for c in curves) for e in range(n)]
    hi = [max(c[e] for c in curves) for e in range(n)]
    ax.fill_between(epochs, lo, hi, color=colour, alpha=0.2)


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm

    if args.runs is None:
        args.runs = os.path.join(HERE, "runs", args.name)
    if args.overhead_only:
        args.methods = []
    common = [
        "--epochs", str(args.epochs),
        "--train-size", str(args.train_size),
        "--test-size", str(args.test_size),
        "--threads", str(args.threads),
        "--eval-every", str(args.eval_every),
        *args.train_args,
    ]  # fmt: skip
    plan = [(m, s) for s in args.seeds for m in args.methods]  # seeds outer: a partial run still compares methods
    overhead_plan = []
    if not args.no_overhead:
        for method in ("Mixup", "CutMix"):
            for backend in OVERHEAD_BACKENDS:
                overhead_plan.append((method, backend))

    t_start = time.perf_counter()
    runs = []
    bar = tqdm(total=len(plan) + len(overhead_plan), desc="experiment", unit="run")

    def one(job):
        method, seed = job
        train_args = [*common, *METHODS[method], "--seed", str(seed)]
        report = run_train(os.path.join(args.runs, f"{method.lower()}-seed{seed}"), train_args, args.rerun)
        return {"method": method, "seed": seed, "args": train_args, "report": report}

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for run in pool.map(one, plan):
            runs.append(run)
            f = run["report"]["final"]
            bar.write(
                f"{run['method']:7s} seed {run['seed']}: test error {100 * f['test_error']:.2f}%  "
                f"NLL {f['test_nll']:.4f}  ECE {100 * f['test_ece']:.2f}%  "
                f"({run['report']['timing']['epoch_s']:.1f} s/epoch)"
            )
            bar.update()

    overhead = []
    for method, backend in overhead_plan:
        bar.set_postfix_str(f"timing {method} / {backend}")
        train_args = [
            *METHODS[method],
            "--backend", backend,  # argparse keeps the last --backend
            "--epochs", str(args.overhead_epochs),
            "--train-size", str(args.overhead_train_size),
            "--test-size", str(args.test_size),
            "--threads", str(args.threads),
            "--seed", "0",
            *args.train_args,
        ]  # fmt: skip
        report = run_train(os.path.join(args.runs, f"timing-{method.lower()}-{backend}"), train_args, args.rerun)
        overhead.append({"method": method, "backend": backend, "args": train_args, "report": report})
        t = report["timing"]
        bar.write(
            f"timing {method:6s} {backend:9s}: augmentation {t['augment_ms_per_step']:.3f} ms/step "
            f"(median {t['augment_ms_per_step_median']:.3f}), step {step_ms(t):.1f} ms"
        )
        bar.update()
    bar.close()

    results = collect(args, runs, overhead, time.perf_counter() - t_start)
    base = write_results(results, args.out, args.name, to_markdown)
    if runs:
        plot(results, base + ".png")
        print(f"wrote {base}.md, {base}.json, {base}.png")
    else:
        print(f"wrote {base}.md, {base}.json")


def write_results(results: dict, out: str, name: str, to_markdown) -> str:
    """``OUT/NAME.json`` (the results) and ``OUT/NAME.md`` (``to_markdown(results, "NAME.png")``, also printed).
    Returns ``OUT/NAME``, for the plot."""
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, name)
    with open(base + ".json", "w") as f:
        json.dump(results, f, indent=2)
    markdown = to_markdown(results, name + ".png")
    with open(base + ".md", "w") as f:
        f.write(markdown)
    print(markdown)
    return base


def save_figure(fig, path: str, title: str, dpi: int):
    """Title the figure (small print: data, machine), lay it out, write it, free it."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def run_s(report: dict) -> float:
    """A run's time on its own clock: the data set, then every epoch's training and evaluation."""
    return report["timing"]["data_load_s"] + sum(h["train_s"] + h["eval_s"] for h in report["history"])


def run_settings(report: dict) -> dict:
    """The data set, model and optimiser settings of a training run, from its report."""
    keys = ("dataset", "batch_size", "width", "blocks", "lr", "weight_decay")
    return {k: report["settings"][k] for k in keys}


def step_ms(t: dict) -> float:
    return t["data_ms_per_step"] + t["augment_ms_per_step"] + t["compute_ms_per_step"]


def collect(args, runs, overhead, wall_s) -> dict:
    summary = {}
    for method in args.methods:
        rs = [r["report"] for r in runs if r["method"] == method]
        if not rs:
            continue
        row = {key: summarise([r["final"][key] for r in rs]) for key, *_ in METRICS}
        row["train_loss"] = summarise([r["history"][-1]["train_loss"] for r in rs])
        row["epoch_s"] = summarise([r["timing"]["epoch_s"] for r in rs])
        row["augment_ms_per_step"] = summarise([r["timing"]["augment_ms_per_step"] for r in rs])
        row["step_ms"] = summarise([step_ms(r["timing"]) for r in rs])
        row["images_per_s"] = summarise([r["timing"]["images_per_s"] for r in rs])
        summary[method] = row
    first = (runs or overhead)[0]["report"]

    return {
        "command": " ".join(["python", "examples/experiment.py", *sys.argv[1:]]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "wall_s": wall_s,  # of this invocation (runs found finished are reused, not timed again)
        "compute_s": sum(run_s(r["report"]) for r in runs + overhead),
        "jobs": args.jobs,
        "environment": first["environment"],
        "settings": {
            **run_settings(first),
            "epochs": args.epochs,
            "seeds": args.seeds,
            "threads": args.threads,
            "methods": {m: METHODS[m] for m in args.methods},
            "extra_train_args": args.train_args,
        },
        "summary": summary,
        "runs": runs,
        "overhead": overhead,
    }


def to_markdown(res: dict, plot_name: str) -> str:
    s, env = res["settings"], res["environment"]
    title = "ERM vs Mixup vs CutMix" if res["summary"] else "Time spent mixing per backend"
    lines = [
        f"# {title} on the embedded shapes",
        "",
        f"`{res['command']}` -- {res['date']}, commit {res['commit']}; "
        f"{res['compute_s'] / 60:.1f} min of training and evaluation over "
        f"{len(res['runs']) + len(res['overhead'])} runs, {res['jobs']} at a time.",
        "",
        f"Machine: {env['machine']}; torch {env['torch']}, {s['threads']} thread(s) per run. "
        f"Data: {s['dataset']}. Model: pre-activation ResNet, widths {s['width']}/{2 * s['width']}/{4 * s['width']}, "
        f"{s['blocks']} block(s) per stage. Batch {s['batch_size']}, SGD (Nesterov, "
        f"lr {s['lr']}, cosine, 1 warm-up epoch), weight decay {s['weight_decay']}, random crop + flip; "
        f"no label smoothing; alpha = 1 for Mixup and CutMix (batch mode, prob 1)."
        + (f" Extra arguments to every run: `{' '.join(s['extra_train_args'])}`." if s["extra_train_args"] else ""),
        "",
    ]
    if res["summary"]:
        lines += [
            f"## {s['epochs']} epochs, {len(s['seeds'])} seeds",
            "",
            "| method | test error (%) | test NLL | ECE, 15 bins (%) | last train loss | s / epoch | mix ms / step |",
            "|---|---|---|---|---|---|---|",
        ]
        for method, row in res["summary"].items():
            cells = []
            for key, _, scale, _ in METRICS:
                v = row[key]
                seeds = ", ".join(f"{scale * x:.2f}" for x in v["values"])
                cells.append(f"{scale * v['mean']:.2f} ± {scale * v['std']:.2f} ({seeds})")
            cells += [
                f"{row['train_loss']['mean']:.3f}",
                f"{row['epoch_s']['mean']:.1f}",
                f"{row['augment_ms_per_step']['mean']:.3f}",
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Mean ± standard deviation over the seeds, every seed's value in brackets. Train loss is against the "
            "mixed targets for Mixup and CutMix, so it is not comparable with ERM's.",
            "",
            f"![test error, NLL and ECE per method]({plot_name})",
            "",
        ]
    if res["overhead"]:
        o = res["overhead"][0]["report"]["settings"]
        lines += [
            "## Time spent mixing, per backend",
            "",
            f"{o['dataset']}; {o['train_size']} training images, {o['epochs']} epochs (the first one not timed), "
            f"batch {o['batch_size']}, seed 0; `--backend fused | timm | reference`. Augmentation = the "
            "`Mixup(x, y)` call (draws, mixed images, mixed targets); step = data + augmentation + "
            "forward/backward/update.",
            "",
            "| method | backend | augmentation ms / step (mean) | (median) | step ms | share of step |",
            "|---|---|---|---|---|---|",
        ]
        for r in res["overhead"]:
            t = r["report"]["timing"]
            share = 100 * t["augment_ms_per_step"] / step_ms(t)
            lines.append(
                f"| {r['method']} | {r['backend']} | {t['augment_ms_per_step']:.3f} | "
                f"{t['augment_ms_per_step_median']:.3f} | {step_ms(t):.1f} | {share:.2f}% |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(res: dict, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(res["summary"])
    colours = {"ERM": "tab:gray", "Mixup": "tab:blue", "CutMix": "tab:orange"}
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for ax, (key, label, scale, unit) in zip(axes[:3], METRICS, strict=True):
        for i, m in enumerate(methods):
            v = res["summary"][m][key]
            vals = [scale * x for x in v["values"]]
            ax.bar(i, scale * v["mean"], color=colours.get(m, "tab:green"), alpha=0.35, width=0.6)
            ax.errorbar(i, scale * v["mean"], yerr=scale * v["std"], color="black", capsize=6, lw=1.5)
            ax.scatter([i + 0.12 * (j - (len(vals) - 1) / 2) for j in range(len(vals))], vals, color="black", s=14)
        ax.set_xticks(range(len(methods)), methods)
        ax.set_title(f"{label}" + (f" ({unit})" if unit else ""))
        ax.grid(axis="y", alpha=0.3)
    ax = axes[3]
    for m in methods:
        hists = [[h for h in r["report"]["history"] if "test_error" in h] for r in res["runs"] if r["method"] == m]
        curves = [[100 * h["test_error"] for h in hist] for hist in hists]
        plot_band(ax, [h["epoch"] for h in hists[0]], curves, m, colours.get(m, "tab:green"))
    ax.set_xlabel("epoch")
    ax.set_title("test error (%) per epoch (min-max band)")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    s, env = res["settings"], res["environment"]
    title = f"{s['dataset']}; {s['epochs']} epochs, {len(s['seeds'])} seeds (bars: mean ± std, dots: seeds); "
    save_figure(fig, path, title + env["machine"], dpi=110)


if __name__ == "__main__":
    main()
