"""The table and the plot of examples/label_noise.py, from its results (``label-noise.json``)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from experiment import plot_band, save_figure  # noqa: E402

COLOURS = {
    "ERM": "tab:gray",
    "Mixup a=1": "tab:cyan",
    "Mixup a=8": "tab:blue",
    "Mixup a=32": "tab:purple",
    "CutMix a=1": "tab:orange",
}


def cell(stats: dict, scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std (seed values)`` of a summarised measure."""
    seeds = ", ".join(f"{scale * v:.{digits}f}" for v in stats["values"])
    return f"{scale * stats['mean']:.{digits}f} ± {scale * stats['std']:.{digits}f} ({seeds})"


def rule_lines(success: dict) -> list[str]:
    """The success rule, its verdict, and each part's figures."""
    parts = success["parts"]
    memorised = parts["erm_memorised_mean"]
    lines = [
        f"**Success rule** (fixed before the run): {success['rule']}",
        "",
        f"**Held: {'yes' if success['held'] else 'no'}.** ERM reproduces "
        + (f"{100 * memorised:.1f} %" if memorised is not None else "(not run)")
        + " of the corrupted labels"
        + "".join(
            f"; {arm}: ERM minus it = {p['margin']:.2f} points, pooled std {p['pooled_std']:.2f} "
            f"({p['margin'] / p['pooled_std'] if p['pooled_std'] else float('inf'):.1f} of them), "
            f"lower in every seed: {'yes' if p['every_seed_lower'] else 'no'}"
            if "margin" in p
            else f"; {arm}: {p['why']}"
            for arm, p in parts.items()
            if arm != "erm_memorised_mean"
        )
        + ".",
        "",
    ]
    return lines


def to_markdown(res: dict, plot_name: str) -> str:
    """The results as markdown: provenance, settings, the rule and its verdict, the table beside the paper's."""
    s, env = res["settings"], res["environment"]
    dirty = {}  # top-level folder: files with uncommitted changes
    for path in res["uncommitted_changes"]:
        top = path.split("/")[0] + ("/" if "/" in path else "")
        dirty[top] = dirty.get(top, 0) + 1
    lines = [
        "# Corrupted labels: ERM memorises them, Mixup resists",
        "",
        f"`{res['command']}` -- {res['date']}; commit `{res['commit']}`"
        + (" with uncommitted changes in " + ", ".join(f"`{d}` ({n})" for d, n in dirty.items()) if dirty else "")
        + f". {res['wall_s'] / 60:.1f} min wall clock for {len(res['runs'])} runs, {res['jobs']} at a time "
        f"({res['compute_s'] / 60:.1f} min on the runs' own clocks).",
        "",
        f"Machine: {res['machine']}; torch {env['torch']}, {env['torch_threads']} thread(s) per run. "
        f"Data: {s['dataset']}, no augmentation but the mixing. Model: pre-activation ResNet, widths "
        f"{s['width']}/{2 * s['width']}/{4 * s['width']}, {s['blocks']} block(s) per stage. {s['epochs']} epochs, "
        f"batch {s['batch_size']}, SGD (Nesterov, lr {s['lr']}, cosine, 1 warm-up epoch), weight decay "
        f"{s['weight_decay']}, bfloat16 autocast. Seeds {', '.join(map(str, s['seeds']))}: initial weights, data "
        "order, mixing draws and which labels are corrupted (the same for every arm of a seed). Every run: "
        f"`{' '.join(s['train_args'])}`.",
        "",
        *rule_lines(res["success"]),
        "| noise | method | last-epoch test error (%) | best-epoch test error (%) | corrupted labels predicted "
        "as given (%) | ... as their true class (%) | test NLL | ECE (%) | paper: best / last (%) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in res["summary"]:
        noisy = "train_acc_noisy" in row
        paper = row["paper_best_last"]
        lines.append(
            f"| {row['noise']:.0%} | {row['arm']} | {cell(row['last_test_error'])} | {cell(row['best_test_error'])} | "
            + (
                f"{cell(row['train_acc_noisy'], 100)} | {cell(row['train_acc_noisy_true'], 100)} | "
                if noisy
                else "- | - | "
            )
            + f"{cell(row['test_nll'], 1, 2)} | {cell(row['test_ece'], 100)} | "
            + (f"{paper[0]} / {paper[1]} |" if paper else "|")
        )
    lines += [
        "",
        "Mean ± standard deviation over the seeds, every seed's value in brackets. The best epoch is picked on the "
        "test set, as the paper did; it is an optimistic figure. *Corrupted labels* are the training labels the "
        "noise changed (a random class equal to the true one is no corruption); they are scored on the training "
        "images without mixing. The paper: Zhang et al., ICLR 2018, Table 2 (CIFAR-10, PreAct ResNet-18, "
        "200 epochs; mixup alpha 8 at 20 %, 32 at 50 %).",
        "",
        f"![test error per epoch and corrupted labels reproduced, per arm]({plot_name})",
        "",
    ]
    return "\n".join(lines)


def plot(res: dict, path: str):
    """Per share of noise, test error per epoch (top) and the share of corrupted labels reproduced (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    noises = list(dict.fromkeys(r["noise"] for r in res["runs"]))
    fig, axes = plt.subplots(2, len(noises), figsize=(5.2 * len(noises), 7.2), squeeze=False)
    for col, noise in enumerate(noises):
        top, bottom = axes[0, col], axes[1, col]
        for arm in dict.fromkeys(r["arm"] for r in res["runs"] if r["noise"] == noise):
            rs = [r for r in res["runs"] if r["noise"] == noise and r["arm"] == arm]
            colour = COLOURS.get(arm, "tab:green")
            plot_band(top, rs[0]["curve_epochs"], [r["curve"] for r in rs], arm, colour)
            if noise > 0:
                curves = [[100 * v for v in r["memorisation_curve"]] for r in rs]
                plot_band(bottom, rs[0]["curve_epochs"], curves, arm, colour)
        top.set_title(f"{noise:.0%} of the labels corrupted: test error (%)")
        top.grid(alpha=0.3)
        top.legend(fontsize=8)
        if noise > 0:
            bottom.set_title("corrupted training labels predicted as given (%)")
            bottom.set_xlabel("epoch")
            bottom.set_ylim(0, 100)
            bottom.grid(alpha=0.3)
        else:
            bottom.axis("off")
    s = res["settings"]
    title = (
        f"{s['dataset']}; {s['epochs']} epochs, {len(s['seeds'])} seeds (line: mean, band: min-max)\n"
        f"{res['machine']}; commit {res['commit'][:10]}"
    )
    save_figure(fig, path, title, dpi=100)
