"""Stage 2, execute: run each distinct call once and record its result or its error.

Reads <run>/<tool>/candidates.jsonl, writes executed.jsonl (candidate + result, error,
latency_ms). Results are stored as the run's call syntax will write them (one line, no end
marker). Calls are cached by (input, the document metadata the tool reads), so a call repeated
across positions and documents runs once, and a resumed run reuses what it ran. The distinct new
calls of a chunk go to the tool together (run_calls): an LM-backed tool (QA) answers them as
batches, the others run them one by one.
"""
from __future__ import annotations

import json
from pathlib import Path

from toolformer.config import ExecuteSettings
from toolformer.corpus.syntax import CallSyntax
from toolformer.pipeline.stage import Stage
from toolformer.run.manifest import Run
from toolformer.run.records import CANDIDATE, EXECUTED, Document, read_jsonl
from toolformer.tools import Tool, run_calls


class ExecuteStage(Stage):
    kind = "execute"
    # distinct_calls: calls first met in a chunk, i.e. run there (earlier chunks' results are cached)
    counts = ("executed_ok", "executed_failed", "distinct_calls")
    input_schema = CANDIDATE

    def __init__(self, run: Run, tool: Tool, syntax: CallSyntax, settings: ExecuteSettings = ExecuteSettings()):
        super().__init__(run, tool)
        self.syntax = syntax
        self.options = {**tool.options, **tool.corpus_options(settings.wiki_corpus), **(settings.options or {})}
        self.executor = None  # made on the first call that is not cached

    def settings(self) -> dict:
        return {"options": self.options}

    def start(self, output: Path, docs: list[Document]) -> None:
        # results already on disk serve as the cache: a resumed run never re-executes a call
        self.meta_of = {d.id: d.meta for d in docs}
        self.cache = {self._key(rec): (rec["result"], rec["error"], rec["latency_ms"])
                      for _, rec in read_jsonl(output, EXECUTED)}

    def process(self, docs: list[Document], inputs: dict[str, list[dict]]) -> tuple[list[dict], dict]:
        counts = dict.fromkeys(self.counts, 0)
        recs = [r for d in docs for r in inputs.get(d.id, ())]
        new = {}  # key -> the first record with it, in order
        for rec in recs:
            key = self._key(rec)
            if key not in self.cache:
                new.setdefault(key, rec)
        if new:
            self.executor = self.executor or self.tool.make_executor(**self.options)
            outs = run_calls(self.tool, self.executor, [r["input"] for r in new.values()],
                             [self.meta_of[r["doc_id"]] for r in new.values()])
            for key, out in zip(new, outs):
                result = None if out.result is None else self.syntax.safe_result(out.result)
                self.cache[key] = (result, out.error, round(out.latency_ms, 3))
            counts["distinct_calls"] += len(new)
        records = []
        for rec in recs:
            result, error, latency = self.cache[self._key(rec)]
            counts["executed_ok" if error is None else "executed_failed"] += 1
            records.append({**rec, "result": result, "error": error, "latency_ms": latency})
        return records, counts

    def _key(self, rec: dict) -> tuple:
        """A call's identity: its input and the document metadata its tool reads (Calendar: date)."""
        meta = self.meta_of[rec["doc_id"]]
        return (rec["input"], json.dumps([meta.get(k) for k in self.tool.meta_keys]))
