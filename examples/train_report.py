"""The report of the training example: what ``metrics.json`` holds and the lines printed at the end."""

from __future__ import annotations

import os
import platform
import statistics

import torch
from train_distributed import STREAM_MIX, stream_seed
from train_metrics import ECE_BINS

import mixup_fused


def machine() -> str:
    """The CPU model (from /proc/cpuinfo where there is one) and the number of cores."""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.machine())
    except OSError:
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores"


def make_report(args, ds, world, device, backend, amp_dtype, history, data_s, corrupted_labels: int = 0) -> dict:
    """Final scores, timings (mean over the epochs after the first), settings, environment and the history."""
    last = history[-1] if history else {}
    # Epochs run in this process (a resumed run's earlier epochs are in the history too); skip the first, warm-up.
    timed = history[1:] if len(history) > 1 else history

    def mean(key):
        return statistics.fmean(r[key] for r in timed) if timed else float("nan")

    return {
        "final": {
            k: last.get(k)
            for k in ("epoch", "test_error", "test_nll", "test_ece", "test_images")
            + (("train_acc_noisy", "train_acc_noisy_true") if corrupted_labels else ())
        },
        "timing": {
            "epoch_s": mean("train_s") + mean("eval_s"),
            "train_s_per_epoch": mean("train_s"),
            "eval_s_per_epoch": mean("eval_s"),  # amortised over the epochs when --eval-every > 1
            "data_ms_per_step": mean("data_ms_per_step"),
            "augment_ms_per_step": mean("augment_ms_per_step"),
            "augment_ms_per_step_median": mean("augment_ms_per_step_median"),
            "compute_ms_per_step": mean("compute_ms_per_step"),
            "images_per_s": mean("images_per_s"),
            "data_load_s": data_s,
            "epochs_timed": len(timed),
            "cuda_timing": args.cuda_timing if device.type == "cuda" else "host clock",
        },
        "settings": {
            **vars(args),
            "backend_used": backend,
            "corrupted_labels": corrupted_labels,
            "dataset": ds.describe(),
            "world_size": world,
            "device": str(device),
            "amp_dtype": str(amp_dtype) if amp_dtype else None,
            "mix_seeds_epoch0": [stream_seed(args.seed, r, 0, STREAM_MIX) for r in range(world)],
        },
        "environment": {
            "machine": machine() if device.type == "cpu" else torch.cuda.get_device_name(device),
            "torch": torch.__version__,
            "mixup_fused": mixup_fused.__version__,
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
        },
        "history": history,
    }


def print_report(report: dict):
    """The report's lines: test error, NLL, ECE, (corrupted labels,) time per epoch and step, throughput."""
    f, t, s = report["final"], report["timing"], report["settings"]
    step = t["data_ms_per_step"] + t["augment_ms_per_step"] + t["compute_ms_per_step"]
    share = 100 * t["augment_ms_per_step"] / step if step > 0 else 0.0
    lines = [
        f"== report: {s['dataset']}; {s['world_size']} process(es) on {s['device']}; backend {s['backend_used']} ==",
        f"test error          {100 * f['test_error']:.2f} %  ({f['test_images']} images, epoch {f['epoch']})",
        f"test NLL            {f['test_nll']:.4f}",
        f"ECE ({ECE_BINS} bins)        {100 * f['test_ece']:.2f} %",
    ]
    if s["corrupted_labels"]:
        lines.append(
            f"corrupted labels    {100 * f['train_acc_noisy']:.1f} % of the {s['corrupted_labels']} changed training "
            f"labels predicted as given, {100 * f['train_acc_noisy_true']:.1f} % as their true class"
        )
    lines += [
        f"time per epoch      {t['epoch_s']:.2f} s  (train {t['train_s_per_epoch']:.2f} s, "
        f"eval {t['eval_s_per_epoch']:.2f} s; mean over {t['epochs_timed']} epoch(s))",
        f"  per step          data {t['data_ms_per_step']:.3f} ms | augmentation {t['augment_ms_per_step']:.3f} ms "
        f"(median {t['augment_ms_per_step_median']:.3f}, {share:.1f}% of the step) | "
        f"forward+backward+update {t['compute_ms_per_step']:.3f} ms",
        f"throughput          {t['images_per_s']:.0f} train images/s (all processes)",
    ]
    print("\n".join(lines), flush=True)
