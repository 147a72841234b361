"""The performance targets: one table, evaluated on the numbers of one run.

Each row holds one of our providers against providers measured in the same
run, on one case:

- ``x roofline``: our time over the time the roofline's bandwidth needs to move
  our useful bytes (the table's "x roofline" column); at most ``bound``.
- ``speed-up``: a peer's time over ours; at least ``bound`` (against several
  peers, the smallest).

A bound is what the design promises, not what a machine happened to reach. A
provider the run did not measure leaves its target unevaluated, with the
reason; no other provider's number stands in for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cases import IMAGENET, IMAGENET_GPU, Case, dense_cases

X_ROOFLINE = "x roofline"
SPEEDUP = "speed-up"


@dataclass(frozen=True)
class Target:
    name: str
    case: str  # a Case.label
    ours: str  # provider key
    against: tuple[str, ...]  # provider keys: one roofline, or the peers
    metric: str  # X_ROOFLINE (<= bound) or SPEEDUP (>= bound)
    bound: float
    why: str


def _collate_table() -> list[Target]:
    """Collate-time mixing (CPU, one thread, as in a DataLoader worker)."""
    collate = Case("collate", IMAGENET, torch.uint8, torch.uint8).label
    hwc = Case("collate_hwc", IMAGENET, torch.uint8, torch.uint8).label
    return [
        Target(
            "FastCollateMixup elem, one thread, vs a plain uint8 collate",
            collate,
            "ours_FastCollateMixup",
            ("roofline_collate",),
            X_ROOFLINE,
            1.5,
            "one pass gathers the samples into the batch; the blended rows also read their partner",
        ),
        Target(
            "FastCollateMixup elem, one thread, vs timm's",
            collate,
            "ours_FastCollateMixup",
            ("timm_collate",),
            SPEEDUP,
            5.0,
            "timm loops over the samples in Python with several float32 passes per blended sample",
        ),
        Target(
            "FastCollateMixup elem over timm's ToNumpy (HWC) samples, one thread, vs a plain uint8 collate",
            hwc,
            "ours_FastCollateMixup",
            ("roofline_collate",),
            X_ROOFLINE,
            1.0,
            "the kernel splits the interleaved channels as it writes; torch.stack copies the strided samples",
        ),
        Target(
            "FastCollateMixup elem over timm's ToNumpy (HWC) samples, one thread, vs timm's",
            hwc,
            "ours_FastCollateMixup",
            ("timm_collate",),
            SPEEDUP,
            5.0,
            "timm adds each strided sample into the batch with torch, then blends in float32",
        ),
    ]


def _table(shape: tuple[int, ...]) -> list[Target]:
    """The targets on a training batch of ``shape``."""
    f32, bf16, u8 = torch.float32, torch.bfloat16, torch.uint8
    mixup_f32 = Case("mixup", shape, f32, f32).label
    mixup_bf16 = Case("mixup", shape, bf16, bf16).label
    elem_f32 = Case("elem", shape, f32, f32).label
    uint8_bf16 = Case("uint8", shape, u8, bf16).label
    inplace, copy, convert = ("roofline_inplace",), ("roofline_copy",), ("roofline_convert",)
    return [
        Target(
            "in place, fp32",
            mixup_f32,
            "ours_inplace",
            inplace,
            X_ROOFLINE,
            1.3,
            "timm's flip pairs the rows: each pair is read once and written once, the bytes of x.mul_(0.5)",
        ),
        Target(
            "in place, bf16",
            mixup_bf16,
            "ours_inplace",
            inplace,
            X_ROOFLINE,
            1.3,
            "computed in fp32 and rounded once on store: the bytes of x.mul_(0.5) on the bf16 batch",
        ),
        Target(
            "in place, one lam per sample, fp32",
            elem_f32,
            "ours_inplace",
            inplace,
            X_ROOFLINE,
            1.3,
            "a lam per row changes the arithmetic, not the bytes moved",
        ),
        Target(
            "out of place, fp32",
            mixup_f32,
            "ours",
            copy,
            X_ROOFLINE,
            1.3,
            "a pair's two output rows are written from one read of the pair: the bytes of y.copy_(x)",
        ),
        Target(
            "out of place, bf16",
            mixup_bf16,
            "ours",
            copy,
            X_ROOFLINE,
            1.3,
            "as fp32, with half the bytes",
        ),
        Target(
            "uint8 -> bf16, normalise + mix",
            uint8_bf16,
            "ours_uint8",
            convert,
            X_ROOFLINE,
            1.5,
            "one pass reads uint8 and writes bf16 once, as y_bf16.copy_(x_uint8); "
            "the wider bound is for the per-channel normalisation",
        ),
        Target(
            "out of place vs torch.compile(naive), fp32",
            mixup_f32,
            "ours",
            ("compile",),
            SPEEDUP,
            1.0,
            "the compiled naive graph reads every partner row a second time; one fused pass is never slower",
        ),
    ]


def _dense_table() -> list[Target]:
    """Segmentation label maps, audio and video: the new input kinds, in place."""
    seg, classmix, audio, video, video_bf16 = (c.label for c in dense_cases())
    maps = ("roofline_inplace_maps",)
    return [
        Target(
            "CutMix images + label maps in place (seg)",
            seg,
            "ours_inplace_maps",
            maps,
            X_ROOFLINE,
            1.3,
            "one launch moves the pixels and the labels inside each pair's box: at most the bytes of "
            "x.mul_(0.5) plus maps.bitwise_not_()",
        ),
        Target(
            "ClassMix images + label maps in place",
            classmix,
            "ours_inplace_maps",
            maps,
            X_ROOFLINE,
            1.3,
            "one pass reads the cut mask once and swaps the masked pixels and labels of each pair: "
            "the bytes of the in-place passes over x, the maps and the cut mask",
        ),
        *(
            Target(
                name,
                label,
                "ours_Mixup_cutmix",
                ("roofline_inplace",),
                X_ROOFLINE,
                1.3,
                "CutMix in place in any spatial rank reads and writes only the box: at most the bytes of x.mul_(0.5)",
            )
            for name, label in (
                ("Mixup CutMix 1-D (audio), fp32", audio),
                ("Mixup CutMix 3-D (video), fp32", video),
                ("Mixup CutMix 3-D (video), bf16", video_bf16),
            )
        ),
    ]


# The same promises on each device, at the batch its runs measure.
TARGETS: dict[str, list[Target]] = {
    "cpu": _table(IMAGENET) + _collate_table() + _dense_table(),
    "cuda": _table(IMAGENET_GPU) + _dense_table(),
}


def _measured(rows: list[dict], case: str, provider: str) -> tuple[dict | None, str, str]:
    """``(row, status, why)``: the provider's timed row, or None with SKIP (the
    run left it out) or MISSING (the run tried and has no time for it)."""
    case_rows = [r for r in rows if r["case"] == case]
    if not case_rows:
        return None, "SKIP", f"case {case!r} not in this run"
    for r in case_rows:
        if r["provider"] != provider:
            continue
        if r.get("status") == "ok":
            return r, "", ""
        return None, "MISSING", f"{provider} not measured ({r.get('status')}: {r.get('reason', '')[:200]})"
    return None, "SKIP", f"{provider} not in this run (left out by --quick, --only or --skip)"


def _ms(row: dict) -> str:
    return f"{row['label']} {row['median_ms']:.3f} ms"


def _value(t: Target, ours: dict, others: list[dict]) -> float:
    if t.metric == X_ROOFLINE:
        (roof,) = others
        bandwidth = roof["bytes"] / roof["median_ms"]
        return ours["median_ms"] / (ours["useful_bytes"] / bandwidth)
    return min(o["median_ms"] / ours["median_ms"] for o in others)


def evaluate_targets(rows: list[dict], device_type: str) -> list[dict]:
    """Every target of ``device_type`` on the rows of one run: PASS, FAIL, MISSING or SKIP."""
    results = []
    for t in TARGETS.get(device_type, []):
        op = "<=" if t.metric == X_ROOFLINE else ">="
        result = {
            "target": t.name,
            "case": t.case,
            "ours": t.ours,
            "against": list(t.against),
            "metric": t.metric,
            "op": op,
            "bound": t.bound,
            "why": t.why,
        }
        found = [_measured(rows, t.case, key) for key in (t.ours, *t.against)]
        absent = [(status, why) for row, status, why in found if row is None]
        if absent:
            # MISSING outranks SKIP: a provider that was run and has no time is the news.
            status = "MISSING" if any(s == "MISSING" for s, _ in absent) else "SKIP"
            detail = "; ".join(dict.fromkeys(why for s, why in absent if s == status))
            results.append({**result, "status": status, "detail": detail})
            continue
        ours, *others = (row for row, _, _ in found)
        value = _value(t, ours, others)
        ok = value <= t.bound if op == "<=" else value >= t.bound
        detail = "; ".join(_ms(r) for r in (ours, *others))
        results.append({**result, "status": "PASS" if ok else "FAIL", "measured": round(value, 3), "detail": detail})
    return results
