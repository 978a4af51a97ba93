"""Stage 2, execute: run each distinct call once and record its result or its error.

Reads <run>/<tool>/candidates.jsonl, writes executed.jsonl (candidate + result, error,
latency_ms). Results are stored as the run's call syntax will write them (one line, no end
marker). Calls are cached by (input, the document metadata the tool reads), so a call repeated
across positions and documents runs once, and a resumed run reuses what it ran.
"""
from __future__ import annotations

import json

from itertools import groupby

from tqdm import tqdm

from toolformer.tools import Tool, run_call
from toolformer.run.records import CANDIDATE, EXECUTED, ResumableWriter, read_jsonl
from toolformer.run.manifest import Run
from toolformer.corpus.syntax import CallSyntax

def execute_tool(run: Run, tool: Tool, syntax: CallSyntax, options: dict | None = None, chunk_docs: int = 16,
                 progress: bool = True) -> dict:
    src = run.tool_dir(tool.key) / "candidates.jsonl"
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist: run `toolformer sample --tool {tool.key} --run {run.name}`")
    path = src.with_name("executed.jsonl")
    options = {**tool.options, **(options or {})}
    run.check_config(f"stages.execute/{tool.key}.config", {"options": options}, str(path))
    writer = ResumableWriter(path)
    meta_of = {d.id: d.meta for d in run.documents()}
    # results already on disk serve as the cache: a resumed run never re-executes a call
    cache = {}
    for _, rec in read_jsonl(path, EXECUTED):
        cache[_cache_key(tool, rec, meta_of)] = (rec["result"], rec["error"], rec["latency_ms"])
    by_doc = [list(g) for _, g in groupby((r for _, r in read_jsonl(src, CANDIDATE)), key=lambda r: r["doc_id"])]
    executor = None
    bar = tqdm(total=sum(map(len, by_doc)), desc=f"execute {tool.key}", unit="call", disable=not progress)
    for number, a in enumerate(range(0, len(by_doc), chunk_docs)):
        chunk = [rec for group in by_doc[a:a + chunk_docs] for rec in group]
        if str(number) in writer.done:
            bar.update(len(chunk))
            continue
        records, ran = [], 0
        for rec in chunk:
            key = _cache_key(tool, rec, meta_of)
            if key not in cache:
                executor = executor or tool.make_executor(**options)
                out = run_call(tool, executor, rec["input"], meta_of[rec["doc_id"]])
                result = None if out.result is None else syntax.safe_result(out.result)
                cache[key] = (result, out.error, round(out.latency_ms, 3))
                ran += 1
            result, error, latency = cache[key]
            records.append({**rec, "result": result, "error": error, "latency_ms": latency})
        writer.commit(str(number), records, executed=ran)
        bar.update(len(chunk))
    bar.close()
    if not writer.complete:
        writer.mark_complete()
    ok = failed = 0
    for _, rec in read_jsonl(path, EXECUTED):
        ok += rec["error"] is None
        failed += rec["error"] is not None
    return {"executed_ok": ok, "executed_failed": failed, "distinct_calls": len(cache),
            "calls_run": sum(e.get("executed", 0) for e in writer.chunk_info()), "seconds": writer.seconds}


def _cache_key(tool: Tool, rec: dict, meta_of: dict) -> tuple:
    """A call's identity: its input and the document metadata its tool reads (Calendar: date)."""
    meta = meta_of[rec["doc_id"]]
    return (rec["input"], json.dumps([meta.get(k) for k in tool.meta_keys]))
