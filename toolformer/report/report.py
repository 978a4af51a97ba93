"""Reports on a run's API calls: what was sampled, executed, kept and filtered, per tool.

    toolformer report --run NAME [--compare OTHER]   runs/NAME/report.html (+ report.md, report-*.png)
    toolformer show --run NAME --tool T [--kept|--filtered|--failed] [--top N]   a terminal table

The page is one self-contained file (inline CSS/JS, figures as base64 PNG). Counts, figures and
the "what if τ_f" table come from every scored record; the example rows are a bounded sample (the
top kept, the nearest misses, the worst and the failed of each tool, plus a stratified random
sample), embedded as a JSON blob that the page's script renders with textContent only.
Each scored.jsonl is read twice: once for the statistics (keeping only numbers per record), once
to pick up the chosen example lines, so a 100,000-call run never holds all records in memory.
"""
from __future__ import annotations

import base64
import heapq
import html
import io
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolformer.run.records import SCORED, read_jsonl
from toolformer.report.page import EXAMPLES_HTML, PAGE_CSS, PAGE_JS, SLIDER_HTML
from toolformer.run.manifest import DOCUMENT, Run
from toolformer.corpus.syntax import TOOLFORMER, CallSyntax, get_syntax

STATUSES = ("kept", "filtered", "failed")
STATUS_CODES = {"kept": "k", "filtered": "f", "failed": "x"}  # as the page's script reads them
# the funnel of one tool: (label, manifest stage, count key, the step its rate is relative to, side
# branch?). Side branches (calls dropped while sampling, failed executions) are shown when counted.
FUNNEL = (
    ("documents", "sample", "documents", None, False),
    ("documents passing the heuristic", "sample", "documents_heuristic", "documents", False),
    ("windows", "sample", "windows", "documents", False),
    ("windows passing the heuristic", "sample", "windows_heuristic", "windows", False),
    ("positions", "sample", "positions", "windows passing the heuristic", False),
    ("calls sampled", "sample", "samples", "positions", False),
    ("dropped: never closed", "sample", "unclosed", "calls sampled", True),
    ("dropped: unparseable", "sample", "unparseable", "calls sampled", True),
    ("dropped: duplicate", "sample", "duplicates", "calls sampled", True),
    ("candidates", "sample", "candidates", "calls sampled", False),
    ("executed ok", "execute", "executed_ok", "candidates", False),
    ("executed, failed", "execute", "executed_failed", "candidates", True),
    ("kept", "filter", "kept", "executed ok", False),
)
WHAT_IF_THRESHOLDS = (-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
SECTION_SIZE = 25          # top kept / nearest misses / worst / failed rows embedded per tool
MAX_EXAMPLES = 3000        # example rows embedded in the page, all tools together
CONTEXT_CHARS = (260, 180)  # document text shown before and after a call
TOP_VALUES = 10            # most frequent inputs / results listed
SHOWN_SETTINGS = ("model", "syntax", "window", "seed", "max_new_tokens", "temperature")  # at the page's top


# ---------------------------------------------------------------------------- reading a run

def status_of(record: dict) -> str:
    if record["kept"]:
        return "kept"
    return "failed" if record["error"] is not None else "filtered"


def message_pattern(message: str) -> str:
    """Group messages that differ only in the quoted input or the numbers they mention."""
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", message)
    return re.sub(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", message)[:200]


def _tool_threshold(key: str, manifest: dict) -> tuple[float | None, str]:
    """τ_f of a tool and where it came from: the filter stage's config, else the tool's default."""
    config = manifest.get("stages", {}).get(f"filter/{key}", {}).get("config", {})
    if isinstance(config.get("tau_f"), (int, float)):
        return float(config["tau_f"]), "manifest"
    try:
        from toolformer.tools import get_tool
        return float(get_tool(key).tau_f), "tool default"
    except (ValueError, ImportError, AttributeError):
        return None, "unknown"


def _tool_name(key: str) -> str:
    try:
        from toolformer.tools import get_tool
        return get_tool(key).name
    except (ValueError, ImportError, AttributeError):
        return key


def stage_settings(manifest: dict, key: str) -> list:
    """The distinct values of one setting (model, syntax, …) across the run's config and stages."""
    values = [info.get("config", {}).get(key) for info in manifest.get("stages", {}).values()]
    values.append(manifest.get("config", {}).get(key))
    distinct = {}
    for value in values:
        if value is not None:
            distinct.setdefault(json.dumps(value, sort_keys=True), value)
    return list(distinct.values())


def _syntax(manifest: dict) -> CallSyntax:
    names = stage_settings(manifest, "syntax")
    try:
        return get_syntax(names[0]) if names and isinstance(names[0], str) else TOOLFORMER
    except ValueError:
        return TOOLFORMER


@dataclass
class ToolSummary:
    """Everything the report says about one tool, from all its scored records."""
    key: str
    name: str
    tau_f: float | None
    tau_source: str
    scored_path: Path | None
    funnel: list[dict] = field(default_factory=list)   # label, count, base, source
    records: int = 0
    counts: Counter = field(default_factory=Counter)   # kept / filtered / failed
    usefulness: np.ndarray = field(default_factory=lambda: np.zeros(0))   # every non-null value
    useful_kept: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # kept flag, aligned
    p_start: dict = field(default_factory=dict)        # status -> array of p_start
    inputs: Counter = field(default_factory=Counter)
    results: Counter = field(default_factory=Counter)
    errors: dict = field(default_factory=dict)         # pattern -> [count, example message, example input]
    reasons: Counter = field(default_factory=Counter)  # why filtered calls were not kept
    warnings: list[str] = field(default_factory=list)
    # per record, for choosing examples without holding the records: line, usefulness, status
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    line_useful: np.ndarray = field(default_factory=lambda: np.zeros(0))
    line_status: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    first_line_of_error: dict = field(default_factory=dict)

    def count(self, label: str) -> int | None:
        return next((s["count"] for s in self.funnel if s["label"] == label), None)

    def kept_at(self, thresholds) -> np.ndarray:
        """How many calls a threshold would keep: usefulness ≥ τ (failed calls never)."""
        ordered = np.sort(self.usefulness)
        return len(ordered) - np.searchsorted(ordered, np.asarray(thresholds, float), side="left")


@dataclass
class RunSummary:
    name: str
    path: Path
    manifest: dict
    tools: list[ToolSummary]
    syntax: CallSyntax

    @property
    def records(self) -> int:
        return sum(t.records for t in self.tools)


def _tool_keys(run_dir: Path, manifest: dict) -> list[str]:
    """Tools named by the manifest's stages, then any other folder with a scored.jsonl."""
    keys = [stage.split("/", 1)[1] for stage in manifest.get("stages", {}) if "/" in stage]
    keys += sorted(p.parent.name for p in run_dir.glob("*/scored.jsonl"))
    return list(dict.fromkeys(keys))


def _summarize_tool(key: str, run_dir: Path, manifest: dict) -> ToolSummary:
    tau, tau_source = _tool_threshold(key, manifest)
    path = run_dir / key / "scored.jsonl"
    t = ToolSummary(key, _tool_name(key), tau, tau_source, path if path.exists() else None)
    useful, kept_flags, lines, line_useful, line_status = [], [], [], [], []
    p_start = {s: [] for s in STATUSES}
    mismatched = nonfinite = 0
    for number, rec in (read_jsonl(path, SCORED) if t.scored_path else ()):
        status = status_of(rec)
        t.counts[status] += 1
        p_start[status].append(rec["p_start"])
        t.inputs[rec["input"]] += 1
        u = rec["usefulness"]
        if u is not None and not np.isfinite(u):
            nonfinite += 1
            u = None
        lines.append(number)
        line_useful.append(np.nan if u is None else u)
        line_status.append(STATUSES.index(status))
        if u is not None:
            useful.append(u)
            kept_flags.append(rec["kept"])
            if tau is not None and rec["kept"] != (u >= tau):
                mismatched += 1
        if rec["error"] is not None:
            pattern = message_pattern(rec["error"])
            entry = t.errors.setdefault(pattern, [0, rec["error"], rec["input"]])
            entry[0] += 1
            t.first_line_of_error.setdefault(pattern, number)
        else:
            t.results[rec["result"]] += 1
        if status == "filtered" and rec["reason"]:
            t.reasons[message_pattern(rec["reason"])] += 1
    t.records = len(lines)
    t.usefulness = np.asarray(useful, float)
    t.useful_kept = np.asarray(kept_flags, bool)
    t.p_start = {s: np.asarray(v, float) for s, v in p_start.items()}
    t.lines = np.asarray(lines, np.int64)
    t.line_useful = np.asarray(line_useful, float)
    t.line_status = np.asarray(line_status, np.int8)
    if nonfinite:
        t.warnings.append(f"{nonfinite:,} scored calls have a usefulness that is NaN or infinite; "
                          f"they are left out of the figures and the what-if table")
    if mismatched:
        t.warnings.append(f"{mismatched:,} scored calls have a kept flag that disagrees with "
                          f"usefulness ≥ τ_f = {tau:g} (τ_f from the {tau_source})")
    t.funnel = _funnel(t, manifest.get("stages", {}))
    return t


def _funnel(t: ToolSummary, stages: dict) -> list[dict]:
    """Funnel counts from the manifest; where it has none, from scored.jsonl."""
    from_records = {}
    if t.scored_path:
        from_records = {"candidates": t.records, "executed ok": t.records - t.counts["failed"],
                        "executed, failed": t.counts["failed"], "kept": t.counts["kept"]}
    steps = []
    for label, stage, key, base, side in FUNNEL:
        recorded = stages.get(f"{stage}/{t.key}", {}).get("counts", {}).get(key)
        count, source = (recorded, "manifest") if isinstance(recorded, int) else (from_records.get(label), "records")
        if label in from_records and source == "manifest" and from_records[label] != recorded:
            t.warnings.append(f"the manifest counts {recorded:,} {label} but {t.key}/scored.jsonl has "
                              f"{from_records[label]:,} (an unfinished or re-run stage?)")
        if count is None and side:
            continue
        steps.append({"label": label, "count": count, "base": base, "side": side,
                      "source": source if count is not None else None})
    return steps


def read_manifest(run_dir: Path) -> dict:
    """The run's manifest.json, checked for the shape the report reads; {} when there is none."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run folder {run_dir}")
    path = run_dir / "manifest.json"
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: bad JSON: {err.msg}") from None
    stages = manifest.get("stages", {}) if isinstance(manifest, dict) else None
    if not isinstance(stages, dict) or not all(isinstance(v, dict) for v in stages.values()):
        raise ValueError(f"{path}:1: expected an object whose 'stages' maps names to objects")
    return manifest


def summarize_run(run_dir: Path) -> RunSummary:
    manifest = read_manifest(run_dir)
    keys = _tool_keys(run_dir, manifest)
    if not keys:
        raise FileNotFoundError(f"{run_dir} has no stages in its manifest and no <tool>/scored.jsonl: "
                                f"run `toolformer sample` (or curate) first")
    tools = [_summarize_tool(key, run_dir, manifest) for key in keys]
    return RunSummary(run_dir.name, run_dir, manifest, tools, _syntax(manifest))


# ---------------------------------------------------------------------------- example rows

def _sections(t: ToolSummary) -> dict[int, list[str]]:
    """Line -> sections it belongs to: top kept, nearest misses, worst, failed."""
    tags: dict[int, list[str]] = {}
    u, status = t.line_useful, t.line_status
    scored = ~np.isnan(u)
    kept = np.flatnonzero(status == 0)
    misses = np.flatnonzero((status == 1) & scored)
    picks = {
        "top": kept[np.argsort(-u[kept], kind="stable")][:SECTION_SIZE],
        "near": misses[np.argsort(-u[misses], kind="stable")][:SECTION_SIZE],
        "worst": np.flatnonzero(scored)[np.argsort(u[scored], kind="stable")][:SECTION_SIZE],
    }
    # one example of each error first, then the first failures in file order
    failed_lines = list(dict.fromkeys([*t.first_line_of_error.values(),
                                       *t.lines[status == 2][:SECTION_SIZE].tolist()]))[:SECTION_SIZE]
    line_index = {line: i for i, line in enumerate(t.lines.tolist())} if failed_lines else {}
    picks["failed"] = np.asarray([line_index[line] for line in failed_lines], np.int64)
    for name, indices in picks.items():
        for i in indices.tolist():
            tags.setdefault(int(t.lines[i]), []).append(name)
    return tags


def choose_examples(run: RunSummary, max_rows: int, seed: int) -> dict[str, dict[int, list[str]]]:
    """Tool -> {line: sections} for the rows the page embeds: every section row, then an even
    random sample of each (tool, status) stratum up to max_rows in all."""
    chosen = {t.key: _sections(t) for t in run.tools}
    left = max_rows - sum(len(c) for c in chosen.values())
    strata = []
    for t in run.tools:
        for code in range(len(STATUSES)):
            pool = [line for line in t.lines[t.line_status == code].tolist() if line not in chosen[t.key]]
            if pool:
                strata.append((t.key, pool))
    rng = np.random.default_rng(seed)
    # smallest strata first: what they cannot use goes to the larger ones
    for i, (key, pool) in enumerate(sorted(strata, key=lambda s: len(s[1]))):
        share = max(0, left) // (len(strata) - i)
        take = pool if len(pool) <= share else rng.choice(pool, share, replace=False).tolist()
        for line in take:
            chosen[key][int(line)] = ["sample"]
        left -= len(take)
    return chosen


def around(text: str, position: int, chars: tuple[int, int] = CONTEXT_CHARS) -> tuple[str, str, bool, bool]:
    """(text before, text after, cut before?, cut after?) of a call at `position`, cut at spaces."""
    position = min(max(position, 0), len(text))
    start, end = max(0, position - chars[0]), min(len(text), position + chars[1])
    before, after = text[start:position], text[position:end]
    if start > 0 and " " in before[:40]:
        before = before[before.index(" ") + 1:]
    if end < len(text) and " " in after[-40:]:
        after = after[:after.rindex(" ")]
    return before, after, start > 0, end < len(text)


def call_parts(record: dict, syntax: CallSyntax) -> tuple[str, str | None, str]:
    """The call as it would stand in the text, split as (up to the arrow, result, end marker)."""
    result = record["result"]
    if result is None:
        return record["call"], None, ""
    parsed = syntax.parse(record["call"])
    if not parsed:
        return f"{record['call']} → ", result, ""
    head = syntax.prefix_for_result(parsed[0].tool, parsed[0].input)
    full = syntax.render(parsed[0].tool, parsed[0].input, result)
    return head, result, full[len(head) + len(result):]


def read_lines(path: Path, wanted: set[int]) -> dict[int, dict]:
    """The records on the given line numbers (already validated by the first pass)."""
    found = {}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if number in wanted:
                found[number] = json.loads(raw)
    return found


def document_texts(run_dir: Path, ids: set[str]) -> dict[str, str]:
    path = run_dir / "documents.jsonl"
    if not ids or not path.exists():
        return {}
    return {rec["id"]: rec["text"] for _, rec in read_jsonl(path, DOCUMENT) if rec["id"] in ids}


def _num(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def example_row(record: dict, text: str | None, syntax: CallSyntax, tool_index: int,
                sections: list[str], chars: tuple[int, int] = CONTEXT_CHARS) -> dict:
    """One example as the page's script reads it (short keys: thousands of rows are embedded)."""
    head, result, tail = call_parts(record, syntax)
    before, after, cut_before, cut_after = around(text, record["position"], chars) if text is not None \
        else ("", "", False, False)
    return {"t": tool_index, "doc": record["doc_id"], "pos": record["position"], "b": before, "a": after,
            "cb": cut_before, "ca": cut_after, "nodoc": text is None, "c": head, "r": result, "z": tail,
            "e": record["error"], "why": record["reason"], "s": STATUS_CODES[status_of(record)],
            "u": _num(record["usefulness"], 6), "p": _num(record["p_start"], 6),
            "l": [_num(record[k]) for k in ("loss_plus", "loss_no_call", "loss_no_result", "loss_minus")],
            "ms": _num(record["latency_ms"], 1), "g": sections}


def collect_examples(run: RunSummary, max_rows: int, seed: int) -> tuple[list[dict], list[str]]:
    chosen = choose_examples(run, max_rows, seed)
    records = {t.key: read_lines(t.scored_path, set(chosen[t.key])) if chosen[t.key] else {} for t in run.tools}
    texts = document_texts(run.path, {r["doc_id"] for recs in records.values() for r in recs.values()})
    rows, warnings = [], []
    missing = outside = 0
    for index, t in enumerate(run.tools):
        for line in sorted(records[t.key]):
            rec = records[t.key][line]
            text = texts.get(rec["doc_id"])
            missing += text is None
            outside += text is not None and not 0 <= rec["position"] <= len(text)
            rows.append(example_row(rec, text, run.syntax, index, chosen[t.key][line]))
    if missing:
        warnings.append(f"{missing:,} example rows name a document that is not in documents.jsonl; "
                        f"they are shown without their text")
    if outside:
        warnings.append(f"{outside:,} example rows have a position outside their document's text; "
                        f"they are shown at the nearest end")
    return rows, warnings


# ---------------------------------------------------------------------------- figures

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


def _usefulness_panel(ax, t: ToolSummary) -> None:
    u, kept = t.usefulness, t.useful_kept
    if not u.size:
        ax.text(0.5, 0.5, "no scored calls", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    lo, hi = _histogram_range(u, [t.tau_f] if t.tau_f is not None else [])
    outside = int(((u < lo) | (u > hi)).sum())
    clipped = np.clip(u, lo, hi)  # the rare outliers land in the edge bins; the title says how many
    width = (hi - lo) / 60
    start = lo if t.tau_f is None else t.tau_f - np.ceil((t.tau_f - lo) / width) * width  # τ_f on a bin edge
    ax.hist([clipped[~kept], clipped[kept]], bins=np.arange(start, hi + width, width), stacked=True,
            color=[FILTERED_COLOR, KEPT_COLOR],
            label=[f"filtered ({(~kept).sum():,})", f"kept ({kept.sum():,})"])
    if t.tau_f is not None:
        ax.axvline(t.tau_f, color=TAU_COLOR, linestyle="--", linewidth=1.5, label=f"τ_f = {t.tau_f:g}")
    title = f"{t.name}: usefulness of {u.size:,} scored calls"
    ax.set_title(title + (f"\n({outside:,} outliers drawn in the edge bins)" if outside else ""), fontsize=10)
    ax.set_xlabel("usefulness  L⁻ − L⁺")
    ax.set_ylabel("calls")
    ax.legend(fontsize=8, frameon=False)


def _p_start_panel(ax, t: ToolSummary) -> None:
    groups = [(s, t.p_start[s][t.p_start[s] > 0]) for s in ("filtered", "kept")]
    values = np.concatenate([v for _, v in groups])
    if not values.size:
        ax.text(0.5, 0.5, "no scored calls", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
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
        lo, hi = _histogram_range(values, [t.tau_f for _, t in pair if t.tau_f is not None])
        for (name, t), color in zip(pair, ("#1565c0", "#ef6c00")):
            if t.usefulness.size:
                ax.hist(np.clip(t.usefulness, lo, hi), bins=np.linspace(lo, hi, 41), histtype="step",
                        linewidth=1.8, color=color, label=f"{name} ({t.usefulness.size:,})",
                        weights=np.full(t.usefulness.size, 1 / t.usefulness.size))
            if t.tau_f is not None:
                ax.axvline(t.tau_f, color=color, linestyle="--", linewidth=1)
        ax.set_title(pair[0][1].name, fontsize=10)
        ax.set_xlabel("usefulness  L⁻ − L⁺")
        ax.set_ylabel("share of calls")
        ax.legend(fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.17, top=0.9, wspace=0.3)
    return _png(fig)


# ---------------------------------------------------------------------------- tables (HTML and Markdown)

def _int(n) -> str:
    return "–" if n is None else f"{n:,}"


def _pct(part: float, whole: float) -> str:
    return "–" if not whole or part is None else f"{100 * part / whole:.1f} %"


def _rate(count: int, base: int, base_label: str) -> str:
    """A share when the step narrows (kept of executed), a multiple when it widens (positions per window)."""
    return f"{_pct(count, base)} of {base_label}" if count <= base else f"{count / base:.2f} × {base_label}"


def signed_usefulness(u: float | None) -> str:
    """Rounded down to 3 decimals, so that a call just under τ_f never reads as τ_f itself."""
    return "–" if u is None else f"{math.floor(u * 1000 + 1e-9) / 1000:+.3f}"


def funnel_table(t: ToolSummary) -> tuple[list[str], list[list]]:
    """Step, count (* when counted from scored.jsonl because the manifest has none), rate."""
    counts = {s["label"]: s["count"] for s in t.funnel}
    rows = []
    for s in t.funnel:
        base = counts.get(s["base"])
        count = "not run" if s["count"] is None else _int(s["count"]) + (" *" if s["source"] == "records" else "")
        rate = _rate(s["count"], base, s["base"]) if s["count"] is not None and base else ""
        rows.append([s["label"], count, rate])
    return ["step", "count", "rate"], rows


FUNNEL_NOTE = "* counted from scored.jsonl: the manifest has no count for this step"


def usefulness_table(t: ToolSummary) -> tuple[list[str], list[list]]:
    """Quantiles of usefulness, and of p_start for kept and filtered calls."""
    qs = (0, 10, 50, 90, 100)
    rows = []
    if t.usefulness.size:
        rows.append(["L⁻ − L⁺", *(f"{v:+.2f}" for v in np.percentile(t.usefulness, qs))])
    for status in ("kept", "filtered"):
        if t.p_start.get(status, np.zeros(0)).size:
            rows.append([f"p_start {status}", *(f"{v:.2g}" for v in np.percentile(t.p_start[status], qs))])
    return ["", "min", "10 %", "median", "90 %", "max"], rows


def overview_table(run: RunSummary) -> tuple[list[str], list[list]]:
    rows = []
    for t in run.tools:
        u = t.usefulness
        candidates, ok, kept = t.count("candidates"), t.count("executed ok"), t.count("kept")
        rows.append([t.name, "–" if t.tau_f is None else f"{t.tau_f:g}", _int(candidates), _int(ok),
                     _int(t.count("executed, failed")), _int(kept), _pct(kept, ok), _pct(kept, candidates),
                     f"{np.median(u):+.2f}" if u.size else "–", f"{u.max():+.2f}" if u.size else "–"])
    return ["tool", "τ_f", "candidates", "executed ok", "failed", "kept", "kept / executed ok",
            "kept / candidates", "median usefulness", "best"], rows


def what_if_thresholds(run: RunSummary) -> list[float]:
    own = [t.tau_f for t in run.tools if t.tau_f is not None]
    return sorted(set(WHAT_IF_THRESHOLDS) | set(own))


def what_if_table(run: RunSummary) -> tuple[list[str], list[list]]:
    thresholds = what_if_thresholds(run)
    rows = []
    for t in run.tools:
        kept = t.kept_at(thresholds)
        rows.append([t.name, _int(len(t.usefulness))] + [
            f"{k:,} ({_pct(k, len(t.usefulness))})" + (" ◀ τ_f" if tau == t.tau_f else "")
            for tau, k in zip(thresholds, kept.tolist())])
    return ["tool", "scored"] + [f"τ = {tau:g}" for tau in thresholds], rows


def what_if_grid(run: RunSummary, step: float = 0.05, max_steps: int = 400) -> dict:
    """Kept counts per tool on a fine threshold grid, for the page's slider."""
    values = np.concatenate([t.usefulness for t in run.tools] + [np.zeros(0)])
    taus = [t.tau_f for t in run.tools if t.tau_f is not None] or [0.0]
    lo = np.floor(min(np.percentile(values, 1) if values.size else 0, min(taus) - 1))
    hi = np.ceil(max(np.percentile(values, 99) if values.size else 0, max(taus) + 1))
    lo = max(lo, hi - step * max_steps)
    grid = np.round(np.arange(lo, hi + step / 2, step), 2)
    return {"grid": grid.tolist(), "kept": {t.key: t.kept_at(grid).tolist() for t in run.tools}}


def top_values_table(counter: Counter, total: int) -> tuple[list[str], list[list]]:
    return ["value", "calls", "share"], [[_clip(v, 90), _int(n), _pct(n, total)]
                                         for v, n in counter.most_common(TOP_VALUES)]


def errors_table(t: ToolSummary) -> tuple[list[str], list[list]]:
    failed = t.counts["failed"]
    rows = [[pattern, _int(n), _pct(n, failed), _clip(example, 120), _clip(inp, 60)]
            for pattern, (n, example, inp) in sorted(t.errors.items(), key=lambda kv: -kv[1][0])]
    return ["error (numbers → #, quoted text → '…')", "calls", "share of failures", "example", "its input"], rows


def compare_table(run: RunSummary, other: RunSummary) -> tuple[list[str], list[list]]:
    """Funnel steps as rows; per tool, this run's and the other run's column side by side."""
    keys = list(dict.fromkeys([t.key for t in run.tools] + [t.key for t in other.tools]))
    pairs = [[next((t for t in r.tools if t.key == key), None) for r in (run, other)] for key in keys]
    header = [""] + [f"{(a or b).name} · {r.name}" for a, b in pairs for r in (run, other)]

    def row(label: str, value) -> list | None:
        cells = [value(t) if t is not None else "–" for pair in pairs for t in pair]
        return [label, *cells] if any(c != "–" for c in cells) else None

    rows = [row("τ_f", lambda t: "–" if t.tau_f is None else f"{t.tau_f:g}")]
    rows += [row(label, lambda t, label=label: _int(t.count(label))) for label, *_ in FUNNEL]
    rows += [row("kept / candidates", lambda t: _pct(t.count("kept"), t.count("candidates"))),
             row("median usefulness", lambda t: f"{np.median(t.usefulness):+.2f}" if t.usefulness.size else "–")]
    return header, [r for r in rows if r is not None]


def _flatten(node, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}; strings stay as they are, other values become JSON."""
    if isinstance(node, dict) and (node or not prefix):
        out = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node if isinstance(node, str) else json.dumps(node, ensure_ascii=False)}


def settings_of(manifest: dict) -> dict[str, str]:
    """Config, seed and stage settings, flattened: what makes two runs differ."""
    flat = _flatten({"config": manifest.get("config", {}), "seed": manifest.get("seed")})
    for stage, info in manifest.get("stages", {}).items():
        if isinstance(info, dict):
            flat.update(_flatten(info.get("config", {}), f"stages.{stage}.config"))
    return flat


def settings_diff_table(run: RunSummary, other: RunSummary) -> tuple[list[str], list[list]]:
    a, b = settings_of(run.manifest), settings_of(other.manifest)
    rows = [[key, _clip(a.get(key, "–"), 80), _clip(b.get(key, "–"), 80)]
            for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
    return ["setting", run.name, other.name], rows


def stages_table(manifest: dict) -> tuple[list[str], list[list]]:
    rows = []
    for stage, info in manifest.get("stages", {}).items():
        info = info if isinstance(info, dict) else {}
        counts = info.get("counts", {})
        seconds = info.get("seconds")
        settings = ", ".join(f"{k}={v if len(v) <= 60 else f'({len(v):,} characters)'}"
                             for k, v in _flatten(info.get("config", {})).items())
        rows.append([stage, f"{seconds:,.1f}" if isinstance(seconds, (int, float)) else "–",
                     ", ".join(f"{k} {_int(v) if isinstance(v, int) else v}" for k, v in counts.items()), settings])
    return ["stage", "seconds", "counts", "settings"], rows


def _clip(value, n: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


# ---------------------------------------------------------------------------- rendering

class Raw(str):
    """HTML that is already escaped (built here, never from data)."""


def esc(value) -> str:
    return value if isinstance(value, Raw) else html.escape(str(value), quote=True)


def html_table(table: tuple[list[str], list[list]], cls: str = "") -> Raw:
    header, rows = table
    if not rows:
        return Raw('<p class="muted">none</p>')
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return Raw(f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def md_table(table: tuple[list[str], list[list]]) -> str:
    header, rows = table
    if not rows:
        return "none\n"

    def cell(value) -> str:
        return " ".join(str(value).split()).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def json_for_script(data) -> str:
    """JSON safe inside <script>: no '<' can close the element, no '&' starts an entity."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _figure_html(png: bytes, name: str, alt: str, caption: str) -> Raw:
    return Raw(f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
               f'<figcaption>{esc(caption)} Also saved as <code>{esc(name)}</code>.</figcaption></figure>')


def _funnel_html(t: ToolSummary) -> Raw:
    _, rows = funnel_table(t)
    top = max([s["count"] or 0 for s in t.funnel] + [1])
    body = []
    for step, (label, count, rate) in zip(t.funnel, rows):
        width = 0 if not step["count"] else max(0.4, 100 * step["count"] / top)
        bar = f'<div class="track"><div class="bar {"kept" if step["label"] == "kept" else ""}" ' \
              f'style="width:{width:.2f}%"></div></div>'
        body.append(f'<tr class="{"sub" if step["side"] else ""}"><td class="label">{esc(label)}</td>'
                    f'<td class="num">{esc(count)}</td><td class="barcell">{bar}</td>'
                    f'<td class="rate">{esc(rate)}</td></tr>')
    note = f'<p class="note">{esc(FUNNEL_NOTE)}</p>' if any(s["source"] == "records" for s in t.funnel) else ""
    return Raw('<table class="funnel"><thead><tr><th>step</th><th class="num">count</th><th></th><th>rate</th>'
               f'</tr></thead><tbody>{"".join(body)}</tbody></table>{note}')


def manifest_facts(run: RunSummary) -> list[tuple[str, str]]:
    """The run at a glance: the settings that matter, thresholds per tool, versions."""
    m = run.manifest
    facts = [("run", run.name), ("calls", f"{run.records:,} scored calls in {len(run.tools)} tools")]
    facts += [(key, str(m[key])) for key in ("created", "seed") if key in m]
    facts += [(key, ", ".join(values)) for key in SHOWN_SETTINGS
              if (values := [_clip(v, 80) for v in stage_settings(m, key)])]
    facts += [(f"config.{k}", v) for k, v in _flatten(m.get("config", {})).items()]
    for t in run.tools:
        sample = m.get("stages", {}).get(f"sample/{t.key}", {}).get("config", {})
        thresholds = [f"{k} {sample[k]}" for k in ("tau_s", "k", "m") if k in sample]
        thresholds.append("τ_f ?" if t.tau_f is None else f"τ_f {t.tau_f:g}" +
                          ("" if t.tau_source == "manifest" else f" ({t.tau_source})"))
        facts.append((f"{t.name} thresholds", " · ".join(thresholds)))
    facts += [(f"version {k}", v) for k, v in _flatten(m.get("versions", {})).items()]
    return [(k, _clip(v, 200)) for k, v in facts]


def _manifest_html(run: RunSummary) -> Raw:
    items = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in manifest_facts(run))
    m = run.manifest
    full = esc(json.dumps(m, indent=2, ensure_ascii=False)) if m else "no manifest.json"
    return Raw(f'<dl class="facts">{items}</dl><h3>Stages</h3>{html_table(stages_table(m))}'
               f'<details><summary>the whole manifest.json</summary><pre>{full}</pre></details>')


def _tool_html(t: ToolSummary, figure: bytes | None, figure_name: str | None) -> Raw:
    parts = [f'<section class="tool" id="tool-{esc(t.key)}"><h2>{esc(t.name)}'
             f'<span class="tau">τ_f = {esc("?" if t.tau_f is None else f"{t.tau_f:g}")}</span></h2>']
    parts += [f'<p class="warn">⚠ {esc(w)}</p>' for w in t.warnings]
    reasons = (["reason (numbers → #)", "calls"], [[r, _int(n)] for r, n in t.reasons.most_common(8)])
    parts.append(f'<div class="cols wide-left"><div><h3>Funnel</h3>{_funnel_html(t)}</div><div><h3>Distributions</h3>'
                 f'{html_table(usefulness_table(t), "num")}<h3>Not kept, why</h3>{html_table(reasons, "num")}</div></div>')
    if figure:
        parts.append(_figure_html(figure, figure_name, f"usefulness and p_start of {t.name}",
                                  "Left: L⁻ − L⁺ of every scored call, kept in green, τ_f dashed. "
                                  "Right: p_start of kept and filtered calls."))
    parts.append(f'<h3>At the threshold\'s edge</h3><div class="edge" data-tool="{esc(t.key)}"></div>')
    ok = t.records - t.counts["failed"]
    parts.append(f'<div class="cols"><div><h3>Most frequent inputs ({len(t.inputs):,} distinct)</h3>'
                 f'{html_table(top_values_table(t.inputs, t.records), "values")}</div>'
                 f'<div><h3>Most frequent results ({len(t.results):,} distinct)</h3>'
                 f'{html_table(top_values_table(t.results, ok), "values")}</div></div>')
    parts.append(f'<h3>Tool errors ({t.counts["failed"]:,} failed calls, {_pct(t.counts["failed"], t.records)})</h3>'
                 f'{html_table(errors_table(t))}</section>')
    return Raw("".join(parts))


def render_html(run: RunSummary, rows: list[dict], figures: dict[str, tuple[bytes, str]],
                other: RunSummary | None, compare_png: tuple[bytes, str] | None, warnings: list[str]) -> str:
    tools_meta = [{"key": t.key, "name": t.name, "tau": t.tau_f, "scored": len(t.usefulness),
                   "records": t.records, "kept": t.counts["kept"]} for t in run.tools]
    data = {"run": run.name, "tools": tools_meta, "rows": rows, "records": run.records,
            "whatif": what_if_grid(run)}
    nav = "".join(f'<a href="#tool-{esc(t.key)}">{esc(t.name)}</a>' for t in run.tools)
    compare_link = '<a href="#compare">compare</a>' if other else ""
    body = [f'<header><h1>Toolformer run <code>{esc(run.name)}</code></h1>'
            f'<p class="muted">report generated {esc(time.strftime("%Y-%m-%d %H:%M"))} · {run.records:,} scored '
            f'calls · {sum(t.counts["kept"] for t in run.tools):,} kept</p>'
            f'<nav><a href="#manifest">manifest</a><a href="#overview">overview</a><a href="#whatif">what if τ_f</a>'
            f'{nav}{compare_link}<a href="#examples">examples</a></nav></header><main>']
    body += [f'<p class="warn">⚠ {esc(w)}</p>' for w in warnings]
    body.append(f'<section id="manifest"><h2>Manifest</h2>{_manifest_html(run)}</section>')
    body.append(f'<section id="overview"><h2>Overview</h2>{html_table(overview_table(run), "num")}</section>')
    body.append(f'<section id="whatif"><h2>What if τ_f were different?</h2><p class="muted">Calls each tool would '
                f'keep at other thresholds (usefulness ≥ τ), from all scored records; failed calls are never kept.</p>'
                f'{html_table(what_if_table(run), "num")}{SLIDER_HTML}</section>')
    body += [_tool_html(t, *figures.get(t.key, (None, None))) for t in run.tools]
    if other:
        img = _figure_html(*compare_png, "usefulness of both runs",
                           "Usefulness per tool, solid: distribution, dashed: τ_f.") if compare_png else ""
        body.append(f'<section id="compare"><h2>Compared with <code>{esc(other.name)}</code></h2>'
                    f'<h3>Settings that differ</h3>{html_table(settings_diff_table(run, other))}'
                    f'<h3>Funnels and kept calls</h3>{html_table(compare_table(run, other), "num")}{img}</section>')
    body.append(EXAMPLES_HTML + "</main>")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\">"
            f"<title>toolformer report · {esc(run.name)}</title><style>{PAGE_CSS}</style></head><body>"
            + "".join(body)
            + f'<script type="application/json" id="report-data">{json_for_script(data)}</script>'
            + f"<script>{PAGE_JS}</script></body></html>\n")


def _md_example(row: dict) -> list[str]:
    call = row["c"] + (row["r"] or "") + row["z"]
    # shorter than the page's: a row of a table in a text file
    before, cut_before = _clip_words(row["b"], 120, from_end=True)
    after, cut_after = _clip_words(row["a"], 90)
    text = ("…" if row["cb"] or cut_before else "") + before + f" `{call}` " + after + \
        ("…" if row["ca"] or cut_after else "")
    mark = {"k": "✓", "f": "✗", "x": f"⚠ {row['e']}"}[row["s"]]
    return [text, signed_usefulness(row["u"]), mark]


def _clip_words(text: str, n: int, from_end: bool = False) -> tuple[str, bool]:
    """About n characters of text, cut at a space; and whether it was cut."""
    if len(text) <= n:
        return text, False
    if from_end:
        cut = text[-n:]
        return cut[cut.index(" ") + 1:] if " " in cut[:25] else cut, True
    cut = text[:n]
    return cut[:cut.rindex(" ")] if " " in cut[-25:] else cut, True


def render_md(run: RunSummary, rows: list[dict], figures: dict[str, tuple[bytes, str]],
              other: RunSummary | None, compare_png_name: str | None, warnings: list[str]) -> str:
    out = [f"# Toolformer run `{run.name}`\n", f"{run.records:,} scored calls, "
           f"{sum(t.counts['kept'] for t in run.tools):,} kept. report.html has the same and an explorer of "
           f"{len(rows):,} example calls.\n"]
    out += [f"> ⚠ {w}\n" for w in warnings]
    out += ["## Manifest\n", md_table((["", ""], manifest_facts(run))),
            "\n### Stages\n", md_table(stages_table(run.manifest)),
            "\n## Overview\n", md_table(overview_table(run)),
            "\n## What if τ_f were different?\n", md_table(what_if_table(run))]
    for t in run.tools:
        out += [f"\n## {t.name} (τ_f = {'?' if t.tau_f is None else f'{t.tau_f:g}'})\n"]
        out += [f"> ⚠ {w}\n" for w in t.warnings]
        out += [md_table(funnel_table(t))]
        if any(s["source"] == "records" for s in t.funnel):
            out.append(f"\n{FUNNEL_NOTE}\n")
        out += ["\n### Distributions\n", md_table(usefulness_table(t))]
        if t.key in figures:
            out.append(f"\n![usefulness and p_start of {t.name}]({figures[t.key][1]})\n")
        for section, title in (("top", "Top kept"), ("near", "Nearest misses"), ("worst", "Worst")):
            picked = sorted((r for r in rows if r["t"] == run.tools.index(t) and section in r["g"]),
                            key=lambda r: -r["u"] if section != "worst" else r["u"])[:5]
            out += [f"\n### {title}\n", md_table((["example", "L⁻ − L⁺", "kept"], [_md_example(r) for r in picked]))]
        out += ["\n### Most frequent inputs\n", md_table(top_values_table(t.inputs, t.records)),
                "\n### Most frequent results\n", md_table(top_values_table(t.results, t.records - t.counts["failed"])),
                "\n### Tool errors\n", md_table(errors_table(t))]
    if other:
        out += [f"\n## Compared with `{other.name}`\n", "### Settings that differ\n",
                md_table(settings_diff_table(run, other)), "\n### Funnels and kept calls\n",
                md_table(compare_table(run, other))]
        if compare_png_name:
            out.append(f"\n![usefulness of both runs]({compare_png_name})\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------- commands

def write_report(run_dir: Path, compare_dir: Path | None = None, max_rows: int = MAX_EXAMPLES,
                 seed: int | None = None) -> dict:
    """Write report.html, report.md and the figures into run_dir; return the figures of the job."""
    t0 = time.perf_counter()
    run = summarize_run(run_dir)
    other = summarize_run(compare_dir) if compare_dir else None
    seed = seed if seed is not None else int(run.manifest.get("seed", 0) or 0)
    rows, warnings = collect_examples(run, max_rows, seed)
    figures = {}
    for t in run.tools:
        if t.records:
            name = f"report-{t.key}.png"
            png = tool_figure(t)
            (run_dir / name).write_bytes(png)
            figures[t.key] = (png, name)
    compare_png = None
    if other:
        compare_png = (compare_figure(run, other), f"report-compare-{other.name}.png")
        (run_dir / compare_png[1]).write_bytes(compare_png[0])
    page = render_html(run, rows, figures, other, compare_png, warnings)
    markdown = render_md(run, rows, figures, other, compare_png[1] if compare_png else None, warnings)
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    html_path.write_text(page, encoding="utf-8")
    md_path.write_text(markdown, encoding="utf-8")
    return {"run": run.name, "html": str(html_path), "md": str(md_path),
            "html_bytes": html_path.stat().st_size, "md_bytes": md_path.stat().st_size,
            "figures": [str(run_dir / name) for _, name in figures.values()]
            + ([str(run_dir / compare_png[1])] if compare_png else []),
            "records": run.records, "examples_embedded": len(rows),
            "tools": {t.key: {"tau_f": t.tau_f, "records": t.records, "scored": len(t.usefulness),
                              **{s: t.counts[s] for s in STATUSES}} for t in run.tools},
            "warnings": warnings + [w for t in run.tools for w in t.warnings],
            "seconds": round(time.perf_counter() - t0, 3)}


def check_in_browser(html_path: Path, screenshot: Path) -> dict:
    """Open the page in headless Chromium: load time, console errors, a screenshot."""
    from toolformer.report.browser import Chromium
    with Chromium() as browser:
        load_s = browser.open(html_path)
        browser.screenshot(screenshot)
        return {"load_s": round(load_s, 3), "console_errors": browser.console_errors,
                "screenshot": str(screenshot)}


def report_command(args) -> dict:
    run = Run(args.run, args.runs_dir)
    other = Run(args.compare, args.runs_dir).path if args.compare else None
    figures = write_report(run.path, other, max_rows=args.max_examples, seed=args.seed)
    print(f"wrote {figures['html']} ({figures['html_bytes'] / 1e6:.2f} MB, {figures['examples_embedded']:,} of "
          f"{figures['records']:,} calls embedded) and {figures['md']} in {figures['seconds']:.1f} s")
    for warning in figures["warnings"]:
        print(f"warning: {warning}")
    if args.screenshot:
        figures.update(check_in_browser(Path(figures["html"]), run.path / "report.png"))
        print(f"opened in headless Chromium in {figures['load_s']:.2f} s; screenshot {figures['screenshot']}; "
              f"{len(figures['console_errors'])} console errors")
    return figures


def show_command(args) -> dict:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    run = Run(args.run, args.runs_dir)
    manifest = read_manifest(run.path)
    key = args.tool.lower()
    path = run.path / key / "scored.jsonl"
    if not path.exists():
        found = ", ".join(sorted(p.parent.name for p in run.path.glob("*/scored.jsonl"))) or "none"
        raise FileNotFoundError(f"{path} does not exist (tools with scored calls in this run: {found})")
    wanted = "kept" if args.kept else "filtered" if args.filtered else "failed" if args.failed else None
    totals, matching, best = Counter(), 0, []  # best: a heap of the top rows so far
    for number, rec in read_jsonl(path, SCORED):
        status = status_of(rec)
        totals[status] += 1
        if wanted not in (None, status):
            continue
        matching += 1
        # best usefulness first (failures, which have none, last), ties in file order
        rank = (-np.inf if rec["usefulness"] is None else rec["usefulness"], -number)
        if len(best) < args.top:
            heapq.heappush(best, (rank, rec))
        elif rank > best[0][0]:
            heapq.heapreplace(best, (rank, rec))
    picked = [rec for _, rec in sorted(best, key=lambda item: item[0], reverse=True)]
    texts = document_texts(run.path, {r["doc_id"] for r in picked})
    syntax = _syntax(manifest)
    tau, _ = _tool_threshold(key, manifest)
    scored_total = sum(totals.values())
    title = (f"{_tool_name(key)} in run {run.name}: {scored_total:,} calls, {totals['kept']:,} kept "
             f"({_pct(totals['kept'], scored_total)}), {totals['failed']:,} failed; τ_f = "
             f"{'?' if tau is None else f'{tau:g}'}")
    table = Table(title=title, show_lines=True, expand=True)
    table.add_column("L⁻ − L⁺", justify="right", no_wrap=True)
    table.add_column("kept", justify="center", no_wrap=True)
    table.add_column("document text with the call in place", ratio=1)
    table.add_column("L⁺ · L(ε) · L(e(c,ε))", justify="right")
    colors = {"kept": "bold white on dark_green", "filtered": "bold white on grey37", "failed": "bold white on dark_red"}
    for rec in picked:
        status = status_of(rec)
        text = texts.get(rec["doc_id"])
        before, after, cut_before, cut_after = around(text, rec["position"], (160, 110)) if text is not None \
            else ("", "", False, False)
        head, result, tail = call_parts(rec, syntax)
        cell = Text("…" if cut_before else "")
        cell.append(before + ("" if not before or before[-1].isspace() else " "))  # the highlight has no margin here
        cell.append(head, style=colors[status])
        if result is not None:
            cell.append(result, style=colors[status] + " underline")
        cell.append(tail, style=colors[status])
        cell.append(after)
        cell.append("…" if cut_after else "")
        if rec["error"] is not None:
            cell.append(f"\nerror: {rec['error']}", style="red")
        if text is None:
            cell.append(f"\n(document {rec['doc_id']} is not in documents.jsonl)", style="dim")
        losses = " · ".join("–" if rec[k] is None else f"{rec[k]:.2f}"
                            for k in ("loss_plus", "loss_no_call", "loss_no_result"))
        u = rec["usefulness"]
        table.add_row(signed_usefulness(u), {"kept": "✓", "filtered": "✗", "failed": "⚠"}[status],
                      cell, losses)
    Console().print(table)
    return {"run": run.name, "tool": key, "status": wanted or "all", "matching": matching,
            "shown": len(picked), "records": scored_total, **{s: totals[s] for s in STATUSES}}


def add_commands(sub, command) -> None:
    p = command(sub, "report", report_command,
                "write runs/RUN/report.html (self-contained) and report.md: funnels, usefulness, examples")
    p.add_argument("--run", required=True, help="run name (a folder under --runs-dir)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--compare", metavar="OTHER", help="another run to put side by side (funnels, kept counts)")
    p.add_argument("--max-examples", type=int, default=MAX_EXAMPLES,
                   help=f"example rows embedded in the page (default {MAX_EXAMPLES}); counts and plots use all")
    p.add_argument("--seed", type=int, help="seed of the random example sample (default: the run's seed)")
    p.add_argument("--screenshot", action="store_true",
                   help="also open the page in headless Chromium: load time, console errors, report.png")
    p = command(sub, "show", show_command, "print a run's calls of one tool as a table in the terminal")
    p.add_argument("--run", required=True)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--tool", required=True, help="tool key, e.g. calculator")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--kept", action="store_true", help="only kept calls")
    which.add_argument("--filtered", action="store_true", help="only calls scored below τ_f")
    which.add_argument("--failed", action="store_true", help="only calls whose execution failed")
    p.add_argument("--top", type=int, default=20, help="rows to print, best usefulness first (default 20)")
