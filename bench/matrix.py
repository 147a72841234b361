"""The headline matrix: ``mixup_fused.Mixup`` in place, every mode x branch x
dtype, as a multiple of the in-place roofline of the same dtype, in one run.

A cell is ``Mixup(mode=..., <branch>)(x, target)`` on ImageNet-size batches,
drawing its own lam and boxes on every call as in a training step, timed
interleaved with ``x.mul_(0.5)`` on a tensor of the same shape and dtype (the
in-place roofline: one read and one write of every element). Branches are the
common recipes' settings: mixup only (alpha 0.8), CutMix only (alpha 1.0) and
switching between them with probability 0.5 (DeiT, ConvNeXt, Swin). Each cell
is first checked against ``mixup_fused.reference`` with its own draws.

Bounds: at most ``BOUND`` x roofline; CutMix only at most ``CUTMIX_BOUND``: in
place it moves at most the bytes of the boxes, never more than the roofline.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .cases import DTYPE_NAMES, IMAGENET, LARGE, Case, make_inputs
from .timing import Budget
from .verify import check_mix

MODES = ("batch", "pair", "elem", "half")
BRANCHES = {
    "mixup": {"mixup_alpha": 0.8, "cutmix_alpha": 0.0},
    "cutmix": {"mixup_alpha": 0.0, "cutmix_alpha": 1.0},
    "switch": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "switch_prob": 0.5},
}
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
SHAPES = (IMAGENET, LARGE)
BOUND = 1.3
CUTMIX_BOUND = 1.0
ROOF = "roofline"


def bound(branch: str) -> float:
    return CUTMIX_BOUND if branch == "cutmix" else BOUND


def cells(quick: bool):
    """(shape, dtype) groups, each timed in one interleaved round."""
    if quick:
        return [(IMAGENET, torch.float32), (IMAGENET, torch.float16)]
    return [(s, d) for s in SHAPES for d in DTYPES]


def _mixer(mode: str, branch: str, case: Case):
    from mixup_fused import Mixup

    return Mixup(mode=mode, label_smoothing=case.label_smoothing, num_classes=case.num_classes, **BRANCHES[branch])


def _check(inp, mixer, seed: int = 1234) -> dict:
    """One call with draws we keep, compared with the reference on the same draws."""
    case = inp.case
    np.random.seed(seed)
    torch.manual_seed(seed)
    params = mixer.sample_params(case.batch, case.spatial)
    out = mixer.apply(inp.x.clone(), inp.target, params)
    rows = case.batch - case.batch // 2 if mixer.mode == "half" else None
    return check_mix(inp, out[0], out[1], params.perm, params.lam, boxes=params.boxes, rows=rows)


def run_group(shape, dtype, device, timer, budget: Budget) -> list[dict]:
    case = Case("matrix", shape, dtype, dtype)
    inp = make_inputs(case, device)
    fns, rows = {}, []
    x_roof = inp.x.clone()
    state = {"k": 0}

    def roofline():
        # Alternate 0.5 and 2.0: repeated calls neither drift to denormals nor change the cost.
        state["k"] ^= 1
        x_roof.mul_(0.5 if state["k"] else 2.0)

    fns[ROOF] = roofline
    for mode in MODES:
        for branch in BRANCHES:
            key = f"{mode}/{branch}"
            row = {"shape": list(shape), "dtype": DTYPE_NAMES[dtype], "mode": mode, "branch": branch}
            mixer = _mixer(mode, branch, case)
            try:
                row["check"] = _check(inp, mixer)
            except AssertionError as err:
                row.update(status="failed", reason=str(err)[:300])
                rows.append(row)
                continue
            x = inp.x.clone()
            fns[key] = lambda mixer=mixer, x=x: mixer(x, inp.target)
            rows.append(row)
    timings = timer.time_all(fns, budget)
    roof_ms = timings[ROOF].median_ms
    for row in rows:
        t = timings.get(f"{row['mode']}/{row['branch']}")
        if t is None:
            continue
        ratio = t.median_ms / roof_ms
        b = bound(row["branch"])
        row.update(
            status="ok",
            median_ms=round(t.median_ms, 4),
            p25_ms=round(t.p25_ms, 4),
            p75_ms=round(t.p75_ms, 4),
            reps=t.reps,
            roofline_ms=round(roof_ms, 4),
            x_roofline=round(ratio, 3),
            bound=b,
            verdict="PASS" if ratio <= b else "FAIL",
        )
    return rows


def run(device, timer, budget: Budget, quick: bool, progress=None, deadline=None) -> list[dict]:
    """Every (shape, dtype) group in turn; groups not started by ``deadline``
    (a ``time.perf_counter()`` value) are left out."""
    rows = []
    for shape, dtype in cells(quick):
        if deadline is not None and time.perf_counter() > deadline:
            break
        if progress is not None:
            progress(f"matrix {'x'.join(map(str, shape))} {DTYPE_NAMES[dtype]}")
        rows += run_group(shape, dtype, device, timer, budget)
    return rows


def _lookup(rows, shape, dtype, mode, branch):
    for r in rows:
        if r["shape"] == list(shape) and r["dtype"] == dtype and r["mode"] == mode and r["branch"] == branch:
            return r
    return None


def _groups(rows):
    shapes = list(dict.fromkeys(tuple(r["shape"]) for r in rows))
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    return shapes, dtypes


def markdown(rows: list[dict]) -> str:
    """One table per shape: a row per mode x branch, a column per dtype, cells "x roofline"."""
    shapes, dtypes = _groups(rows)
    out = []
    for shape in shapes:
        out.append(f"#### Mixup in place, {'x'.join(map(str, shape))}: x in-place roofline (bound)\n")
        out.append("| mode | branch | " + " | ".join(dtypes) + " |")
        out.append("|---|---|" + "---|" * len(dtypes))
        for mode in MODES:
            for branch in BRANCHES:
                cells_ = []
                for dt in dtypes:
                    r = _lookup(rows, shape, dt, mode, branch)
                    if r is None:
                        cells_.append("-")
                    elif r.get("status") != "ok":
                        cells_.append(f"{r.get('status')}")
                    else:
                        mark = "" if r["verdict"] == "PASS" else " **FAIL**"
                        cells_.append(f"{r['x_roofline']:.2f} ({r['median_ms']:.2f} ms){mark}")
                out.append(f"| {mode} | {branch} (<= {bound(branch)}) | " + " | ".join(cells_) + " |")
        roofs = []
        for dt in dtypes:
            r = next((r for r in rows if r["shape"] == list(shape) and r["dtype"] == dt and "roofline_ms" in r), None)
            roofs.append(f"{dt} {r['roofline_ms']:.2f} ms" if r else f"{dt} -")
        out.append(f"\nin-place roofline (`x.mul_(0.5)`, same run): {', '.join(roofs)}\n")
    ok = [r for r in rows if r.get("status") == "ok"]
    passed = sum(r["verdict"] == "PASS" for r in ok)
    out.append(f"{passed} of {len(rows)} cells within their bound.\n")
    return "\n".join(out)


def plot(rows: list[dict], path: str, title: str) -> None:
    """The matrix as a heat map: one panel per shape, green within the bound, red beyond."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap, TwoSlopeNorm

    shapes, dtypes = _groups(rows)
    labels = [f"{m} / {b}" for m in MODES for b in BRANCHES]
    # Greens up to the bound, oranges and reds beyond it (the colour scale is the value over the bound).
    cmap = LinearSegmentedColormap.from_list(
        "bound", [(0.0, "#1a9850"), (0.5, "#d9ef8b"), (0.501, "#fdae61"), (1.0, "#a50026")]
    )
    fig, axes = plt.subplots(1, len(shapes), figsize=(3.2 + 2.2 * len(dtypes) * len(shapes), 6.2), squeeze=False)
    for ax, shape in zip(axes[0], shapes, strict=True):
        grid = np.full((len(labels), len(dtypes)), np.nan)
        over = np.zeros_like(grid)  # the value over the cell's own bound
        for i, (m, b) in enumerate((m, b) for m in MODES for b in BRANCHES):
            for j, dt in enumerate(dtypes):
                r = _lookup(rows, shape, dt, m, b)
                if r is not None and r.get("status") == "ok":
                    grid[i, j] = r["x_roofline"]
                    over[i, j] = r["x_roofline"] / bound(b)
        ax.imshow(over, cmap=cmap, norm=TwoSlopeNorm(vmin=0.5, vcenter=1.0, vmax=2.0), aspect="auto")
        for i in range(len(labels)):
            for j in range(len(dtypes)):
                text = "-" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}x"
                beyond = over[i, j] > 1.0
                ax.text(j, i, text, ha="center", va="center", fontsize=9, fontweight="bold" if beyond else "normal")
        ax.set_xticks(range(len(dtypes)), dtypes)
        ax.set_yticks(range(len(labels)), labels if ax is axes[0][0] else [""] * len(labels))
        ax.set_title("x".join(map(str, shape)), fontsize=10)
        for y in range(len(BRANCHES), len(labels), len(BRANCHES)):
            ax.axhline(y - 0.5, color="white", linewidth=2)
    fig.suptitle(title, fontsize=9)
    fig.text(
        0.5,
        0.01,
        f"time / in-place roofline (x.mul_ of the same dtype); green: within the bound "
        f"({BOUND}x, CutMix only {CUTMIX_BOUND}x), red: beyond it",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
