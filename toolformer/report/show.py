"""`toolformer show`: a run's calls of one tool as a table in the terminal, best usefulness first.

One pass over scored.jsonl keeps a heap of the best rows, so any run size prints at once.
"""
from __future__ import annotations

import heapq
from collections import Counter
from pathlib import Path

import numpy as np

from toolformer.config import ShowSettings
from toolformer.errors import UserFileNotFound
from toolformer.report.examples import around, call_parts, document_texts
from toolformer.report.summary import STATUSES, read_manifest, run_syntax, status_of, tool_name, tool_threshold
from toolformer.report.tables import percent, signed_usefulness
from toolformer.run import layout
from toolformer.run.manifest import Run
from toolformer.run.records import SCORED as SCORED_FIELDS, read_jsonl

COLORS = {"kept": "bold white on dark_green", "filtered": "bold white on grey37", "failed": "bold white on dark_red"}
MARKS = {"kept": "✓", "filtered": "✗", "failed": "⚠"}


def best_calls(path: Path, status: str | None, top: int) -> tuple[list[dict], Counter, int]:
    """The `top` records of `status` (None: any) by usefulness, failures last and ties in file
    order; the count of each status in the file; how many records had `status`."""
    totals, matching, best = Counter(), 0, []  # best: a heap of the top rows so far
    for number, rec in read_jsonl(path, SCORED_FIELDS):
        found = status_of(rec)
        totals[found] += 1
        if status not in (None, found):
            continue
        matching += 1
        rank = (-np.inf if rec["usefulness"] is None else rec["usefulness"], -number)
        if len(best) < top:
            heapq.heappush(best, (rank, rec))
        elif rank > best[0][0]:
            heapq.heapreplace(best, (rank, rec))
    return [rec for _, rec in sorted(best, key=lambda item: item[0], reverse=True)], totals, matching


def _call_cell(rec: dict, text: str | None, syntax):
    """The document text around the call, the call highlighted in its status's colour."""
    from rich.text import Text
    color = COLORS[status_of(rec)]
    before, after, cut_before, cut_after = around(text, rec["position"], (160, 110)) if text is not None \
        else ("", "", False, False)
    head, result, tail = call_parts(rec, syntax)
    cell = Text("…" if cut_before else "")
    cell.append(before + ("" if not before or before[-1].isspace() else " "))  # the highlight has no margin here
    cell.append(head, style=color)
    if result is not None:
        cell.append(result, style=color + " underline")
    cell.append(tail, style=color)
    cell.append(after)
    cell.append("…" if cut_after else "")
    if rec["error"] is not None:
        cell.append(f"\nerror: {rec['error']}", style="red")
    if text is None:
        cell.append(f"\n(document {rec['doc_id']} is not in {layout.DOCUMENTS})", style="dim")
    return cell


def show_calls(settings: ShowSettings) -> dict:
    """Print the table; return what it showed out of how many."""
    from rich.console import Console
    from rich.table import Table
    run = Run(settings.run, settings.runs_dir)
    manifest = read_manifest(run.path)
    key = settings.tool.lower()
    path = run.path / key / layout.SCORED
    if not path.exists():
        found = ", ".join(sorted(p.parent.name for p in run.path.glob(f"*/{layout.SCORED}"))) or "none"
        raise UserFileNotFound(f"{path} does not exist (tools with scored calls in this run: {found})")
    picked, totals, matching = best_calls(path, settings.status, settings.top)
    texts = document_texts(run.path, {r["doc_id"] for r in picked})
    syntax = run_syntax(manifest)
    tau, _ = tool_threshold(key, manifest)
    scored_total = sum(totals.values())
    title = (f"{tool_name(key)} in run {run.name}: {scored_total:,} calls, {totals['kept']:,} kept "
             f"({percent(totals['kept'], scored_total)}), {totals['failed']:,} failed; τ_f = "
             f"{'?' if tau is None else f'{tau:g}'}")
    table = Table(title=title, show_lines=True, expand=True)
    table.add_column("L⁻ − L⁺", justify="right", no_wrap=True)
    table.add_column("kept", justify="center", no_wrap=True)
    table.add_column("document text with the call in place", ratio=1)
    table.add_column("L⁺ · L(ε) · L(e(c,ε))", justify="right")
    for rec in picked:
        losses = " · ".join("–" if rec[k] is None else f"{rec[k]:.2f}"
                            for k in ("loss_plus", "loss_no_call", "loss_no_result"))
        table.add_row(signed_usefulness(rec["usefulness"]), MARKS[status_of(rec)],
                      _call_cell(rec, texts.get(rec["doc_id"]), syntax), losses)
    Console().print(table)
    return {"run": run.name, "tool": key, "status": settings.status or "all", "matching": matching,
            "shown": len(picked), "records": scored_total, **{s: totals[s] for s in STATUSES}}
