"""The example rows the page embeds: a bounded choice of records, each with its document text.

The choice holds the top kept, the nearest misses, the worst and the failed calls of each tool,
plus a random sample spread evenly over tool × status. Only the chosen lines of each
scored.jsonl are read back (the second pass over the file).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolformer.config import ReportSettings
from toolformer.corpus.syntax import CallSyntax
from toolformer.report.summary import STATUSES, RunSummary, ToolSummary, status_of
from toolformer.run import layout
from toolformer.run.manifest import DOCUMENT
from toolformer.run.records import read_jsonl

STATUS_CODES = {"kept": "k", "filtered": "f", "failed": "x"}  # as the page's script reads them
SECTION_SIZE = 25          # top kept / nearest misses / worst / failed rows embedded per tool
MAX_EXAMPLES = ReportSettings.max_examples  # example rows embedded in the page, all tools together
CONTEXT_CHARS = (260, 180)  # document text shown before and after a call


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
    path = run_dir / layout.DOCUMENTS
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
    """The example rows in tool and file order, and warnings about the documents they name."""
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
        warnings.append(f"{missing:,} example rows name a document that is not in {layout.DOCUMENTS}; "
                        f"they are shown without their text")
    if outside:
        warnings.append(f"{outside:,} example rows have a position outside their document's text; "
                        f"they are shown at the nearest end")
    return rows, warnings
