"""Corrupted labels at small scale: ERM memorises them, Mixup resists (Zhang et al., ICLR 2018, Table 2).

    python examples/label_noise.py

replaces 20 % and 50 % of the training labels of the embedded shapes by
uniformly random classes (the test set stays clean), trains ERM, Mixup and
CutMix on them with ``examples/train.py`` (``mixup_fused.Mixup``), seeds 0 to
4, and writes ``examples/results/label-noise.{json,md,png}``: per run the
last- and best-epoch test error, the share of corrupted training labels the
model reproduces, test NLL and ECE, and the test error per epoch; the table
(with the paper's figures beside it), the success rule and whether it held,
and the plot. Finished runs (``examples/runs/label-noise/<run>/``) are reused;
``--rerun`` starts over. Arguments after ``--`` go to every training run.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import shlex
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from experiment import git_state, run_s, run_settings, run_train, summarise, write_results  # noqa: E402
from label_noise_report import plot, to_markdown  # noqa: E402

# name: (method, alpha, train.py flags)
ARMS = {
    "ERM": ("erm", 0.0, ["--backend", "none", "--mixup-alpha", "0", "--cutmix-alpha", "0"]),
    "Mixup a=1": ("mixup", 1.0, ["--backend", "fused", "--mixup-alpha", "1", "--cutmix-alpha", "0"]),
    "Mixup a=8": ("mixup", 8.0, ["--backend", "fused", "--mixup-alpha", "8", "--cutmix-alpha", "0"]),
    "Mixup a=32": ("mixup", 32.0, ["--backend", "fused", "--mixup-alpha", "32", "--cutmix-alpha", "0"]),
    "CutMix a=1": ("cutmix", 1.0, ["--backend", "fused", "--mixup-alpha", "0", "--cutmix-alpha", "1"]),
}
# The arms per share of corrupted labels: the paper's alphas (8 at 20 %, 32 at 50 %), 1 and 8 at 50 % as well;
# CutMix as an extra; and the clean data for reference.
DESIGN = {
    0.0: ("ERM", "Mixup a=1"),
    0.2: ("ERM", "Mixup a=8", "CutMix a=1"),
    0.5: ("ERM", "Mixup a=1", "Mixup a=8", "Mixup a=32", "CutMix a=1"),
}
# Zhang et al. (2018), Table 2, CIFAR-10, PreAct ResNet-18, 200 epochs: test error (%), best and last epoch.
PAPER = {
    (0.2, "ERM"): (12.7, 16.6),
    (0.2, "Mixup a=8"): (5.9, 6.4),
    (0.5, "ERM"): (18.8, 44.6),
    (0.5, "Mixup a=32"): (11.3, 12.7),
}
# The success rule, fixed before the final run (examples/README.md states it too).
RULE_NOISE, RULE_ARMS, RULE_SDS, RULE_MEMORISED = 0.5, ("Mixup a=8", "Mixup a=32"), 3.0, 0.9
RULE = (
    f"At {RULE_NOISE:.0%} label noise, ERM interpolates (mean share of corrupted training labels predicted as "
    f"given >= {RULE_MEMORISED:.0%}), and each of {', '.join(RULE_ARMS)} has a mean last-epoch test error lower "
    f"than ERM's by more than {RULE_SDS:g} pooled standard deviations, lower in every seed (paired by seed: same "
    "corrupted labels, same initial weights)."
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--noise", type=float, nargs="+", default=list(DESIGN), help="shares of corrupted labels")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS), help="subset of the arms")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--train-size", type=int, default=2048)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=24)
    p.add_argument("--eval-every", type=int, default=3, help="score test set and corrupted labels every N epochs")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--jobs", type=int, default=1, help="training runs at a time (default 1)")
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="where NAME.{md,json,png} go")
    p.add_argument("--runs", default=None, help="one folder per training run (default examples/runs/NAME)")
    p.add_argument("--name", default="label-noise", help="file names of the results (default label-noise)")
    p.add_argument("--rerun", action="store_true", help="run again even where a finished run is found")
    p.add_argument("train_args", nargs="*", help="after --: passed to every training run")
    args = p.parse_args(argv)
    unknown = [n for n in args.noise if n not in DESIGN]
    if unknown:
        p.error(f"--noise {unknown}: the design has {list(DESIGN)}")
    return args


def common_train_args(args) -> list[str]:
    """The flags every run shares: the plain shapes, no augmentation but the mixing, bfloat16 autocast."""
    return [
        "--shapes-style", "plain",
        "--image-size", str(args.image_size),
        "--train-size", str(args.train_size),
        "--test-size", str(args.test_size),
        "--epochs", str(args.epochs),
        "--eval-every", str(args.eval_every),
        "--threads", str(args.threads),
        "--no-augment",
        "--amp",
        *args.train_args,
    ]  # fmt: skip


def run_record(arm: str, noise: float, seed: int, report: dict) -> dict:
    """One run as the results file lists it: errors in percent, shares as fractions, the curves per scored epoch."""
    method, alpha, _ = ARMS[arm]
    scored = [h for h in report["history"] if "test_error" in h]
    best = min(scored, key=lambda h: h["test_error"])  # picked on the test set, as the paper did
    final = report["final"]
    return {
        "method": method,
        "alpha": alpha,
        "arm": arm,
        "noise": noise,
        "seed": seed,
        "last_test_error": 100 * final["test_error"],
        "best_test_error": 100 * best["test_error"],
        "best_epoch": best["epoch"],
        "train_acc_noisy": final.get("train_acc_noisy"),
        "train_acc_noisy_true": final.get("train_acc_noisy_true"),
        "corrupted_labels": report["settings"]["corrupted_labels"],
        "test_nll": final["test_nll"],
        "test_ece": final["test_ece"],
        "curve_epochs": [h["epoch"] for h in scored],
        "curve": [100 * h["test_error"] for h in scored],
        "memorisation_curve": [h["train_acc_noisy"] for h in scored] if noise > 0 else [],
        "run_s": run_s(report),
    }


def describe(record: dict) -> str:
    """One line per finished run."""
    memorised = record["train_acc_noisy"]
    return (
        f"{record['noise']:4.0%} {record['arm']:10s} seed {record['seed']}: last {record['last_test_error']:.2f}%  "
        f"best {record['best_test_error']:.2f}% (epoch {record['best_epoch']})"
        + (f"  corrupted labels fit {100 * memorised:.1f}%" if memorised is not None else "")
        + f"  ({record['run_s']:.0f} s)"
    )


def summarise_arms(runs: list[dict]) -> list[dict]:
    """Mean, standard deviation and every seed's value of each measure, per (noise, arm), in the design's order."""
    rows = []
    for noise, arms in DESIGN.items():
        for arm in arms:
            rs = [r for r in runs if r["noise"] == noise and r["arm"] == arm]
            if not rs:
                continue
            keys = ["last_test_error", "best_test_error", "test_nll", "test_ece"]
            keys += ["train_acc_noisy", "train_acc_noisy_true"] if noise > 0 else []
            row = {"noise": noise, "arm": arm, "seeds": [r["seed"] for r in rs]}
            row.update({k: summarise([r[k] for r in rs]) for k in keys})
            row["paper_best_last"] = PAPER.get((noise, arm))
            rows.append(row)
    return rows


def check_rule(runs: list[dict]) -> dict:
    """The success rule, part by part: ERM's memorisation, then each rule arm against ERM, seed by seed."""

    def by_seed(arm, key):
        return {r["seed"]: r[key] for r in runs if r["noise"] == RULE_NOISE and r["arm"] == arm}

    erm = by_seed("ERM", "last_test_error")
    memorised = list(by_seed("ERM", "train_acc_noisy").values())
    parts = {"erm_memorised_mean": statistics.fmean(memorised) if memorised else None}
    held = bool(memorised) and parts["erm_memorised_mean"] >= RULE_MEMORISED
    for arm in RULE_ARMS:
        mix = by_seed(arm, "last_test_error")
        seeds = sorted(set(mix) & set(erm))
        if len(seeds) < 2:
            parts[arm] = {"held": False, "why": "fewer than two seeds with both arms"}
            held = False
            continue
        e, m = [erm[s] for s in seeds], [mix[s] for s in seeds]
        pooled = math.sqrt((statistics.variance(e) + statistics.variance(m)) / 2)
        margin = statistics.fmean(e) - statistics.fmean(m)
        every_seed = all(ms < es for es, ms in zip(e, m, strict=True))
        ok = margin > RULE_SDS * pooled and every_seed
        parts[arm] = {"margin": margin, "pooled_std": pooled, "every_seed_lower": every_seed, "held": ok}
        held = held and ok
    return {"rule": RULE, "held": held, "parts": parts}


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm

    if args.runs is None:
        args.runs = os.path.join(HERE, "runs", args.name)
    common = common_train_args(args)
    plan = [(n, a, s) for s in args.seeds for n in args.noise for a in DESIGN[n] if a in args.arms]  # seeds outer
    git = git_state()  # at start: the code that ran
    t_start = time.perf_counter()
    bar = tqdm(total=len(plan), desc="label noise", unit="run")

    def one(job):
        noise, arm, seed = job
        train_args = [*common, *ARMS[arm][2], "--label-noise", str(noise), "--seed", str(seed)]
        name = f"noise{round(100 * noise)}-{arm.lower().replace(' ', '').replace('=', '')}-seed{seed}"
        report = run_train(os.path.join(args.runs, name), train_args, args.rerun)
        return run_record(arm, noise, seed, report), report

    runs, first_report = [], None
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for record, report in pool.map(one, plan):
            runs.append(record)
            first_report = first_report or report
            bar.write(describe(record))
            bar.update()
    bar.close()

    results = {
        "command": shlex.join(["python", "examples/label_noise.py", *sys.argv[1:]]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": first_report["environment"]["machine"],
        "commit": git["commit"],
        "uncommitted_changes": git["uncommitted"],
        "environment": first_report["environment"],
        "wall_s": time.perf_counter() - t_start,  # of this invocation (runs found finished are reused, not timed)
        "compute_s": sum(r["run_s"] for r in runs),
        "jobs": args.jobs,
        "settings": {
            **run_settings(first_report),
            "train_args": common,
            "epochs": args.epochs,
            "seeds": args.seeds,
            "arms": {a: ARMS[a][2] for a in args.arms},
            "design": {str(n): [a for a in DESIGN[n] if a in args.arms] for n in args.noise},
        },
        "success": check_rule(runs),
        "summary": summarise_arms(runs),
        "runs": runs,
    }
    base = write_results(results, args.out, args.name, to_markdown)
    plot(results, base + ".png")
    print(f"wrote {base}.md, {base}.json, {base}.png ({results['wall_s'] / 60:.1f} min)")
    return results


if __name__ == "__main__":
    main()
