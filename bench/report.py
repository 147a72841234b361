"""What a run leaves behind: markdown tables, the targets' lines, JSON, a plot."""

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
        # CUDA: the host time to issue a call, beside its device time.
        host = any(r.get("host_ms") is not None for r in rs)
        out.append("| provider | ms | GB/s | x roofline | speed-up vs timm |" + (" host us / call |" if host else "")
                   + " checked |")  # fmt: skip
        out.append("|---|---:|---:|---:|---:|" + ("---:|" if host else "") + "---|")
        for r in rs:
            if r.get("status") != "ok":
                why = r.get("reason", "")
                dash = " - |" if host else ""
                out.append(f"| {r['label']} | - | - | - | - |{dash} {r['status']}: {why[:90]} |")
                continue
            check = "roofline" if r["roofline"] else ("yes" if r.get("verified") else "NO")
            speed = r.get("speedup_vs_timm")
            speed_s = f"{speed:.2f}x" if speed is not None else "-"
            ratio = r.get("x_roofline")
            ratio_s = f"{ratio:.2f}" if ratio is not None else "-"
            host_s = ""
            if host:
                host_s = " - |" if r.get("host_ms") is None else f" {r['host_ms'] * 1e3:.0f} |"
            out.append(
                f"| {r['label']} | {_fmt(r['median_ms'])} | {_fmt(r.get('gbps'))} | {ratio_s} | {speed_s} |{host_s}"
                f" {check} |"
            )
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Targets (evaluated in targets.py)
# ---------------------------------------------------------------------------


def targets_text(targets) -> str:
    """One markdown list item per target: status, what was measured, and why the bound holds."""
    lines = []
    for t in targets:
        head = f"- {t['status']} {t['target']} ({t['case']}): "
        if "measured" in t:
            value = f"{t['measured']:.3f} {t['metric']}, bound {t['op']} {t['bound']}"
            lines.append(f"{head}{value}; {t['detail']}\n  why: {t['why']}")
        else:
            lines.append(head + t["detail"])
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
    "collate": ("-.", "plain uint8 collate"),
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
