"""The training example (examples/train.py): one process, checkpoint/resume, and two processes under torchrun.

Each run is tiny (256 images of 16x16, a width-8 network, one thread per
process) so the whole module stays well under a minute on a CPU.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "examples" / "train.py"

TINY = [
    "--train-size", "256",
    "--test-size", "120",
    "--image-size", "16",
    "--batch-size", "32",
    "--width", "8",
    "--threads", "1",
    "--device", "cpu",  # also on GPU machines: two ranks on one GPU would not make an NCCL group
    "--no-progress",
]  # fmt: skip


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_train(args, out: Path, nproc: int | None = None, timeout: float = 120.0) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if nproc:
        launcher = [
            sys.executable, "-m", "torch.distributed.run",
            "--nnodes", "1",
            "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()),
        ]  # fmt: skip
    else:
        launcher = [sys.executable]
    cmd = [*launcher, str(TRAIN), *TINY, *args, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )
    with open(out / "metrics.json") as f:
        report = json.load(f)
    report["stdout"] = proc.stdout
    return report


def check_report(report: dict, epochs: int, world: int):
    final, timing, settings = report["final"], report["timing"], report["settings"]
    assert final["epoch"] == epochs
    assert final["test_images"] == 120  # every test image scored once, whatever the number of processes
    assert 0.0 <= final["test_error"] <= 1.0
    assert math.isfinite(final["test_nll"]) and final["test_nll"] > 0
    assert 0.0 <= final["test_ece"] <= 1.0
    assert settings["world_size"] == world
    assert len(report["history"]) == epochs
    for key in ("epoch_s", "augment_ms_per_step", "compute_ms_per_step", "data_ms_per_step", "images_per_s"):
        assert math.isfinite(timing[key]) and timing[key] >= 0, key
    for line in ("test error", "test NLL", "ECE (15 bins)", "time per epoch", "augmentation", "throughput"):
        assert line in report["stdout"], line


def test_single_process_and_exact_resume(tmp_path):
    """Two epochs in one go == one epoch, stop, resume for the second: the same weights and metrics."""
    mixing = ["--mixup-alpha", "1", "--cutmix-alpha", "1", "--mode", "elem", "--label-smoothing", "0.1"]
    straight = run_train([*mixing, "--epochs", "2"], tmp_path / "straight")
    check_report(straight, epochs=2, world=1)
    assert straight["settings"]["backend_used"] == "fused"
    assert (tmp_path / "straight" / "checkpoint.pt").is_file()

    first = run_train([*mixing, "--epochs", "2", "--stop-after", "1"], tmp_path / "resumed")
    assert first["final"]["epoch"] == 1
    resumed = run_train([*mixing, "--epochs", "2", "--resume"], tmp_path / "resumed")
    assert "resumed from" in resumed["stdout"]
    check_report(resumed, epochs=2, world=1)

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=lambda m, k=k: f"{k}: {m}")
    assert resumed["final"]["test_nll"] == straight["final"]["test_nll"]


def test_two_processes_torchrun_gloo(tmp_path):
    """torchrun, two CPU processes (gloo), DistributedSampler; each rank draws from its own stream."""
    report = run_train(["--epochs", "1", "--backend", "fused"], tmp_path / "ddp", nproc=2)
    check_report(report, epochs=1, world=2)
    seeds = report["settings"]["mix_seeds_epoch0"]
    assert len(seeds) == 2 and seeds[0] != seeds[1]
    assert "2 process(es)" in report["stdout"]


def test_erm_and_timm_backends(tmp_path):
    """--backend none trains with plain cross-entropy; --backend timm drives timm's Mixup."""
    erm = run_train(["--epochs", "1", "--backend", "none"], tmp_path / "erm")
    check_report(erm, epochs=1, world=1)
    assert erm["settings"]["backend_used"] == "none"
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm not installed")
    timm = run_train(["--epochs", "1", "--backend", "timm", "--cutmix-alpha", "1"], tmp_path / "timm")
    check_report(timm, epochs=1, world=1)
    assert timm["settings"]["backend_used"] == "timm"


def load_train_module():
    spec = importlib.util.spec_from_file_location("example_train", TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rank_streams_and_calibration_metrics():
    """Per-rank seeds differ by rank, epoch and purpose; NLL and ECE match a direct computation."""
    train = load_train_module()
    seeds = {train.stream_seed(7, r, e, p) for r in range(4) for e in range(3) for p in (1, 2)}
    assert len(seeds) == 24
    assert train.stream_seed(7, 1, 2, 1) == train.stream_seed(7, 1, 2, 1)

    torch.manual_seed(0)
    n, k = 300, 5
    logits = torch.randn(n, k) * 3
    y = torch.randint(0, k, (n,))

    class Fixed(torch.nn.Module):  # returns the logits of the images it is given (by index, stored in pixel 0)
        def forward(self, x):
            return logits[x[:, 0, 0, 0].round().long()]

    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    data = train.BatchMaker(images, [0.0], [1.0], torch.device("cpu"), augment=False, channels_last=False)
    got = train.evaluate(Fixed(), data, y, rank=0, world=1, amp_dtype=None, batch_size=64)

    logp = torch.log_softmax(logits.double(), 1)
    conf, pred = logp.exp().max(1)
    correct = (pred == y).double()
    ece = 0.0
    edges = torch.linspace(0, 1, 16, dtype=torch.float64)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.double().mean() * (conf[inside].mean() - correct[inside].mean()).abs()
    assert got["test_images"] == n
    assert got["test_error"] == pytest.approx(1 - correct.mean().item())
    assert got["test_nll"] == pytest.approx(torch.nn.functional.nll_loss(logp, y).item(), rel=1e-5)
    assert got["test_ece"] == pytest.approx(float(ece), rel=1e-4, abs=1e-6)


def load_data_module():
    spec = importlib.util.spec_from_file_location("example_train_data", ROOT / "examples" / "train_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_cifar_and_image_folder_readers(tmp_path):
    """--data reads torchvision's CIFAR-10 pickles and ImageFolders (PNG via Pillow, .npy) without torchvision."""
    import pickle

    import numpy as np

    data = load_data_module()
    rng = np.random.default_rng(0)
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (4, 3 * 32 * 32), dtype=np.uint8)
        y = rng.integers(0, 10, 4).tolist()
        batches[name] = (x, y)
        with open(cifar / name, "wb") as f:
            pickle.dump({"data": x, "labels": y}, f)
    with open(cifar / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    ds = data.load_data(str(tmp_path))  # finds the cifar-10-batches-py folder inside
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.classes[3] == "c3"
    first_x, first_y = batches["data_batch_1"]
    assert np.array_equal(ds.train_x[:4].numpy().reshape(4, -1), first_x)
    assert ds.train_y[:4].tolist() == first_y and ds.test_y.tolist() == batches["test_batch"][1]

    from PIL import Image

    root = tmp_path / "folder"
    for split, n in (("train", 3), ("val", 2)):
        for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40, 24), colour).save(d / f"{i}.png")
            np.save(d / "extra.npy", np.full((20, 30, 3), colour, dtype=np.uint8))
    ds = data.load_data(str(root), image_size=16)
    assert ds.classes == ("cat", "dog")
    assert ds.train_x.shape == (8, 3, 16, 16) and ds.test_x.shape == (6, 3, 16, 16)
    assert ds.train_y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    cat = ds.train_x[ds.train_y == 0]
    assert (cat[:, 0] == 255).all() and (cat[:, 2] == 0).all()
