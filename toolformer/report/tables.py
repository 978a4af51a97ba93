"""The report's tables, each as (header, rows) of strings, rendered by html.py and md.py alike."""
from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np

from toolformer.report.summary import FUNNEL, RunSummary, ToolSummary, stage_config, stage_settings
from toolformer.run import layout

Table = tuple[list[str], list[list]]
WHAT_IF_THRESHOLDS = (-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
TOP_VALUES = 10            # most frequent inputs / results listed
SHOWN_SETTINGS = ("model", "syntax", "window", "seed", "max_new_tokens", "temperature")  # at the page's top
FUNNEL_NOTE = f"* counted from {layout.SCORED}: the manifest has no count for this step"


def count_text(n) -> str:
    return "–" if n is None else f"{n:,}"


def percent(part: float, whole: float) -> str:
    return "–" if not whole or part is None else f"{100 * part / whole:.1f} %"


def rate_text(count: int, base: int, base_label: str) -> str:
    """A share when the step narrows (kept of executed), a multiple when it widens (positions per window)."""
    return f"{percent(count, base)} of {base_label}" if count <= base else f"{count / base:.2f} × {base_label}"


def clip(value, n: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


def signed_usefulness(u: float | None) -> str:
    """Rounded down to 3 decimals, so that a call just under τ_f never reads as τ_f itself."""
    return "–" if u is None else f"{math.floor(u * 1000 + 1e-9) / 1000:+.3f}"


def funnel_table(t: ToolSummary) -> Table:
    """Step, count (* when counted from scored.jsonl because the manifest has none), rate."""
    counts = {s["label"]: s["count"] for s in t.funnel}
    rows = []
    for s in t.funnel:
        base = counts.get(s["base"])
        count = "not run" if s["count"] is None else \
            count_text(s["count"]) + (" *" if s["source"] == "records" else "")
        rate = rate_text(s["count"], base, s["base"]) if s["count"] is not None and base else ""
        rows.append([s["label"], count, rate])
    return ["step", "count", "rate"], rows


def usefulness_table(t: ToolSummary) -> Table:
    """Quantiles of usefulness, and of p_start for kept and filtered calls."""
    qs = (0, 10, 50, 90, 100)
    rows = []
    if t.usefulness.size:
        rows.append(["L⁻ − L⁺", *(f"{v:+.2f}" for v in np.percentile(t.usefulness, qs))])
    for status in ("kept", "filtered"):
        if t.p_start.get(status, np.zeros(0)).size:
            rows.append([f"p_start {status}", *(f"{v:.2g}" for v in np.percentile(t.p_start[status], qs))])
    return ["", "min", "10 %", "median", "90 %", "max"], rows


def overview_table(run: RunSummary) -> Table:
    rows = []
    for t in run.tools:
        u = t.usefulness
        candidates, ok, kept = t.count("candidates"), t.count("executed ok"), t.count("kept")
        rows.append([t.name, "–" if t.tau_f is None else f"{t.tau_f:g}", count_text(candidates),
                     count_text(ok), count_text(t.count("executed, failed")), count_text(kept),
                     percent(kept, ok), percent(kept, candidates),
                     f"{np.median(u):+.2f}" if u.size else "–", f"{u.max():+.2f}" if u.size else "–"])
    return ["tool", "τ_f", "candidates", "executed ok", "failed", "kept", "kept / executed ok",
            "kept / candidates", "median usefulness", "best"], rows


def what_if_thresholds(run: RunSummary) -> list[float]:
    own = [t.threshold for t in run.tools if t.threshold is not None]
    return sorted(set(WHAT_IF_THRESHOLDS) | set(own))


def what_if_table(run: RunSummary) -> Table:
    thresholds = what_if_thresholds(run)
    rows = []
    for t in run.tools:
        kept = t.kept_at(thresholds)
        rows.append([t.name, count_text(len(t.usefulness))] + [
            f"{k:,} ({percent(k, len(t.usefulness))})" + (" ◀ τ_f" if tau == t.tau_f else "")
            for tau, k in zip(thresholds, kept.tolist())])
    return ["tool", "scored"] + [f"τ = {tau:g}" for tau in thresholds], rows


def what_if_grid(run: RunSummary, step: float = 0.05, max_steps: int = 400) -> dict:
    """Kept counts per tool on a fine threshold grid, for the page's slider."""
    values = np.concatenate([t.usefulness for t in run.tools] + [np.zeros(0)])
    taus = [t.threshold for t in run.tools if t.threshold is not None] or [0.0]
    lo = np.floor(min(np.percentile(values, 1) if values.size else 0, min(taus) - 1))
    hi = np.ceil(max(np.percentile(values, 99) if values.size else 0, max(taus) + 1))
    lo = max(lo, hi - step * max_steps)
    grid = np.round(np.arange(lo, hi + step / 2, step), 2)
    return {"grid": grid.tolist(), "kept": {t.key: t.kept_at(grid).tolist() for t in run.tools}}


def top_values_table(counter: Counter, total: int) -> Table:
    return ["value", "calls", "share"], [[clip(v, 90), count_text(n), percent(n, total)]
                                         for v, n in counter.most_common(TOP_VALUES)]


def errors_table(t: ToolSummary) -> Table:
    failed = t.counts["failed"]
    rows = [[pattern, count_text(n), percent(n, failed), clip(example, 120), clip(inp, 60)]
            for pattern, (n, example, inp) in sorted(t.errors.items(), key=lambda kv: -kv[1][0])]
    return ["error (numbers → #, quoted text → '…')", "calls", "share of failures", "example", "its input"], rows


def compare_table(run: RunSummary, other: RunSummary) -> Table:
    """Funnel steps as rows; per tool, this run's and the other run's column side by side."""
    keys = list(dict.fromkeys([t.key for t in run.tools] + [t.key for t in other.tools]))
    pairs = [[next((t for t in r.tools if t.key == key), None) for r in (run, other)] for key in keys]
    header = [""] + [f"{(a or b).name} · {r.name}" for a, b in pairs for r in (run, other)]

    def row(label: str, value) -> list | None:
        cells = [value(t) if t is not None else "–" for pair in pairs for t in pair]
        return [label, *cells] if any(c != "–" for c in cells) else None

    rows = [row("τ_f", lambda t: "–" if t.tau_f is None else f"{t.tau_f:g}")]
    rows += [row(label, lambda t, label=label: count_text(t.count(label))) for label, *_ in FUNNEL]
    rows += [row("kept / candidates", lambda t: percent(t.count("kept"), t.count("candidates"))),
             row("median usefulness", lambda t: f"{np.median(t.usefulness):+.2f}" if t.usefulness.size else "–")]
    return header, [r for r in rows if r is not None]


def flatten(node, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}; strings stay as they are, other values become JSON."""
    if isinstance(node, dict) and (node or not prefix):
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node if isinstance(node, str) else json.dumps(node, ensure_ascii=False)}


def settings_of(manifest: dict) -> dict[str, str]:
    """Config and stage settings (the seed among them), flattened: what makes two runs differ."""
    flat = flatten({"config": manifest.get("config", {})})
    for stage, info in manifest.get("stages", {}).items():
        if isinstance(info, dict):
            flat.update(flatten(info.get("config", {}), f"stages.{stage}.config"))
    return flat


def settings_diff_table(run: RunSummary, other: RunSummary) -> Table:
    a, b = settings_of(run.manifest), settings_of(other.manifest)
    rows = [[key, clip(a.get(key, "–"), 80), clip(b.get(key, "–"), 80)]
            for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]
    return ["setting", run.name, other.name], rows


def stages_table(manifest: dict) -> Table:
    rows = []
    for stage, info in manifest.get("stages", {}).items():
        info = info if isinstance(info, dict) else {}
        seconds = info.get("seconds")
        settings = ", ".join(f"{k}={v if len(v) <= 60 else f'({len(v):,} characters)'}"
                             for k, v in flatten(info.get("config", {})).items())
        counts = ", ".join(f"{k} {count_text(v) if isinstance(v, int) else v}"
                           for k, v in info.get("counts", {}).items())
        rows.append([stage, f"{seconds:,.1f}" if isinstance(seconds, (int, float)) else "–", counts, settings])
    return ["stage", "seconds", "counts", "settings"], rows


def manifest_facts(run: RunSummary) -> list[tuple[str, str]]:
    """The run at a glance: the settings that matter, thresholds per tool, versions."""
    m = run.manifest
    facts = [("run", run.name), ("calls", f"{run.records:,} scored calls in {len(run.tools)} tools")]
    facts += [("created", str(m["created"]))] if "created" in m else []
    facts += [(key, ", ".join(values)) for key in SHOWN_SETTINGS
              if (values := [clip(v, 80) for v in stage_settings(m, key)])]
    facts += [(f"config.{k}", v) for k, v in flatten(m.get("config", {})).items()]
    for t in run.tools:
        sample = stage_config(m, f"sample/{t.key}")
        thresholds = [f"{k} {sample[k]}" for k in ("tau_s", "k", "m") if k in sample]
        thresholds.append("τ_f ?" if t.tau_f is None else f"τ_f {t.tau_f:g}" +
                          ("" if t.tau_source == "manifest" else f" ({t.tau_source})"))
        facts.append((f"{t.name} thresholds", " · ".join(thresholds)))
    facts += [(f"version {k}", v) for k, v in flatten(m.get("versions", {})).items()]
    return [(k, clip(v, 200)) for k, v in facts + skipped_input(m)]


def skipped_input(manifest: dict) -> list[tuple[str, str]]:
    """The corpus rows ingest skipped (--skip-bad): per reason, the count and the recorded examples."""
    ingest = manifest.get("stages", {}).get("ingest", {}).get("counts", {})
    examples = ingest.get("skipped_examples") or {}
    if isinstance(examples, list):  # a plain corpus: bad lines, one reason
        examples = {"bad line": examples} if examples else {}
    counts = ingest.get("skipped") or {"bad line": ingest.get("skipped_bad", 0)}
    return [(f"skipped: {why} ({counts.get(why, len(shown)):,} rows)", example)
            for why, shown in examples.items() for example in shown]
