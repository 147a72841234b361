"""What a run leaves behind: markdown tables, the performance targets, JSON, a plot."""

from __future__ import annotations

import json
import os
from collections import OrderedDict

# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def _fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 100:
            return f"{v:.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.3f}" if v < 1 else f"{v:.2f}"
    return str(v)


def group_by_case(rows):
    cases = OrderedDict()
    for r in rows:
        cases.setdefault(r["case"], []).append(r)
    return cases


def markdown_tables(rows) -> str:
    out = []
    for case, rs in group_by_case(rows).items():
        mb = rs[0]["useful_bytes"] / 1e6
        out.append(f"#### {case} ({mb:.1f} MB useful)")
        out.append("")
        out.append("| provider | ms | GB/s | x roofline | speed-up vs timm | checked |")
        out.append("|---|---:|---:|---:|---:|---|")
        for r in rs:
            if r.get("status") != "ok":
                why = r.get("reason", "")
                out.append(f"| {r['label']} | - | - | - | - | {r['status']}: {why[:90]} |")
                continue
            check = "roofline" if r["roofline"] else ("yes" if r.get("verified") else "NO")
            speed = r.get("speedup_vs_timm")
            speed_s = f"{speed:.2f}x" if speed is not None else "-"
            ratio = r.get("x_roofline")
            ratio_s = f"{ratio:.2f}" if ratio is not None else "-"
            out.append(
                f"| {r['label']} | {_fmt(r['median_ms'])} | {_fmt(r.get('gbps'))} | {ratio_s} | {speed_s} | {check} |"
            )
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Targets (issues 2, 3 and 5), evaluated on the numbers of this run
# ---------------------------------------------------------------------------


def _find(rows, case, provider):
    for r in rows:
        if r["case"] == case and r["provider"] == provider and r.get("status") == "ok":
            return r
    return None


def _first(rows, case, providers):
    for p in providers:
        r = _find(rows, case, p)
        if r is not None:
            return r
    return None


def _target(name, source, value, op, threshold, detail, missing=None):
    if value is None:
        return {"target": name, "source": source, "status": "SKIP", "detail": missing or "not measured"}
    ok = value <= threshold if op == "<=" else value >= threshold
    return {
        "target": name,
        "source": source,
        "status": "PASS" if ok else "FAIL",
        "measured": round(value, 3),
        "op": op,
        "threshold": threshold,
        "detail": detail,
    }


def _ratio(num, den):
    if num is None or den is None:
        return None
    return num["median_ms"] / den["median_ms"]


def evaluate_targets(rows, device_type: str) -> list[dict]:
    t = []
    if device_type == "cuda":
        big = "256x3x224x224"
        for dt in ("fp32", "bf16"):
            case = f"mixup {big} {dt}"
            ours, copy = _find(rows, case, "ours_inplace"), _find(rows, case, "roofline_copy")
            frac = ours["gbps"] / copy["gbps"] if ours and copy else None
            t.append(
                _target(
                    f"GPU in place {dt} {big}: >= 85% of the copy bandwidth",
                    "issue 2",
                    frac,
                    ">=",
                    0.85,
                    f"ours in-place {ours['gbps'] if ours else '-'} GB/s vs copy {copy['gbps'] if copy else '-'} GB/s",
                )
            )
        case = f"uint8 {big} uint8->bf16"
        ours, timm, conv = (_find(rows, case, k) for k in ("ours_uint8", "timm_uint8", "roofline_convert"))
        sp = _ratio(timm, ours)
        t.append(_target(f"GPU uint8->bf16 {big}: >= 5x timm's path", "issue 5", sp, ">=", 5.0, _ms(timm, ours)))
        rr = _ratio(ours, conv)
        t.append(
            _target(
                f"GPU uint8->bf16 {big}: <= 1.5x reading uint8 + writing bf16 once",
                "issue 5",
                rr,
                "<=",
                1.5,
                _ms(ours, conv),
            )
        )
        return t

    im = "64x3x224x224"
    case = f"mixup {im} fp32"
    ours, roof = _find(rows, case, "ours_inplace"), _find(rows, case, "roofline_inplace")
    timm, comp = _find(rows, case, "timm_batch"), _find(rows, case, "compile")
    t.append(
        _target(
            f"in-place fp32 {im}: <= 1.5x the in-place roofline",
            "issue 2",
            _ratio(ours, roof),
            "<=",
            1.5,
            _ms(ours, roof),
        )
    )
    t.append(
        _target(
            f"in-place fp32 {im}: >= 5x faster than timm Mixup",
            "issue 2",
            _ratio(timm, ours),
            ">=",
            5.0,
            _ms(timm, ours),
        )
    )
    t.append(
        _target(
            f"in-place fp32 {im}: >= 3x faster than torch.compile(naive)",
            "issue 2",
            _ratio(comp, ours),
            ">=",
            3.0,
            _ms(comp, ours),
            missing="torch.compile(naive) not measured in this mode",
        )
    )
    case = f"mixup {im} bf16"
    ours, roof = _find(rows, case, "ours_inplace"), _find(rows, case, "roofline_inplace")
    t.append(
        _target(
            f"in-place bf16 {im}: <= 1.5x the in-place roofline",
            "issue 2",
            _ratio(ours, roof),
            "<=",
            1.5,
            _ms(ours, roof),
        )
    )
    case = f"elem {im} fp32"
    ours = _first(rows, case, ("ours_Mixup_elem", "ours_inplace"))
    timm = _find(rows, case, "timm_elem")
    t.append(_target(f"elem fp32 {im}: >= 10x timm 'elem'", "issue 3", _ratio(timm, ours), ">=", 10.0, _ms(timm, ours)))
    case = f"mixup {im} fp32"
    ours = _first(rows, case, ("ours_Mixup_batch", "ours_inplace"))
    timm = _find(rows, case, "timm_batch")
    t.append(_target(f"batch fp32 {im}: >= 5x timm 'batch'", "issue 3", _ratio(timm, ours), ">=", 5.0, _ms(timm, ours)))
    case = f"uint8 {im} uint8->bf16"
    ours, timm = _find(rows, case, "ours_uint8"), _find(rows, case, "timm_uint8")
    t.append(_target(f"uint8->bf16 {im}: >= 5x timm's path", "issue 5", _ratio(timm, ours), ">=", 5.0, _ms(timm, ours)))
    return t


def _ms(a, b):
    if a is None or b is None:
        return ""
    return f"{a['label']} {a['median_ms']:.3f} ms vs {b['label']} {b['median_ms']:.3f} ms"


def targets_text(targets) -> str:
    lines = []
    for t in targets:
        if t["status"] == "SKIP":
            lines.append(f"- SKIP {t['target']} ({t['source']}): {t['detail']}")
        else:
            lines.append(
                f"- {t['status']} {t['target']} ({t['source']}): measured {t['measured']:.3f} "
                f"(needs {t['op']} {t['threshold']}); {t['detail']}"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def write_json(path: str, payload: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=False, default=str)
        f.write("\n")
    os.replace(tmp, path)


ROOF_STYLE = {
    "copy": ("-", "copy roofline"),
    "inplace": ("--", "in-place roofline"),
    "convert": (":", "uint8->float copy"),
}


FAMILIES = (  # provider key prefix -> colormap: ours in reds, timm in blues, ...
    ("ours", "autumn"),
    ("timm", "Blues"),
    ("tv", "Greens"),
    ("kornia", "copper"),
    ("compile", "Purples"),
    ("", "Greys"),
)


def _family_colors(providers, plt) -> dict:
    colors = {}
    for prefix, cmap_name in FAMILIES:
        members = [lab for key, lab in providers if key.startswith(prefix) and lab not in colors]
        cmap = plt.get_cmap(cmap_name)
        for i, lab in enumerate(members):
            if cmap_name == "autumn":
                colors[lab] = cmap(0.85 * i / max(len(members) - 1, 1))
            else:
                colors[lab] = cmap(0.45 + 0.5 * (i + 1) / (len(members) + 1))
    return colors


def plot(rows, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = group_by_case(rows)
    names = list(cases)
    provider_labels = []
    for rs in cases.values():
        for r in rs:
            if not r["roofline"] and r.get("status") == "ok" and (r["provider"], r["label"]) not in provider_labels:
                provider_labels.append((r["provider"], r["label"]))
    colors = _family_colors(provider_labels, plt)
    width_in = max(16.0, 1.1 * len(names) + 4)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(width_in, 11), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    used = set()
    for ci, name in enumerate(names):
        rs = [r for r in cases[name] if r.get("status") == "ok" and not r["roofline"]]
        n = max(len(rs), 1)
        bar_w = 0.84 / n
        for j, r in enumerate(rs):
            xpos = ci - 0.42 + bar_w * (j + 0.5)
            lab = r["label"] if r["label"] not in used else None
            used.add(r["label"])
            ax.bar(xpos, r["gbps"], bar_w, color=colors[r["label"]], label=lab)
            sp = r.get("speedup_vs_timm")
            if sp is not None and not r["provider"].startswith("timm"):
                ax2.bar(xpos, sp, bar_w, color=colors[r["label"]])
        for r in cases[name]:
            if r["roofline"] and r.get("status") == "ok":
                style, _ = ROOF_STYLE[r["kind"]]
                ax.hlines(r["gbps"], ci - 0.45, ci + 0.45, colors="black", linestyles=style, linewidth=1.6)
    for style, lab in ROOF_STYLE.values():
        ax.plot([], [], color="black", linestyle=style, label=lab)
    ax.set_ylabel("GB/s of useful bytes (higher is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    ax2.axhline(1.0, color="black", linewidth=0.8)
    ax2.set_yscale("log")
    ax2.set_ylabel("speed-up over timm (log; > 1 is faster)")
    ax2.grid(axis="y", alpha=0.3, which="both")
    ax2.set_xticks(range(len(names)))
    ax2.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
