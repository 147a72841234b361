"""The label-noise experiment (examples/label_noise.py): the corruption, the success rule, and a smoke run.

The smoke run is the real command on a tiny budget (128 images of 12x12, a
width-8 network, two epochs, ERM and Mixup side by side): it checks the results
files and their fields, not the science.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def load_example(name: str):
    """A module of examples/ by file name (they import their neighbours from examples/)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_corrupt_labels():
    """round(share * N) labels are redrawn uniformly from all classes, deterministically; the rest keep theirs."""
    data = load_example("train_data")
    labels = torch.arange(2000) % 10
    noisy, changed = data.corrupt_labels(labels, 10, 0.5, seed=3)
    again, changed_again = data.corrupt_labels(labels, 10, 0.5, seed=3)
    assert torch.equal(noisy, again) and torch.equal(changed, changed_again)
    assert noisy.dtype == labels.dtype and noisy.shape == labels.shape
    assert torch.equal(changed, torch.nonzero(noisy != labels).flatten())
    # 1000 redrawn, about one in ten of them to its own class: about 900 changed.
    assert 840 <= changed.numel() <= 960
    counts = torch.bincount(noisy[changed], minlength=10)
    assert counts.min() > 50  # every class is a target of the noise
    other, _ = data.corrupt_labels(labels, 10, 0.5, seed=4)
    assert not torch.equal(noisy, other)
    assert data.corrupt_labels(labels, 10, 0.0, seed=3)[1].numel() == 0
    with pytest.raises(ValueError, match="share of corrupted labels"):
        data.corrupt_labels(labels, 10, 1.5, seed=3)


def fake_run(arm: str, seed: int, last: float, memorised: float = 0.1) -> dict:
    return {"noise": 0.5, "arm": arm, "seed": seed, "last_test_error": last, "train_acc_noisy": memorised}


def test_success_rule():
    """Held only when ERM memorises and both rule arms beat it by > 3 pooled std, in every seed."""
    ln = load_example("label_noise")
    erm = [fake_run("ERM", s, 70.0 + s % 2, memorised=0.99) for s in range(5)]
    good = [fake_run(arm, s, 60.0 + s % 2) for arm in ln.RULE_ARMS for s in range(5)]
    assert ln.check_rule(erm + good)["held"]

    close = [fake_run(ln.RULE_ARMS[0], s, 69.5 + s % 2) for s in range(5)] + good[5:]
    result = ln.check_rule(erm + close)
    assert not result["held"] and not result["parts"][ln.RULE_ARMS[0]]["held"]

    one_seed_worse = [dict(r) for r in good]
    one_seed_worse[0]["last_test_error"] = 75.0
    assert not ln.check_rule(erm + one_seed_worse)["held"]

    not_memorised = [dict(r, train_acc_noisy=0.5) for r in erm]
    assert not ln.check_rule(not_memorised + good)["held"]


def test_label_noise_smoke(tmp_path):
    """The experiment end to end on a tiny budget: results files, their fields, loadable checkpoints."""
    out, runs = tmp_path / "results", tmp_path / "runs"
    cmd = [
        sys.executable, str(EXAMPLES / "label_noise.py"),
        "--noise", "0.5", "--arms", "ERM", "Mixup a=8", "--seeds", "0",
        "--epochs", "2", "--eval-every", "1", "--train-size", "128", "--test-size", "40", "--image-size", "12",
        "--jobs", "2", "--out", str(out), "--runs", str(runs),
        "--", "--batch-size", "32", "--width", "8", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )

    with open(out / "label-noise.json") as f:
        res = json.load(f)
    assert "cores" in res["machine"] and len(res["commit"]) >= 7
    assert isinstance(res["success"]["held"], bool) and res["success"]["rule"]
    assert len(res["runs"]) == 2
    for run in res["runs"]:
        assert run["method"] in ("erm", "mixup") and run["alpha"] == (0.0 if run["method"] == "erm" else 8.0)
        assert run["noise"] == 0.5 and run["seed"] == 0
        assert 0 <= run["best_test_error"] <= run["last_test_error"] <= 100
        assert 0.0 <= run["train_acc_noisy"] <= 1.0 and 0.0 <= run["train_acc_noisy_true"] <= 1.0
        assert run["corrupted_labels"] > 0
        assert len(run["curve"]) == len(run["curve_epochs"]) == len(run["memorisation_curve"]) == 2
    assert [(row["noise"], row["arm"]) for row in res["summary"]] == [(0.5, "ERM"), (0.5, "Mixup a=8")]

    markdown = (out / "label-noise.md").read_text()
    assert "Success rule" in markdown and "| 50% | Mixup a=8 |" in markdown
    assert (out / "label-noise.png").stat().st_size > 10_000

    # A run's checkpoint is plain data: --resume loads it with weights_only=True.
    checkpoint = next(runs.glob("*/checkpoint.pt"))
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == 2 and "optimizer" in state and "scheduler" in state
