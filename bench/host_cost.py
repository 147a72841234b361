"""``python -m bench.host_cost``: host microseconds per call, and host syncs.

On a batch so small that the device work is negligible, a loop of calls
followed by one synchronisation takes, per call, what the host spends on it:
Python, the dispatcher, the launcher, the copies of the draws. A call that
synchronises with the device (a blocking copy, ``.item()``) stalls a training
loop's pipeline; under ``torch.cuda.set_sync_debug_mode("warn")`` each such
sync is counted. ``--profile`` adds the functions that take the host time
(cProfile, by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
import warnings

import torch


def host_us(fn, device: torch.device, calls: int = 300) -> float:
    """Median over 5 loops of ``calls`` calls, each loop closed by one sync."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(20):
        fn()
    sync()
    loops = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        loops.append((time.perf_counter() - t0) / calls * 1e6)
    return sorted(loops)[2]


def syncs_per_call(fn, device: torch.device, calls: int = 10) -> float | None:
    """Host syncs per call, as counted by torch's sync debug mode (CUDA only)."""
    if device.type != "cuda":
        return None
    fn()
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(calls):
                fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught) / calls


def cases(device: torch.device) -> dict:
    """The calls to time: ours at each layer, and the peers a user compares with."""
    import mixup_fused as mf
    from mixup_fused import Mixup

    B, K = 8, 10
    x = torch.randn(B, 3, 16, 16, device=device)
    xu = torch.randint(0, 256, (B, 3, 16, 16), dtype=torch.uint8, device=device)
    t = torch.randint(0, K, (B,), device=device)
    perm = torch.arange(B - 1, -1, -1, device=device)
    lam = torch.full((B,), 0.7, dtype=torch.float64, device=device)
    boxes = torch.tensor([[2, 9, 3, 12]] * B, device=device)
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, num_classes=K)
    cutmix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, num_classes=K)
    switch = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K)
    normalise = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K, mean=(0.5,) * 3, std=(0.25,) * 3,
                      out_dtype=torch.bfloat16)  # fmt: skip
    ops = torch.ops.mixup_fused
    out = {
        "x.mul_(0.5) (one launch)": lambda: x.mul_(0.5),
        "naive lam*x + (1-lam)*x.flip(0)": lambda: x.mul(0.7).add_(x.flip(0), alpha=0.3),
        "op mix_ (checks off)": lambda: ops.mix_(x, t, perm, lam, None, None, None, K, 0.1, False),
        "op mix_ + boxes (checks off)": lambda: ops.mix_(x, t, perm, lam, boxes, None, None, K, 0.1, False),
        "op mix (out of place, checks off)": lambda: ops.mix(
            x, t, perm, lam, None, None, None, K, 0.1, None, None, None, False
        ),  # fmt: skip
        "mf.mix(inplace=True)": lambda: mf.mix(x, t, perm, lam, num_classes=K, inplace=True),
        "Mixup mixup": lambda: mixup(x, t),
        "Mixup cutmix": lambda: cutmix(x, t),
        "Mixup switch": lambda: switch(x, t),
        "Mixup uint8 -> bf16": lambda: normalise(xu, t),
    }
    # The parts of a Mixup call: the host draws, their upload, the launch alone.
    host_params = switch.sample_params(B, (16, 16))
    out["part: draws on the host"] = lambda: switch.sample_params(B, (16, 16))
    out["part: draws to the device"] = lambda: host_params.to(device)
    if device.type == "cuda":
        from mixup_fused.triton import launcher

        y = torch.empty(B, K, device=device)
        out["part: Triton launch alone"] = lambda: launcher._launch(
            x, None, perm, lam, None, None, None, None, None, None, t, y, num_classes=K, label_smoothing=0.1,
            inplace=True, backward=False)  # fmt: skip
    try:
        from timm.data import Mixup as TimmMixup

        timm = TimmMixup(mixup_alpha=0.8, cutmix_alpha=1.0, num_classes=K)
        out["timm Mixup switch"] = lambda: timm(x, t)
    except Exception:  # noqa: BLE001 - timm is optional here
        pass
    return out


def kernel_times(device: torch.device) -> list[tuple[str, float, float]]:
    """Device time alone: each call captured in a CUDA graph and replayed (no
    host cost), against ``x.mul_(0.5)`` captured the same way, 256x3x224x224."""
    ops = torch.ops.mixup_fused
    B, K = 256, 1000
    g = torch.Generator(device=device).manual_seed(0)
    t = torch.randint(0, K, (B,), device=device, generator=g)
    perm = torch.arange(B - 1, -1, -1, device=device)
    lam = torch.rand(B, dtype=torch.float64, device=device, generator=g)
    boxes = torch.tensor([[40, 180, 30, 200]] * B, device=device)
    mean = torch.tensor([0.5, 0.4, 0.3], device=device)
    std = torch.tensor([0.2, 0.25, 0.3], device=device)
    rows = []
    for name, dtype, call in (
        ("mix_ fp32", torch.float32, lambda x: ops.mix_(x, t, perm, lam, None, None, None, K, 0.1, False)),
        ("mix_ fp32 boxes", torch.float32, lambda x: ops.mix_(x, t, perm, lam, boxes, None, None, K, 0.1, False)),
        ("mix_ bf16", torch.bfloat16, lambda x: ops.mix_(x, t, perm, lam, None, None, None, K, 0.1, False)),
        ("mix fp32 (out of place)", torch.float32,
         lambda x: ops.mix(x, t, perm, lam, None, None, None, K, 0.1, None, None, None, False)),
        ("mix uint8 -> bf16", torch.uint8,
         lambda x: ops.mix(x, t, perm, lam, boxes, None, None, K, 0.1, mean, std, torch.bfloat16, False)),
    ):  # fmt: skip
        if dtype == torch.uint8:
            x = torch.randint(0, 256, (B, 3, 224, 224), dtype=dtype, device=device, generator=g)
            ref = torch.empty(x.shape, dtype=torch.bfloat16, device=device)
            roof = lambda x=x, ref=ref: ref.copy_(x)  # noqa: E731
        else:
            x = torch.randn(B, 3, 224, 224, device=device, generator=g).to(dtype)
            roof = lambda x=x: x.mul_(0.5)  # noqa: E731
        rows.append((name, _replay_ms(lambda c=call, x=x: c(x)), _replay_ms(roof)))
    return rows


def _replay_ms(fn, reps: int = 50) -> float:
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[reps // 2]


def measure(device: torch.device, calls: int = 300, kernel: bool = True) -> dict:
    """The host-cost rows (and, on CUDA, the graph-replay rows) as the benchmark records them."""
    host = []
    for name, fn in cases(device).items():
        host.append({"call": name, "host_us": round(host_us(fn, device, calls), 2),
                     "syncs_per_call": syncs_per_call(fn, device)})  # fmt: skip
    replay = []
    if kernel and device.type == "cuda":
        replay = [{"call": n, "replay_ms": round(o, 5), "roofline_ms": round(r, 5), "x_roofline": round(o / r, 3)}
                  for n, o, r in kernel_times(device)]  # fmt: skip
    return {"host": host, "graph_replay": replay}


def markdown(result: dict) -> str:
    out = ["| call (batch 8x3x16x16) | host us / call | host syncs / call |", "|---|---:|---:|"]
    for r in result["host"]:
        s = r["syncs_per_call"]
        out.append(f"| {r['call']} | {r['host_us']:.1f} | {'-' if s is None else f'{s:g}'} |")
    if result["graph_replay"]:
        out += ["", "| CUDA graph replay, 256x3x224x224 | ours ms | roofline ms | x roofline |", "|---|---:|---:|---:|"]
        for r in result["graph_replay"]:
            out.append(f"| {r['call']} | {r['replay_ms']:.4f} | {r['roofline_ms']:.4f} | {r['x_roofline']:.2f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.host_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--profile", action="store_true", help="cProfile the Mixup calls (top functions by own time)")
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--kernel", action="store_true", help="CUDA: device time alone, by graph replay")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    print(f"host cost per call on {device} (torch {torch.__version__})")
    print(markdown(measure(device, args.calls, kernel=args.kernel)), flush=True)
    fns = cases(device)
    if args.profile:
        for name in ("op mix_ (checks off)", "Mixup switch", "Mixup uint8 -> bf16"):
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(200):
                fns[name]()
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
            print(f"\n### cProfile, 200 calls of {name} (by own time)\n")
            print("\n".join(ln for ln in s.getvalue().splitlines() if ln.strip())[:6000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
