"""Reading a run for the report: its manifest, and per tool the statistics of every scored record.

Each scored.jsonl is read once here, keeping only numbers per record (and the line numbers, so
that examples.py can pick up the chosen lines in a second pass): a 100,000-call run never holds
all its records in memory.
"""
from __future__ import annotations

import math

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolformer.corpus.syntax import TOOLFORMER, CallSyntax, get_syntax
from toolformer.errors import UserFileNotFound, UserValueError
from toolformer.run import layout
from toolformer.run.records import SCORED as SCORED_FIELDS, read_jsonl

STATUSES = ("kept", "filtered", "failed")
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


def status_of(record: dict) -> str:
    if record["kept"]:
        return "kept"
    return "failed" if record["error"] is not None else "filtered"


def message_pattern(message: str) -> str:
    """Group messages that differ only in the quoted input or the numbers they mention."""
    message = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", message)
    return re.sub(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", message)[:200]


# ---------------------------------------------------------------------------- the manifest

def read_manifest(run_dir: Path) -> dict:
    """The run's manifest, checked for the shape the report reads; {} when there is none."""
    if not run_dir.is_dir():
        raise UserFileNotFound(f"no run folder {run_dir}")
    path = run_dir / layout.MANIFEST
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserValueError(f"{path}:{err.lineno}: bad JSON: {err.msg}") from None
    stages = manifest.get("stages", {}) if isinstance(manifest, dict) else None
    if not isinstance(stages, dict) or not all(isinstance(v, dict) for v in stages.values()):
        raise UserValueError(f"{path}:1: expected an object whose 'stages' maps names to objects")
    return manifest


def stage_config(manifest: dict, stage: str) -> dict:
    """The settings a stage ("sample/calculator") recorded in the manifest; {} if none."""
    return manifest.get("stages", {}).get(stage, {}).get("config", {})


def sample_seed(manifest: dict) -> int | None:
    """The seed the sample stage used (the first sampled tool's), None if no stage recorded one."""
    for stage in manifest.get("stages", {}):
        seed = stage_config(manifest, stage).get("seed") if stage.startswith("sample/") else None
        if isinstance(seed, int):
            return seed
    return None


def stage_settings(manifest: dict, key: str) -> list:
    """The distinct values of one setting (model, syntax, …) across the run's config and stages."""
    values = [info.get("config", {}).get(key) for info in manifest.get("stages", {}).values()]
    values.append(manifest.get("config", {}).get(key))
    distinct = {}
    for value in values:
        if value is not None:
            distinct.setdefault(json.dumps(value, sort_keys=True), value)
    return list(distinct.values())


def run_syntax(manifest: dict) -> CallSyntax:
    names = stage_settings(manifest, "syntax")
    try:
        return get_syntax(names[0]) if names and isinstance(names[0], str) else TOOLFORMER
    except ValueError:
        return TOOLFORMER


def tool_threshold(key: str, manifest: dict) -> tuple[float | None, str]:
    """τ_f of a tool and where it came from: the filter stage's config, else the tool's default."""
    config = stage_config(manifest, f"filter/{key}")
    if isinstance(config.get("tau_f"), (int, float)):
        return float(config["tau_f"]), "manifest"
    try:
        from toolformer.tools import get_tool
        return float(get_tool(key).tau_f), "tool default"
    except (ValueError, ImportError, AttributeError):
        return None, "unknown"


def tool_name(key: str) -> str:
    try:
        from toolformer.tools import get_tool
        return get_tool(key).name
    except (ValueError, ImportError, AttributeError):
        return key


# ---------------------------------------------------------------------------- per tool

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

    @property
    def threshold(self) -> float | None:
        """τ_f where it is a number to draw or tabulate; None when unknown or -inf (every call kept,
        e.g. an iterate seed with --seed-filter all)."""
        return self.tau_f if self.tau_f is not None and math.isfinite(self.tau_f) else None

    def count(self, label: str) -> int | None:
        return next((s["count"] for s in self.funnel if s["label"] == label), None)

    def kept_at(self, thresholds) -> np.ndarray:
        """How many calls a threshold would keep: usefulness ≥ τ (failed calls never)."""
        ordered = np.sort(self.usefulness)
        return len(ordered) - np.searchsorted(ordered, np.asarray(thresholds, float), side="left")


class _Tally:
    """The per-record lists of one pass over scored.jsonl, turned into arrays at the end."""

    def __init__(self, t: ToolSummary):
        self.t = t
        self.useful, self.kept, self.lines, self.line_useful, self.line_status = [], [], [], [], []
        self.p_start = {s: [] for s in STATUSES}
        self.mismatched = self.nonfinite = self.lazy = 0

    def add(self, number: int, rec: dict) -> None:
        t, status = self.t, status_of(rec)
        t.counts[status] += 1
        self.p_start[status].append(rec["p_start"])
        t.inputs[rec["input"]] += 1
        u = rec["usefulness"]
        self.lazy += u is None and rec["error"] is None and not rec["kept"]  # filter --lazy decided it without one
        if u is not None and not np.isfinite(u):
            self.nonfinite += 1
            u = None
        self.lines.append(number)
        self.line_useful.append(np.nan if u is None else u)
        self.line_status.append(STATUSES.index(status))
        if u is not None:
            self.useful.append(u)
            self.kept.append(rec["kept"])
            self.mismatched += t.tau_f is not None and rec["kept"] != (u >= t.tau_f)
        if rec["error"] is not None:
            pattern = message_pattern(rec["error"])
            t.errors.setdefault(pattern, [0, rec["error"], rec["input"]])[0] += 1
            t.first_line_of_error.setdefault(pattern, number)
        else:
            t.results[rec["result"]] += 1
        if status == "filtered" and rec["reason"]:
            t.reasons[message_pattern(rec["reason"])] += 1

    def finish(self) -> None:
        t = self.t
        t.records = len(self.lines)
        t.usefulness = np.asarray(self.useful, float)
        t.useful_kept = np.asarray(self.kept, bool)
        t.p_start = {s: np.asarray(v, float) for s, v in self.p_start.items()}
        t.lines = np.asarray(self.lines, np.int64)
        t.line_useful = np.asarray(self.line_useful, float)
        t.line_status = np.asarray(self.line_status, np.int8)
        if self.nonfinite:
            t.warnings.append(f"{self.nonfinite:,} scored calls have a usefulness that is NaN or infinite; "
                              f"they are left out of the figures and the what-if table")
        if self.lazy:
            t.warnings.append(f"{self.lazy:,} filtered calls were decided without all their losses (filter --lazy): "
                              f"they have no usefulness, so the figures leave them out and the what-if table "
                              f"undercounts the calls thresholds below τ_f would keep")
        if self.mismatched:
            t.warnings.append(f"{self.mismatched:,} scored calls have a kept flag that disagrees with "
                              f"usefulness ≥ τ_f = {t.tau_f:g} (τ_f from the {t.tau_source})")


def _summarize_tool(key: str, run_dir: Path, manifest: dict) -> ToolSummary:
    tau, tau_source = tool_threshold(key, manifest)
    path = run_dir / key / layout.SCORED
    t = ToolSummary(key, tool_name(key), tau, tau_source, path if path.exists() else None)
    tally = _Tally(t)
    for number, rec in (read_jsonl(path, SCORED_FIELDS) if t.scored_path else ()):
        tally.add(number, rec)
    tally.finish()
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
            t.warnings.append(f"the manifest counts {recorded:,} {label} but {t.key}/{layout.SCORED} has "
                              f"{from_records[label]:,} (an unfinished or re-run stage?)")
        if count is None and side:
            continue
        steps.append({"label": label, "count": count, "base": base, "side": side,
                      "source": source if count is not None else None})
    return steps


# ---------------------------------------------------------------------------- the run

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
    keys += sorted(p.parent.name for p in run_dir.glob(f"*/{layout.SCORED}"))
    return list(dict.fromkeys(keys))


def summarize_run(run_dir: Path) -> RunSummary:
    manifest = read_manifest(run_dir)
    keys = _tool_keys(run_dir, manifest)
    if not keys:
        raise UserFileNotFound(f"{run_dir} has no stages in its manifest and no <tool>/{layout.SCORED}: "
                               f"run `toolformer sample` (or curate) first")
    tools = [_summarize_tool(key, run_dir, manifest) for key in keys]
    return RunSummary(run_dir.name, run_dir, manifest, tools, run_syntax(manifest))
