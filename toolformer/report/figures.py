"""The report's figures as PNG bytes: per tool usefulness and p_start, and two runs compared."""
from __future__ import annotations

import io

import numpy as np

from toolformer.report.summary import RunSummary, ToolSummary


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


KEPT_COLOR, FILTERED_COLOR, TAU_COLOR = "#2e7d32", "#9e9e9e", "#c62828"


def _histogram_range(values: np.ndarray, thresholds: list[float]) -> tuple[float, float]:
    """x range of a usefulness histogram: every value, unless a few far outliers would squash the
    bulk (then the central 99 %); the thresholds always in view."""
    lo, hi = values.min(), values.max()
    if hi - lo > 3 * (np.percentile(values, 99) - np.percentile(values, 1)):
        lo, hi = np.percentile(values, [0.5, 99.5])
    for tau in thresholds:
        lo, hi = min(lo, tau - 0.25), max(hi, tau + 0.25)
    return float(lo), float(max(hi, lo + 1e-3))


def _no_calls(ax) -> None:
    ax.text(0.5, 0.5, "no scored calls", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _usefulness_panel(ax, t: ToolSummary) -> None:
    u, kept = t.usefulness, t.useful_kept
    if not u.size:
        _no_calls(ax)
        return
    tau = t.threshold
    lo, hi = _histogram_range(u, [tau] if tau is not None else [])
    outside = int(((u < lo) | (u > hi)).sum())
    clipped = np.clip(u, lo, hi)  # the rare outliers land in the edge bins; the title says how many
    width = (hi - lo) / 60
    start = lo if tau is None else tau - np.ceil((tau - lo) / width) * width  # τ_f on a bin edge
    ax.hist([clipped[~kept], clipped[kept]], bins=np.arange(start, hi + width, width), stacked=True,
            color=[FILTERED_COLOR, KEPT_COLOR],
            label=[f"filtered ({(~kept).sum():,})", f"kept ({kept.sum():,})"])
    if tau is not None:
        ax.axvline(tau, color=TAU_COLOR, linestyle="--", linewidth=1.5, label=f"τ_f = {tau:g}")
    title = f"{t.name}: usefulness of {u.size:,} scored calls"
    ax.set_title(title + (f"\n({outside:,} outliers drawn in the edge bins)" if outside else ""), fontsize=10)
    ax.set_xlabel("usefulness  L⁻ − L⁺")
    ax.set_ylabel("calls")
    ax.legend(fontsize=8, frameon=False)


def _p_start_panel(ax, t: ToolSummary) -> None:
    groups = [(s, t.p_start[s][t.p_start[s] > 0]) for s in ("filtered", "kept")]
    values = np.concatenate([v for _, v in groups])
    if not values.size:
        _no_calls(ax)
        return
    bins = np.logspace(np.log10(max(values.min(), 1e-8)), np.log10(max(values.max(), 1e-7)) + 1e-9, 31)
    for status, v in groups:
        if v.size:  # each group sums to 1: kept calls are often far fewer than filtered ones
            ax.hist(v, bins=bins, weights=np.full(v.size, 1 / v.size), histtype="step", linewidth=1.8,
                    color=KEPT_COLOR if status == "kept" else FILTERED_COLOR, label=f"{status} ({v.size:,})")
    ax.set_xscale("log")
    ax.set_title("p_start: probability of the call start", fontsize=10)
    ax.set_xlabel("p_start (log scale)")
    ax.set_ylabel("share of calls")
    ax.legend(fontsize=8, frameon=False)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _plt().close(fig)
    return buffer.getvalue()


def tool_figure(t: ToolSummary) -> bytes:
    fig, (left, right) = _plt().subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    _usefulness_panel(left, t)
    _p_start_panel(right, t)
    fig.subplots_adjust(left=0.06, right=0.985, bottom=0.15, top=0.84, wspace=0.22)  # tight_layout is slow
    return _png(fig)


def compare_figure(run: RunSummary, other: RunSummary) -> bytes:
    keys = [t.key for t in run.tools if any(o.key == t.key for o in other.tools)]
    fig, axes = _plt().subplots(1, max(1, len(keys)), figsize=(4.2 * max(1, len(keys)), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pair = [(r.name, next(t for t in r.tools if t.key == key)) for r in (run, other)]
        values = np.concatenate([t.usefulness for _, t in pair])
        if not values.size:
            ax.set_axis_off()
            continue
        lo, hi = _histogram_range(values, [t.threshold for _, t in pair if t.threshold is not None])
        for (name, t), color in zip(pair, ("#1565c0", "#ef6c00")):
            if t.usefulness.size:
                ax.hist(np.clip(t.usefulness, lo, hi), bins=np.linspace(lo, hi, 41), histtype="step",
                        linewidth=1.8, color=color, label=f"{name} ({t.usefulness.size:,})",
                        weights=np.full(t.usefulness.size, 1 / t.usefulness.size))
            if t.threshold is not None:
                ax.axvline(t.threshold, color=color, linestyle="--", linewidth=1)
        ax.set_title(pair[0][1].name, fontsize=10)
        ax.set_xlabel("usefulness  L⁻ − L⁺")
        ax.set_ylabel("share of calls")
        ax.legend(fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.17, top=0.9, wspace=0.3)
    return _png(fig)
