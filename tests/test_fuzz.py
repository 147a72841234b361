"""Fuzz the public entry points with random argument combinations for a
bounded time, with a fixed seed, in a child process (a crash fails the test
cleanly, a hang is cut off by a timeout and a per-call watchdog).

Entry points: ``mix`` (every keyword), ``mix_targets``, ``mix_features``, the
registered ops ``torch.ops.mixup_fused.mix`` / ``mix_`` / ``mix_backward``,
``Mixup(...)(x, target)``, ``MixUp`` / ``CutMix`` and
``soft_target_cross_entropy``. Arguments: valid values mixed with wrong
dtypes, shapes, devices ('meta'), NaN and infinities, huge and negative
numbers, None, strings and Python containers.

Allowed outcomes: a result, or the documented TypeError / ValueError. A
RuntimeError is allowed only from PyTorch's argument parsing of the raw
registered ops (``Expected a value of type ...``: torch.ops checks the schema
before the kernel runs; that is documented PyTorch behaviour), and a
``torch.OutOfMemoryError`` / allocation failure only where the arguments ask
for more memory than exists. Everything else is reported with an example.
When ``mix`` succeeds on the C++ or Triton backend, the reference must accept
the same arguments and give the same numbers: the same bits, as
conftest.assert_matches compares them (NaN where the reference has NaN).

FUZZ_SECONDS (default 20) bounds the time, FUZZ_CALLS (default 30000) the
number of calls; FUZZ_SEED sets the seed. A failure names the call's
arguments; the same seed replays the same sequence.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "20"))
FUZZ_CALLS = int(os.environ.get("FUZZ_CALLS", "30000"))  # whichever ends first: a fixed sequence, cut by time
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20260601"))

# Known product bugs, reported, each with a strict xfail test among the
# argument-error tests (test_errors.py, test_errors_entry_points.py, where the
# fuzzer's fixed findings are too). The fuzz run does not fail on these
# signatures again, so that a new problem stands out: (entry point, regex on
# "<exception type>: <message>", bug id).
KNOWN: list[tuple[str, str, str]] = [
    # (entry points regex, exception regex, bug id): documented open bugs; none at present.
]  # fmt: skip


# ----------------------------------------------------------------------------
# The child: argument generators and the loop
# ----------------------------------------------------------------------------


def _child(seconds: float, seed: int, max_calls: int) -> None:  # noqa: C901 - one loop, many generators
    import faulthandler

    import numpy as np
    import torch

    import mixup_fused as mf
    from mixup_fused.reference import NO_BOX

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from conftest import bits, max_ulps, ulp_distance  # the suite's tolerances

    warnings.simplefilter("ignore")
    faulthandler.enable()
    interpreted = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0") and not torch.cuda.is_available()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    gen = torch.Generator().manual_seed(seed)

    FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
    OTHER = [torch.uint8, torch.int64, torch.int32, torch.bool, torch.complex64, torch.int8]

    def pick(*options, weights=None):
        return rng.choices(options, weights=weights)[0]

    def randn(shape, dtype=torch.float32):
        t = torch.randn(shape, generator=gen)
        if dtype in (torch.uint8, torch.int8, torch.int32, torch.int64):
            return (t.abs() * 50).to(dtype)
        if dtype == torch.bool:
            return t > 0
        return t.to(dtype)

    def maybe_meta(t, p=0.05):
        return t.to("meta") if isinstance(t, torch.Tensor) and rng.random() < p else t

    def special(t):
        """Sometimes NaN, infinities or huge values in a floating tensor."""
        if not (isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() and t.device.type == "cpu"):
            return t
        r = rng.random()
        if r < 0.05:
            t = t.clone()
            t[tuple(rng.randrange(n) for n in t.shape)] = pick(float("nan"), float("inf"), -float("inf"))
        elif r < 0.08:
            t = t * torch.finfo(t.dtype).max / 4
        return t

    def x_arg(B):
        r = rng.random()
        if r < 0.55:
            shape = (B, *[rng.randint(1, 6) for _ in range(rng.choice([3, 3, 1, 0, 2]))])
            x = randn(shape, pick(*FLOATS))
        elif r < 0.65:
            x = randn((B, 3, rng.randint(1, 6), rng.randint(1, 6)), pick(*OTHER))
        elif r < 0.72:
            x = randn((B, 3, 4, 5)).contiguous(memory_format=torch.channels_last)
        elif r < 0.78:
            x = randn((B, 4, 6, 5))[:, ::2].transpose(2, 3)
        elif r < 0.82:
            x = randn((1, 3, 4, 4)).expand(B, 3, 4, 4)
        elif r < 0.85:
            x = randn(())
        elif r < 0.88:
            x = randn((B, 0, 3))
        else:
            x = pick(None, 1.0, [[1.0, 2.0]] * B, np.zeros((B, 3), dtype=np.float32), "x")
        x = special(x)
        if isinstance(x, torch.Tensor) and x.is_floating_point() and rng.random() < 0.05:
            x = x.detach().requires_grad_()
        return maybe_meta(x)

    def involution(B):
        p = list(range(B))
        idx = list(range(B))
        rng.shuffle(idx)
        for k in range(rng.randint(0, B // 2)):
            a, b = idx[2 * k], idx[2 * k + 1]
            p[a], p[b] = b, a
        return p

    def perm_arg(B):
        r = rng.random()
        if r < 0.45:
            p = torch.tensor(involution(B), dtype=torch.int64)
        elif r < 0.7:
            p = torch.randperm(B, generator=gen)
        elif r < 0.8:
            p = torch.randint(-B - 1, B + 2, (B,), generator=gen)
        elif r < 0.85:
            p = torch.tensor(involution(B), dtype=pick(torch.int32, torch.float32, torch.uint8, torch.int16))
        elif r < 0.9:
            p = torch.arange(max(B + rng.choice([-1, 1]), 0))
        elif r < 0.93:
            p = torch.arange(B).view(1, -1)
        else:
            p = pick(None, list(range(B)), 0, torch.tensor([2**62] * B))
        return maybe_meta(p)

    def K_arg():
        return pick(
            1, 2, 3, 10, 17, 1000, 21841, 0, -1, -7, 2**40, 2**62, 2**63 - 1, 2**63, 2**64, 2.0, 1.5, "3", None,
            True, np.int64(5), float("nan"),
            weights=[6, 6, 6, 6, 3, 2, 1, 1, 1, 1, 0.3, 0.3, 0.3, 0.3, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.3],
        )  # fmt: skip

    def target_arg(B, K):
        k = K if type(K) is int and 1 <= K <= 30000 else 5
        r = rng.random()
        if r < 0.45:
            t = torch.randint(0, k, (B,), generator=gen)
        elif r < 0.6:
            t = torch.softmax(torch.randn(B, k, generator=gen), 1).to(pick(*FLOATS))
        elif r < 0.7:
            t = torch.randint(-3, k + 3, (B,), generator=gen).to(pick(torch.int64, torch.int32, torch.int16))
        elif r < 0.76:
            t = torch.randint(0, 2, (B,), generator=gen).to(pick(torch.uint8, torch.bool, torch.float32))
        elif r < 0.82:
            t = torch.rand(B, k + rng.choice([-1, 1, 0]), generator=gen) * pick(1.0, -1.0, float("nan"))
        elif r < 0.86:
            t = torch.zeros(B + 1, dtype=torch.int64)
        elif r < 0.9:
            t = torch.randint(0, k, (B, 1), generator=gen)
        else:
            t = pick(None, [0] * B, 3, "t", torch.tensor(2**62).expand(B))
        return maybe_meta(special(t))

    def lam_arg(B):
        r = rng.random()
        if r < 0.35:
            return pick(0.0, 1.0, 0.5, rng.random())
        if r < 0.55:
            return torch.rand(B, generator=gen).to(pick(torch.float32, torch.float64, torch.float16))
        if r < 0.75:
            return pick(
                -0.1, 1.1, float("nan"), float("inf"), -float("inf"), 1e300, 0, 1, True, False, "0.5", None,
                np.float32(0.3), [0.5] * B, (0.5,), 2**70,
            )  # fmt: skip
        if r < 0.85:
            t = torch.rand(B, generator=gen)
            if B:
                t[rng.randrange(B)] = pick(float("nan"), -0.5, 1.5, float("inf"))
            return t
        t = pick(
            torch.ones(B, dtype=torch.int64), torch.ones(B, dtype=torch.bool), torch.rand(B, B, generator=gen),
            torch.rand(max(B - 1, 0), generator=gen), torch.tensor(0.25), torch.rand(B, dtype=torch.complex64),
            torch.full((B,), 0.5, device="meta"),
        )  # fmt: skip
        return t

    def boxes_arg(B, x):
        if rng.random() < 0.5:
            return None
        H = x.shape[2] if isinstance(x, torch.Tensor) and x.dim() == 4 else 5
        W = x.shape[3] if isinstance(x, torch.Tensor) and x.dim() == 4 else 5
        rows = []
        for _ in range(B):
            r = rng.random()
            if r < 0.2:
                rows.append(NO_BOX)
            elif r < 0.85:
                y0, y1 = sorted((rng.randint(0, H), rng.randint(0, H)))
                x0, x1 = sorted((rng.randint(0, W), rng.randint(0, W)))
                rows.append((y0, y1, x0, x1))
            else:
                rows.append(tuple(pick(-1, -2, 0, H + 1, 2**40, -(2**62)) for _ in range(4)))
        b = torch.tensor(rows, dtype=torch.int64).view(B, 4)
        r = rng.random()
        if r < 0.1:
            b = b.to(pick(torch.int32, torch.float32, torch.uint8, torch.bool, torch.int16))
        elif r < 0.15:
            b = b[:, :3]
        elif r < 0.18:
            b = pick("boxes", [[0, 1, 0, 1]] * B, b.t())
        return maybe_meta(b)

    def mean_std(x):
        C = x.shape[1] if isinstance(x, torch.Tensor) and x.dim() > 1 else 3
        r = rng.random()
        if r < 0.75:
            return None, None
        if r < 0.85:
            return [120.0] * C, [pick(50.0, 0.0, float("nan"), -1.0, float("inf"))] * C
        if r < 0.9:
            return [120.0] * (C + 1), [50.0] * (C + 1)
        if r < 0.95:
            return torch.full((C,), 120.0), None
        return pick("m", 3, torch.zeros(C, dtype=torch.int64)), pick("s", [1.0] * C, torch.ones(C))

    def mix_kwargs():
        B = pick(1, 2, 3, 4, 5, 0, weights=[4, 5, 3, 5, 3, 1])
        x = x_arg(B)
        K = K_arg()
        kw = dict(num_classes=K)
        if rng.random() < 0.6:
            kw["label_smoothing"] = pick(0.0, 0.1, 1.0, rng.random(), -0.1, 1.5, float("nan"), None, "0.1", 2**70)
        if rng.random() < 0.6:
            kw["boxes"] = boxes_arg(B, x)
        if rng.random() < 0.35:
            kw["inplace"] = pick(True, False, 1, "yes", None)
        kw["backend"] = pick(
            "auto", "cpp", "reference", "triton", "bogus", None, 3, weights=[4, 4, 3, 2, 0.3, 0.3, 0.3]
        )
        if rng.random() < 0.2:
            kw["mean"], kw["std"] = mean_std(x)
        if rng.random() < 0.15:
            kw["out_dtype"] = pick(*FLOATS, torch.int32, torch.uint8, "float32", float)
        if rng.random() < 0.1:
            kw["memory_format"] = pick(torch.channels_last, torch.contiguous_format, torch.preserve_format, "cl")
        args = [x, target_arg(B, K), perm_arg(B), lam_arg(B)]
        if rng.random() < 0.1:  # check=False with valid data only (invalid data is then the caller's promise)
            kw["check"] = False
            args[2] = torch.tensor(involution(B), dtype=torch.int64)
            args[3] = rng.random()
            args[1] = torch.randint(0, K, (B,), generator=gen) if type(K) is int and 1 <= K < 10**6 else args[1]
            if kw.get("boxes") is not None:
                kw["boxes"] = None
        return args, kw

    def describe(v):
        if isinstance(v, torch.Tensor):
            s = f"T[{str(v.dtype)[6:]}{list(v.shape)}"
            if v.device.type != "cpu":
                s += f"@{v.device.type}"
            elif v.numel() <= 8 and v.dtype in (torch.int64, torch.int32, torch.int16):
                s += f"={v.tolist()}"
            if v.dim() == 4 and v.is_contiguous(memory_format=torch.channels_last) and not v.is_contiguous():
                s += " cl"
            elif not v.is_contiguous():
                s += f" strides={v.stride()}"
            return s + "]"
        if isinstance(v, (list, tuple)) and len(v) > 4:
            return f"{type(v).__name__}(len={len(v)})"
        if isinstance(v, np.ndarray):
            return f"ndarray{list(v.shape)}"
        return repr(v)

    def clone_args(args, kw):
        def c(v):
            return v.detach().clone().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v

        return [c(a) for a in args], {k: c(v) for k, v in kw.items()}

    def same(a, b, backend):
        """As conftest.assert_matches: NaN where the reference has NaN, and
        elsewhere the same bits, or within max_ulps (the interpreter's bf16)."""
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.device.type == "meta":
            return True
        a, b = a.detach(), b.detach()
        if not a.is_floating_point():
            return bool(torch.equal(a, b))
        nan = torch.isnan(b)
        if not torch.equal(torch.isnan(a), nan):
            return False
        a, b = a[~nan], b[~nan]
        allowed = max_ulps(a.dtype, "cpp" if backend == "auto" else backend, a.device.type)
        if allowed == 0:
            return bool(torch.equal(bits(a), bits(b)))
        return a.numel() == 0 or int(ulp_distance(a, b).max()) <= allowed

    # --- entry points: each returns (name, description, callable, post-check) ---

    def e_mix():
        args, kw = mix_kwargs()
        desc = ", ".join([describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kw.items()])
        ref_args, ref_kw = clone_args(args, kw)

        def post(result):
            backend = kw.get("backend")
            if backend not in ("cpp", "triton", "auto"):
                return None
            if backend == "triton" and interpreted and result[0].dtype == torch.bfloat16:
                x = args[0]
                if isinstance(x, torch.Tensor) and x.dtype == torch.float64:
                    return None  # the interpreter casts float64 to bfloat16 as an integer (a Triton bug)
            ref_kw["backend"] = "reference"
            try:
                want = mf.mix(*ref_args, **ref_kw)
            except Exception as err:  # noqa: BLE001
                return f"accepted, but the reference raises {type(err).__name__}: {str(err)[:80]}"
            for got, exp in zip(result, want, strict=True):
                if got is None or exp is None:  # no targets (target=None)
                    if (got is None) != (exp is None):
                        return "targets None on one side only"
                    continue
                if not same(got, exp, backend):
                    if os.environ.get("FUZZ_DEBUG"):
                        bad = got.double() != exp.double()
                        print("MISMATCH", desc, got[bad][:6].tolist(), exp[bad][:6].tolist(), flush=True)
                    return "result differs from the reference"
            return None

        return "mix", desc, lambda: mf.mix(*args, **kw), post

    def e_mix_targets():
        B = rng.randint(0, 5)
        K = K_arg()
        lam = lam_arg(B)
        t, p = target_arg(B, K), perm_arg(B)
        kw = dict(num_classes=K)
        if rng.random() < 0.5:
            kw["label_smoothing"] = pick(0.0, 0.1, -0.5, 2.0, float("nan"))
        desc = f"{describe(t)}, {describe(p)}, {describe(lam)}, {kw}"

        def post(result):
            bad_lam = isinstance(lam, float) and not 0 <= lam <= 1
            if bad_lam:
                return "accepted lam outside [0, 1]"
            return None

        return "mix_targets", desc, lambda: mf.mix_targets(t, p, lam, **kw), post

    def e_mix_features():
        B = rng.randint(0, 5)
        h = x_arg(B)
        p, lam = perm_arg(B), lam_arg(B)
        kw = {}
        if rng.random() < 0.6:
            K = K_arg()
            kw["target"], kw["num_classes"] = target_arg(B, K), K
        elif rng.random() < 0.2:
            kw["num_classes"] = K_arg()
        kw["backend"] = pick("auto", "cpp", "reference", "triton")
        desc = f"{describe(h)}, {describe(p)}, {describe(lam)}, " + ", ".join(
            f"{k}={describe(v)}" for k, v in kw.items()
        )
        return "mix_features", desc, lambda: mf.mix_features(h, p, lam, **kw), None

    def e_raw_op():
        args, kw = mix_kwargs()
        # Tensor slots get tensors (any dtype, shape, device): None or a list
        # there is a schema violation that torch.ops itself rejects.
        if isinstance(args[3], float):
            n = args[0].shape[0] if isinstance(args[0], torch.Tensor) and args[0].dim() else 1
            args[3] = torch.full((n,), args[3], dtype=torch.float64)
        x, t, p, lam = (a if isinstance(a, torch.Tensor) else torch.zeros(2) for a in args)
        which = pick("mix", "mix_", "mix_backward")
        K, eps, boxes = kw["num_classes"], kw.get("label_smoothing", 0.0), kw.get("boxes")
        if which == "mix":
            mean, std = mean_std(x)
            mean = torch.tensor(mean) if isinstance(mean, list) else mean
            std = torch.tensor(std) if isinstance(std, list) else std
            call_args = (x, t, p, lam, boxes, None, None, K, eps, mean, std, kw.get("out_dtype"), kw.get("check", True))
        elif which == "mix_":
            call_args = (x, t, p, lam, boxes, None, None, K, eps, kw.get("check", True))
        else:
            call_args = (x, p, lam, boxes, None)
        op = getattr(torch.ops.mixup_fused, which)
        desc = f"{which}(" + ", ".join(describe(a) for a in call_args) + ")"
        return "op", desc, lambda: op(*call_args), None

    def e_mixup_class():
        kw = {}
        for key, options in (
            ("mixup_alpha", (0.0, 0.8, 1.0, -1.0, float("nan"))),
            ("cutmix_alpha", (0.0, 1.0, -1.0)),
            ("cutmix_minmax", (None, (0.2, 0.8), (0.5,), (0.9, 0.1))),
            ("prob", (1.0, 0.5, 0.0, 2.0)),
            ("mode", ("batch", "pair", "elem", "half", "bogus")),
            ("label_smoothing", (0.0, 0.1, -1.0, 2.0)),
            ("num_classes", (10, 1000, 0, 2.5, None)),
            ("pairing", ("flip", "random", "x")),
            ("backend", ("auto", "reference", "triton", "nope")),
            ("generator", (None, torch.Generator().manual_seed(rng.randint(0, 99)), 3)),
        ):
            if rng.random() < 0.5:
                kw[key] = pick(*options)
        B = pick(2, 4, 3, 1, 0)
        K = kw.get("num_classes", 1000)
        x = x_arg(B)
        t = target_arg(B, K)
        desc = f"Mixup({kw})({describe(x)}, {describe(t)})"

        def call():
            return mf.Mixup(**kw)(x, t)

        return "Mixup", desc, call, None

    def e_transforms():
        cls = pick(mf.MixUp, mf.CutMix)
        kw = {}
        if rng.random() < 0.5:
            kw["alpha"] = pick(1.0, 0.5, 0.0, -1.0, float("nan"))
        if rng.random() < 0.8:
            kw["num_classes"] = pick(10, 3, 0, -1, None, 2.5)
        if rng.random() < 0.2:
            kw["backend"] = pick("auto", "reference", "triton", "zzz")
        B = pick(2, 4, 3, 1, 0)
        x = x_arg(B)
        t = target_arg(B, kw.get("num_classes") if type(kw.get("num_classes")) is int else 5)
        desc = f"{cls.__name__}({kw})({describe(x)}, {describe(t)})"
        return cls.__name__, desc, lambda: cls(**kw)(x, t), None

    def e_loss():
        B = rng.randint(0, 4)
        logits = special(randn((B, pick(3, 5)), pick(*FLOATS)))
        target = pick(
            torch.softmax(torch.randn(B, logits.shape[1], generator=gen), 1),
            torch.randint(0, 3, (B,), generator=gen),
            torch.rand(B, logits.shape[1] + 1, generator=gen),
            None,
        )
        red = pick("mean", "sum", "none", "bogus")
        desc = f"{describe(logits)}, {describe(target)}, reduction={red!r}"
        return "soft_target_cross_entropy", desc, lambda: mf.soft_target_cross_entropy(logits, target, red), None

    entries = [e_mix] * 8 + [e_mix_targets, e_mix_features, e_mixup_class, e_transforms, e_loss] + [e_raw_op] * 2

    def normalise(msg: str) -> str:
        msg = msg.strip().splitlines()[0] if msg.strip() else ""
        return re.sub(r"\d+", "N", msg)[:110]

    counts: Counter = Counter()
    unexpected: dict = {}
    start, calls = time.monotonic(), 0
    while time.monotonic() - start < seconds and calls < max_calls:
        entry = rng.choice(entries)
        try:
            name, desc, call, post = entry()
        except Exception as err:  # a bug in the generator itself
            print("GENERATOR ERROR", entry.__name__, repr(err), traceback.format_exc(), flush=True)
            raise
        faulthandler.dump_traceback_later(60, exit=True)  # a single call hanging fails the run
        problem = None
        try:
            result = call()
            counts[(name, "ok")] += 1
            problem = post(result) if post is not None else None
        except (TypeError, ValueError) as err:
            counts[(name, type(err).__name__)] += 1
            if not str(err):
                problem = f"{type(err).__name__} without a message"
        except (torch.OutOfMemoryError, MemoryError):
            counts[(name, "oom")] += 1
        except RuntimeError as err:
            msg = str(err)
            if name == "op" and "Expected a value of type" in msg:
                counts[(name, "schema")] += 1
            elif "more than one element of the written-to tensor refers to a single memory location" in msg:
                counts[(name, "overlap")] += 1  # PyTorch's rule for every in-place write; x is left as it was
            elif "can't allocate memory" in msg or "not enough memory" in msg:
                counts[(name, "oom")] += 1
            else:
                problem = f"RuntimeError: {normalise(msg)}"
                counts[(name, "unexpected")] += 1
        except Exception as err:  # noqa: BLE001 - everything else is a finding
            problem = f"{type(err).__name__}: {normalise(str(err))}"
            counts[(name, "unexpected")] += 1
        finally:
            faulthandler.cancel_dump_traceback_later()
        calls += 1
        if problem is not None:
            key = f"{name}: {problem}"
            if key not in unexpected:
                unexpected[key] = {"count": 0, "example": desc[:600]}
            unexpected[key]["count"] += 1
    summary = {
        "calls": calls,
        "seconds": round(time.monotonic() - start, 1),
        "counts": {f"{k[0]}:{k[1]}": v for k, v in sorted(counts.items())},
        "unexpected": unexpected,
    }
    print("FUZZ " + json.dumps(summary), flush=True)


# ----------------------------------------------------------------------------
# The test
# ----------------------------------------------------------------------------


def _known(key: str) -> str | None:
    entry, _, problem = key.partition(": ")
    for entries, pattern, bug in KNOWN:
        if re.fullmatch(entries, entry) and re.match(pattern, problem):
            return bug
    return None


def test_fuzz_public_entry_points():
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    import torch

    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), str(FUZZ_SECONDS), str(FUZZ_SEED), str(FUZZ_CALLS)],
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 180,
        env=env,
        cwd=os.path.dirname(here),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the fuzz process died (return code {proc.returncode}):\n{out[-6000:]}"
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("FUZZ ")), None)
    assert line is not None, out[-6000:]
    summary = json.loads(line[len("FUZZ ") :])
    print(json.dumps(summary, indent=1))
    assert summary["calls"] >= 200, f"only {summary['calls']} calls in {summary['seconds']} s"
    reached = {k.split(":")[0] for k, v in summary["counts"].items() if k.endswith(":ok") and v}
    for name in ("mix", "mix_targets", "mix_features", "op", "Mixup", "MixUp", "CutMix", "soft_target_cross_entropy"):
        assert name in reached, f"no call of {name} succeeded: the fuzzer is not exercising it"
    new = {k: v for k, v in summary["unexpected"].items() if _known(k) is None}
    assert not new, "undocumented exceptions or wrong results:\n" + json.dumps(new, indent=1)


if __name__ == "__main__":
    _child(float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 10**9)
