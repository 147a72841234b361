"""Train a small pre-activation ResNet with Mixup / CutMix from ``mixup_fused``.

One process (the embedded data set, nothing to download)::

    python examples/train.py                        # mixup (alpha 1), fused backend
    python examples/train.py --backend none         # ERM: no mixing
    python examples/train.py --cutmix-alpha 1 --mixup-alpha 0
    python examples/train.py --data ~/data/cifar-10-batches-py --epochs 200

Several processes (DistributedDataParallel; gloo on CPU, nccl on GPU)::

    torchrun --nproc_per_node=2 examples/train.py --epochs 5

Each process mixes its own local batch from its own random stream, seeded
from ``--seed``, its rank and the epoch; so a resumed run (``--resume``)
continues with exactly the draws it would have made. The last lines printed
are the report: test error, NLL, expected calibration error, time per epoch,
time in augmentation per step and throughput; ``OUT/metrics.json`` holds the
same numbers and the per-epoch history, ``OUT/checkpoint.pt`` the last epoch.
``--label-noise P`` replaces a share P of the training labels by random classes
and reports how many of them the model reproduces (examples/label_noise.py).
The model, the batch pipeline, the measurements and the report are in the
``train_*.py`` files beside this one. See examples/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_data import SHAPE_STYLES, corrupt_labels, load_data  # noqa: E402
from train_distributed import (  # noqa: E402
    STREAM_AUGMENT,
    STREAM_LABEL_NOISE,
    STREAM_MIX,
    all_reduce_,
    setup_distributed,
    stream_seed,
)
from train_metrics import SectionTimer, autocast, evaluate, label_agreement  # noqa: E402
from train_model import PreActResNet  # noqa: E402
from train_pipeline import BACKENDS, BatchMaker, Mixer, loss_fn  # noqa: E402
from train_report import make_report, print_report  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data", default=None, help="CIFAR-10 folder (data_batch_1..5, test_batch) or an ImageFolder "
                   "(train/<class>/*, val/<class>/*); default: the embedded shapes")  # fmt: skip
    d.add_argument("--train-size", type=int, default=1500, help="embedded data: training images (default 1500)")
    d.add_argument("--test-size", type=int, default=2000, help="embedded data: test images (default 2000)")
    d.add_argument("--data-seed", type=int, default=0, help="embedded data: the data set's seed (default 0)")
    d.add_argument("--image-size", type=int, default=32, help="embedded data and ImageFolder: side in pixels")
    d.add_argument("--shapes-style", choices=sorted(SHAPE_STYLES), default="cluttered",
                   help="embedded data: cluttered (default), or plain: no clutter, full contrast (easier)")  # fmt: skip
    d.add_argument("--no-augment", action="store_true", help="no random crop / flip")
    d.add_argument("--label-noise", type=float, default=0.0, metavar="P",
                   help="replace a share P of the training labels by uniformly random classes (default 0)")  # fmt: skip
    m = p.add_argument_group("mixing")
    m.add_argument("--mixup-alpha", type=float, default=1.0, help="Beta(a, a) of Mixup; 0 = off (default 1)")
    m.add_argument("--cutmix-alpha", type=float, default=0.0, help="Beta(a, a) of CutMix; 0 = off (default 0)")
    m.add_argument("--mix-prob", type=float, default=1.0, help="probability to mix a batch / pair / sample")
    m.add_argument("--switch-prob", type=float, default=0.5, help="CutMix instead of Mixup, when both are on")
    m.add_argument("--mode", choices=("batch", "pair", "elem"), default="batch", help="one lam per batch/pair/sample")
    m.add_argument("--label-smoothing", type=float, default=0.0, help="eps of the smoothed targets (default 0)")
    m.add_argument("--backend", choices=BACKENDS, default="fused",
                   help="fused: mixup_fused.Mixup (C++ on CPU, Triton on CUDA); timm: timm.data.Mixup;\n"
                   "reference: mixup_fused.Mixup on the pure-PyTorch reference; none: no mixing (ERM)")  # fmt: skip
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=60)
    o.add_argument("--eval-every", type=int, default=1, metavar="N", help="score the test set every N epochs and last")
    o.add_argument("--batch-size", type=int, default=128, help="per process (default 128)")
    o.add_argument("--lr", type=float, default=0.1, help="for a global batch of 128; scaled linearly")
    o.add_argument("--weight-decay", type=float, default=5e-4)
    o.add_argument("--warmup-epochs", type=float, default=1.0)
    o.add_argument("--width", type=int, default=16, help="channels of the first stage (default 16)")
    o.add_argument("--blocks", type=int, default=1, help="blocks per stage (default 1)")
    r = p.add_argument_group("run")
    r.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    r.add_argument("--amp", action="store_true", help="autocast to bfloat16 (float16 + grad scaling where no bf16)")
    r.add_argument("--memory-format", choices=("channels_last", "contiguous"), default="channels_last",
                   help="of images and weights (default channels_last: faster convolutions on CPU)")  # fmt: skip
    r.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (default: torch's)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", default=os.path.join(HERE, "runs", "train"),
                   help="checkpoint.pt and metrics.json go here (default examples/runs/train)")  # fmt: skip
    r.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue from OUT/checkpoint.pt (or the given file) if it exists")  # fmt: skip
    r.add_argument("--stop-after", type=int, default=0, metavar="EPOCH",
                   help="stop after this epoch (e.g. for a job's time limit); go on later with --resume")  # fmt: skip
    r.add_argument("--cuda-timing", choices=("sync", "events"), default="sync", help="see SectionTimer")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if not 0.0 <= args.label_noise <= 1.0:
        p.error(f"--label-noise {args.label_noise}: a share, in [0, 1]")
    if args.backend == "timm" and args.batch_size % 2:
        p.error("--backend timm needs an even --batch-size")
    return args


def make_schedule(optimizer, steps_per_epoch: int, epochs: int, warmup_epochs: float):
    total = max(1, steps_per_epoch * epochs)
    warm = max(1, round(steps_per_epoch * warmup_epochs))

    def factor(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def save_checkpoint(path: str, state: dict):
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # never a half-written checkpoint


def main(argv=None) -> dict:
    args = parse_args(argv)
    rank, world, local_rank, device = setup_distributed(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    main_proc = rank == 0
    progress = main_proc and not args.no_progress
    log = print if main_proc else (lambda *a, **k: None)

    amp_dtype = None
    if args.amp:
        bf16_ok = device.type != "cuda" or torch.cuda.is_bf16_supported()
        amp_dtype = torch.bfloat16 if bf16_ok else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    t0 = time.perf_counter()
    ds = load_data(
        args.data,
        image_size=args.image_size,
        n_train=args.train_size,
        n_test=args.test_size,
        seed=args.data_seed,
        progress=progress,
        style=args.shapes_style,
    )
    data_s = time.perf_counter() - t0
    K = ds.num_classes
    channels_last = args.memory_format == "channels_last"
    train = BatchMaker(ds.train_x, ds.mean, ds.std, device, not args.no_augment, channels_last)
    test = BatchMaker(ds.test_x, ds.mean, ds.std, device, False, channels_last)
    train_y, test_y = ds.train_y.to(device), ds.test_y.to(device)
    clean_y, noisy_idx = train_y, None
    if args.label_noise > 0:  # drawn from rank 0's stream: every rank corrupts the same labels
        noise_seed = stream_seed(args.seed, 0, 0, STREAM_LABEL_NOISE)
        noisy_y, noisy_idx = corrupt_labels(ds.train_y, K, args.label_noise, noise_seed)
        train_y, noisy_idx = noisy_y.to(device), noisy_idx.to(device)
        unaugmented = BatchMaker(train.x, ds.mean, ds.std, device, False, channels_last)  # the same tensor

    torch.manual_seed(args.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = PreActResNet(K, args.width, args.blocks).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    ddp = (
        nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if world > 1
        else model
    )
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    lr = args.lr * args.batch_size * world / 128
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        momentum=0.9,
        nesterov=True,
    )
    sampler = DistributedSampler(
        range(len(train_y)), num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True
    )
    steps_per_epoch = len(sampler) // args.batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"--batch-size {args.batch_size} is larger than the {len(sampler)} images per process")
    scheduler = make_schedule(optimizer, steps_per_epoch, args.epochs, args.warmup_epochs)
    mixer = Mixer(args, K, device)
    aug_gen = torch.Generator(device=device)

    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    start_epoch, history = 0, []
    resume_from = ckpt_path if args.resume == "auto" else args.resume
    if resume_from and os.path.isfile(resume_from):
        # weights_only: a checkpoint is data and runs no code. It holds tensors and plain Python values only; the
        # random streams are no state of it: they are seeded again from (--seed, rank, epoch) every epoch.
        state = torch.load(resume_from, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, history = state["epoch"], state["history"]
        log(f"resumed from {resume_from} after epoch {start_epoch}")
    elif args.resume not in (None, "auto"):
        raise SystemExit(f"--resume {args.resume}: no such file")

    log(ds.describe() + (f"; {noisy_idx.numel()} training labels corrupted" if noisy_idx is not None else ""))
    log(
        f"{world} process(es) on {device}, backend {mixer.backend}, mixup_alpha {args.mixup_alpha}, "
        f"cutmix_alpha {args.cutmix_alpha}, mode {args.mode}, label_smoothing {args.label_smoothing}, "
        f"batch {args.batch_size} x {world}, lr {lr:g}, {args.epochs} epochs"
    )

    timer = SectionTimer(device, args.cuda_timing)
    for epoch in range(start_epoch, args.epochs):
        sampler.set_epoch(epoch)
        mixer.reseed(stream_seed(args.seed, rank, epoch, STREAM_MIX))
        aug_gen.manual_seed(stream_seed(args.seed, rank, epoch, STREAM_AUGMENT))
        order = torch.tensor(list(sampler), dtype=torch.int64).to(device)
        timer.reset()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_epoch = time.perf_counter()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", disable=not progress, leave=False)
        for step in bar:
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            with timer.section("data"):
                x = train(idx, aug_gen)
                y = train_y.index_select(0, idx)
            with timer.section("augment"):
                x, target = mixer(x, y)
            with timer.section("compute"):
                with autocast(device, amp_dtype):
                    logits = ddp(x)
                loss = loss_fn(logits, target, args.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += loss.detach()
            if progress and (step % 10 == 0 or step == steps_per_epoch - 1):
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s = time.perf_counter() - t_epoch
        timer.flush()
        stopping = epoch + 1 == args.stop_after and epoch + 1 < args.epochs
        metrics, eval_s = {}, 0.0
        if epoch + 1 == args.epochs or stopping or (epoch + 1) % args.eval_every == 0:
            t_eval = time.perf_counter()
            if world > 1:  # every rank scores with rank 0's BatchNorm statistics (as DDP's next forward would)
                for buf in model.buffers():
                    dist.broadcast(buf, 0)
            metrics = evaluate(model, test, test_y, rank, world, amp_dtype)
            if noisy_idx is not None and noisy_idx.numel():  # the images whose label was changed: predicted as?
                labels = {"train_acc_noisy": train_y, "train_acc_noisy_true": clean_y}
                metrics.update(label_agreement(model, unaugmented, noisy_idx, labels, rank, world, amp_dtype))
            eval_s = time.perf_counter() - t_eval
        # Averages over ranks: the loss, and the time each section took per step.
        stats = torch.tensor(
            [loss_sum.item() / steps_per_epoch, train_s]
            + [sum(timer.steps.get(k, [0.0])) / steps_per_epoch for k in ("data", "augment", "compute")]
            + [statistics.median(timer.steps.get("augment", [0.0]))],
            dtype=torch.float64,
            device=device,
        )
        all_reduce_(stats, world)
        stats = (stats / world).tolist()
        row = {
            "epoch": epoch + 1,
            "train_loss": stats[0],
            **metrics,
            "train_s": stats[1],
            "eval_s": eval_s,
            "data_ms_per_step": 1e3 * stats[2],
            "augment_ms_per_step": 1e3 * stats[3],
            "compute_ms_per_step": 1e3 * stats[4],
            "augment_ms_per_step_median": 1e3 * stats[5],
            "images_per_s": steps_per_epoch * args.batch_size * world / stats[1],
        }
        history.append(row)
        scores = (
            f"test error {100 * row['test_error']:.2f}%  NLL {row['test_nll']:.4f}  ECE {100 * row['test_ece']:.2f}%  "
            if metrics
            else ""
        )
        if "train_acc_noisy" in row:
            scores += f"corrupted labels fit {100 * row['train_acc_noisy']:.1f}%  "
        log(
            f"epoch {epoch + 1:3d}/{args.epochs}  loss {row['train_loss']:.4f}  {scores}"
            f"{row['train_s']:.1f}s  aug {row['augment_ms_per_step']:.3f} ms/step"
        )
        if main_proc:
            save_checkpoint(
                ckpt_path,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "args": vars(args),
                },
            )
        if stopping:
            log(f"stopping after epoch {epoch + 1} (--stop-after); continue with --resume")
            break

    corrupted = 0 if noisy_idx is None else noisy_idx.numel()
    report = make_report(args, ds, world, device, mixer.backend, amp_dtype, history, data_s, corrupted)
    if main_proc:
        with open(os.path.join(args.out, "metrics.json"), "w") as f:
            json.dump(report, f, indent=2)
        print_report(report)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return report


if __name__ == "__main__":
    main()
