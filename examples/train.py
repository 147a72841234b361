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
See examples/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_data import load_data  # noqa: E402

import mixup_fused  # noqa: E402

BACKENDS = ("fused", "timm", "reference", "none")
ECE_BINS = 15

# Purposes of the per-rank random streams (one seed per purpose, rank and epoch).
STREAM_MIX, STREAM_AUGMENT = 1, 2


# ----------------------------------------------------------------------------
# Model: a pre-activation ResNet (He et al. 2016), as in the Mixup paper, only smaller
# ----------------------------------------------------------------------------


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Three stages of ``blocks`` pre-activation blocks, widths ``w, 2w, 4w``.

    ``width=64, blocks=2`` with a fourth stage is the paper's PreAct ResNet-18;
    the default (``width=16, blocks=1``) trains on a laptop CPU in minutes."""

    def __init__(self, num_classes: int, width: int = 16, blocks: int = 1):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        layers, cin = [], width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                layers.append(PreActBlock(cin, cout, 2 if stage > 0 and b == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.relu(self.bn(self.layers(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


# ----------------------------------------------------------------------------
# Distributed set-up
# ----------------------------------------------------------------------------


def setup_distributed(device_arg: str):
    """(rank, world_size, local_rank, device). Under torchrun: one process group (nccl on CUDA, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg == "auto":
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_arg)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=10), **kwargs)
    return rank, world, local_rank, device


def stream_seed(seed: int, rank: int, epoch: int, purpose: int) -> int:
    """A 63-bit seed of its own for each (global seed, rank, epoch, purpose)."""
    state = np.random.SeedSequence([seed, rank, epoch, purpose]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & ((1 << 63) - 1)


def all_reduce_(t: torch.Tensor, world: int, op=None) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


# ----------------------------------------------------------------------------
# Mixing: our Mixup, timm's, or none
# ----------------------------------------------------------------------------


def load_timm_mixup():
    """timm's ``Mixup`` class, loaded from its file: ``import timm`` would import torchvision."""
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("--backend timm needs timm installed (pip install --no-deps timm)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "mixup.py")
    mod_spec = importlib.util.spec_from_file_location("_timm_data_mixup", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.Mixup


class Mixer:
    """The ``--backend`` choice behind one call: ``(x, class ids) -> (x, targets)``.

    ``targets`` are soft ``[B, K]`` rows, or the class ids themselves when
    nothing is mixed (``--backend none`` or both alphas 0): the loss then is
    plain cross-entropy with ``label_smoothing``.
    """

    def __init__(self, args, num_classes: int, device: torch.device):
        self.backend = args.backend
        if args.mixup_alpha <= 0 and args.cutmix_alpha <= 0:
            self.backend = "none"
        self.device = device
        kwargs = dict(
            mixup_alpha=args.mixup_alpha,
            cutmix_alpha=args.cutmix_alpha,
            prob=args.mix_prob,
            switch_prob=args.switch_prob,
            mode=args.mode,
            label_smoothing=args.label_smoothing,
            num_classes=num_classes,
        )
        if self.backend == "timm":
            self.mixup = load_timm_mixup()(**kwargs)
        elif self.backend in ("fused", "reference"):
            # A generator on the batch's device: the draws need no host round trip.
            self.generator = torch.Generator(device=device)
            self.mixup = mixup_fused.Mixup(
                **kwargs, generator=self.generator, backend="auto" if self.backend == "fused" else "reference"
            )
        else:
            self.mixup = None

    def reseed(self, seed: int):
        if self.backend == "timm":
            np.random.seed(seed % 2**32)  # timm draws from numpy's global RNG
        elif self.mixup is not None:
            self.generator.manual_seed(seed)

    def __call__(self, x, y):
        if self.mixup is None:
            return x, y
        return self.mixup(x, y)


def loss_fn(logits, target, label_smoothing: float):
    if target.dim() == 1:  # class ids: nothing was mixed
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    return mixup_fused.soft_target_cross_entropy(logits.float(), target)


# ----------------------------------------------------------------------------
# Input pipeline: uint8 batches on the device, random crop + flip, normalise
# ----------------------------------------------------------------------------


class BatchMaker:
    def __init__(self, x_u8, mean, std, device, augment: bool, channels_last: bool):
        self.x = x_u8.to(device)  # the whole (small) data set lives on the device
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.inv_std = 1.0 / torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.augment = augment
        self.channels_last = channels_last
        self.pad = 4

    def __call__(self, idx: torch.Tensor, gen: torch.Generator | None = None):
        x = self.x.index_select(0, idx)
        if self.augment:
            x = self.crop_flip(x, gen)
        x = (x.float() - self.mean) * self.inv_std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def crop_flip(self, x: torch.Tensor, gen):
        """Random crops of the zero-padded images and horizontal flips, one draw per image, vectorised."""
        B, C, H, W = x.shape
        p, dev = self.pad, x.device
        xp = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (B, 1), device=dev, generator=gen)
        ox = torch.randint(0, 2 * p + 1, (B, 1), device=dev, generator=gen)
        flip = torch.rand(B, 1, device=dev, generator=gen) < 0.5
        cols = torch.arange(W, device=dev).expand(B, W)
        cols = torch.where(flip, W - 1 - cols, cols) + ox
        rows = torch.arange(H, device=dev).expand(B, H) + oy
        b = torch.arange(B, device=dev).view(B, 1, 1, 1)
        c = torch.arange(C, device=dev).view(1, C, 1, 1)
        return xp[b, c, rows.view(B, 1, H, 1), cols.view(B, 1, 1, W)]


# ----------------------------------------------------------------------------
# Timing: host clocks with a device sync around each section on CUDA
# ----------------------------------------------------------------------------


class SectionTimer:
    """Seconds per named section of a step.

    On CPU a section is host wall time. On CUDA, ``mode='sync'`` synchronises
    the device before and after the section (exact wall time attributed to
    the section, at the price of a few syncs per step); ``mode='events'``
    records CUDA events instead and adds up their GPU-side times at
    :meth:`flush` (no sync inside the step; a section's time then includes
    any GPU idle time between its events)."""

    def __init__(self, device: torch.device, mode: str = "sync"):
        self.cuda = device.type == "cuda"
        self.mode = mode if self.cuda else "host"
        self.steps: dict[str, list[float]] = {}
        self._pending: list[tuple[str, object, object]] = []

    @contextlib.contextmanager
    def section(self, name: str):
        if self.mode == "events":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._pending.append((name, start, end))
            return
        if self.mode == "sync":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        yield
        if self.mode == "sync":
            torch.cuda.synchronize()
        self.steps.setdefault(name, []).append(time.perf_counter() - t0)

    def flush(self):
        if self._pending:
            torch.cuda.synchronize()
            for name, start, end in self._pending:
                self.steps.setdefault(name, []).append(start.elapsed_time(end) / 1000.0)
            self._pending.clear()

    def reset(self):
        self.flush()
        self.steps = {}


# ----------------------------------------------------------------------------
# Evaluation: error, NLL, expected calibration error
# ----------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model, data: BatchMaker, y_all: torch.Tensor, rank: int, world: int, amp_dtype, batch_size: int = 500):
    """Each rank scores test images ``rank, rank + world, ...`` (no padding, no duplicates); sums are all-reduced."""
    model.eval()
    dev = data.x.device
    idx_all = torch.arange(rank, y_all.shape[0], world, device=dev)
    # [nll sum, correct, count] and per confidence bin [count, confidence sum, correct]
    totals = torch.zeros(3, dtype=torch.float64, device=dev)
    bins = torch.zeros(3, ECE_BINS, dtype=torch.float64, device=dev)
    for lo in range(0, idx_all.shape[0], batch_size):
        idx = idx_all[lo : lo + batch_size]
        x, y = data(idx), y_all.index_select(0, idx)
        with autocast(dev, amp_dtype):
            logits = model(x)
        logp = F.log_softmax(logits.float(), dim=1)
        conf, pred = logp.max(dim=1)
        conf = conf.exp()
        correct = (pred == y).double()
        totals += torch.stack(
            [F.nll_loss(logp, y, reduction="sum").double(), correct.sum(), torch.tensor(float(y.numel()), device=dev)]
        )
        b = (conf.double() * ECE_BINS).ceil().long().clamp(1, ECE_BINS) - 1  # bins (k/15, (k+1)/15]
        bins[0].index_add_(0, b, torch.ones_like(correct))
        bins[1].index_add_(0, b, conf.double())
        bins[2].index_add_(0, b, correct)
    all_reduce_(totals, world)
    all_reduce_(bins, world)
    model.train()
    nll, correct, n = totals.tolist()
    count, conf_sum, acc_sum = bins
    ece = float(((conf_sum - acc_sum).abs()).sum() / n)  # sum_b n_b / N * |conf_b - acc_b|
    return {"test_error": 1.0 - correct / n, "test_nll": nll / n, "test_ece": ece, "test_images": int(n)}


def autocast(device: torch.device, amp_dtype):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--data", default=None, help="CIFAR-10 folder (data_batch_1..5, test_batch) or an ImageFolder "
                   "(train/<class>/*, val/<class>/*); default: the embedded shapes")  # fmt: skip
    d.add_argument("--train-size", type=int, default=1500, help="embedded data: training images (default 1500)")
    d.add_argument("--test-size", type=int, default=2000, help="embedded data: test images (default 2000)")
    d.add_argument("--data-seed", type=int, default=0, help="embedded data: the data set's seed (default 0)")
    d.add_argument("--image-size", type=int, default=32, help="embedded data and ImageFolder: side in pixels")
    d.add_argument("--no-augment", action="store_true", help="no random crop / flip")
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


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), platform.machine())
    except OSError:
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores"


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
    )
    data_s = time.perf_counter() - t0
    K = ds.num_classes
    channels_last = args.memory_format == "channels_last"
    train = BatchMaker(ds.train_x, ds.mean, ds.std, device, not args.no_augment, channels_last)
    test = BatchMaker(ds.test_x, ds.mean, ds.std, device, False, channels_last)
    train_y, test_y = ds.train_y.to(device), ds.test_y.to(device)

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
        state = torch.load(resume_from, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, history = state["epoch"], state["history"]
        log(f"resumed from {resume_from} after epoch {start_epoch}")
    elif args.resume not in (None, "auto"):
        raise SystemExit(f"--resume {args.resume}: no such file")

    log(ds.describe())
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

    report = make_report(args, ds, world, device, mixer.backend, amp_dtype, history, data_s)
    if main_proc:
        with open(os.path.join(args.out, "metrics.json"), "w") as f:
            json.dump(report, f, indent=2)
        print_report(report)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return report


def make_report(args, ds, world, device, backend, amp_dtype, history, data_s) -> dict:
    last = history[-1] if history else {}
    # Epochs run in this process (a resumed run's earlier epochs are in the history too); skip the first, warm-up.
    timed = history[1:] if len(history) > 1 else history

    def mean(key):
        return statistics.fmean(r[key] for r in timed) if timed else float("nan")

    return {
        "final": {k: last.get(k) for k in ("epoch", "test_error", "test_nll", "test_ece", "test_images")},
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
    f, t, s = report["final"], report["timing"], report["settings"]
    step = t["data_ms_per_step"] + t["augment_ms_per_step"] + t["compute_ms_per_step"]
    share = 100 * t["augment_ms_per_step"] / step if step > 0 else 0.0
    lines = [
        f"== report: {s['dataset']}; {s['world_size']} process(es) on {s['device']}; backend {s['backend_used']} ==",
        f"test error          {100 * f['test_error']:.2f} %  ({f['test_images']} images, epoch {f['epoch']})",
        f"test NLL            {f['test_nll']:.4f}",
        f"ECE ({ECE_BINS} bins)        {100 * f['test_ece']:.2f} %",
        f"time per epoch      {t['epoch_s']:.2f} s  (train {t['train_s_per_epoch']:.2f} s, "
        f"eval {t['eval_s_per_epoch']:.2f} s; mean over {t['epochs_timed']} epoch(s))",
        f"  per step          data {t['data_ms_per_step']:.3f} ms | augmentation {t['augment_ms_per_step']:.3f} ms "
        f"(median {t['augment_ms_per_step_median']:.3f}, {share:.1f}% of the step) | "
        f"forward+backward+update {t['compute_ms_per_step']:.3f} ms",
        f"throughput          {t['images_per_s']:.0f} train images/s (all processes)",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
