"""Commands for the three curation stages and for all of them at once.

    toolformer sample  --tool T --corpus FILE --run NAME
    toolformer execute --tool T --run NAME
    toolformer filter  --tool T --run NAME
    toolformer curate  --corpus FILE --run NAME [--tools calculator,wikisearch,...]

Each stage resumes where a killed run stopped. The summary goes to stderr as a table; --json
prints it as one JSON line.
"""
from __future__ import annotations

import sys
import time

from toolformer.tools import TOOL_MODULES, Tool, get_tool
from toolformer.run.manifest import Run
from toolformer.corpus.syntax import get_syntax
from toolformer.assets import DEFAULT_LM

SUMMARY_KEYS = ("documents", "windows", "positions", "candidates", "executed_ok", "executed_failed", "kept")


def per_tool(value: str | None, cast, tool: Tool, default):
    """--tau-f 0.5 applies to every tool; --tau-f calculator=0.5,qa=1.0 to the tools it names."""
    if value is None:
        return default
    if "=" not in value:
        return cast(value)
    for part in value.split(","):
        name, _, v = part.partition("=")
        if name.strip().lower() == tool.key:
            return cast(v)
    return default


class Pipeline:
    """What one command needs: the run, the model (loaded once, lazily) and the settings."""

    def __init__(self, args):
        self.args = args
        self.run = Run(args.run, args.runs_dir)
        self.syntax = get_syntax(args.syntax)
        self._lm = None
        self.progress = not args.no_progress

    @property
    def lm(self):
        if self._lm is None:
            from toolformer.lm.hf import get_backend
            self._lm = get_backend(self.args.model)
        return self._lm

    def ingest(self) -> dict:
        return self.run.ingest(self.args.corpus, self.args.limit, self.args.skip_bad)

    def retrieved_docs(self, tools: list[Tool]) -> dict[str, set[str]] | None:
        """With --tool-retriever: for each tool, the documents that rank it among their top K."""
        ref = getattr(self.args, "tool_retriever", None)
        if not ref:
            return None
        from toolformer.retrieval.retriever import rank_tools
        docs = self.run.documents()
        ranked = rank_tools(ref, [d.text[:2000] for d in docs], tools, self.args.tools_per_doc)
        return {t.key: {d.id for d, names in zip(docs, ranked) if t.name in names} for t in tools}

    def sample(self, tool: Tool, only_docs: set[str] | None = None) -> dict:
        from toolformer.pipeline.sample import SampleSettings, sample_tool
        a = self.args
        settings = SampleSettings(
            model=a.model, syntax=a.syntax, window=a.window, seed=a.seed,
            tau_s=per_tool(a.tau_s, float, tool, tool.tau_s), k=per_tool(a.k, int, tool, tool.k),
            m=per_tool(a.m, int, tool, tool.m), max_new_tokens=a.max_new_tokens, chunk_docs=a.chunk_docs,
            min_context=a.min_context,
            tool_retriever=getattr(a, "tool_retriever", None),
            tools_per_doc=a.tools_per_doc if getattr(a, "tool_retriever", None) else None)
        return self._timed(f"sample/{tool.key}", lambda: sample_tool(self.run, self.lm, tool, self.syntax,
                                                                     settings, self.progress, only_docs))

    def execute(self, tool: Tool) -> dict:
        from toolformer.pipeline.execute import execute_tool
        return self._timed(f"execute/{tool.key}", lambda: execute_tool(self.run, tool, self.syntax, chunk_docs=self.args.chunk_docs,
                                                                       progress=self.progress))

    def filter(self, tool: Tool) -> dict:
        from toolformer.pipeline.filter import FilterSettings, filter_tool
        a = self.args
        settings = FilterSettings(model=a.model, syntax=a.syntax, window=a.window,
                                  tau_f=per_tool(a.tau_f, float, tool, tool.tau_f), chunk_docs=a.chunk_docs)
        return self._timed(f"filter/{tool.key}", lambda: filter_tool(self.run, self.lm, tool, self.syntax,
                                                                     settings, self.progress))

    def _timed(self, stage: str, work) -> dict:
        t0 = time.perf_counter()
        counts = work()
        # the stage's own account sums its chunks over every resumed run; else this run's time
        seconds = counts.pop("seconds", None)
        seconds = round(time.perf_counter() - t0, 2) if seconds is None else seconds
        self.run.record_stage(stage, counts=counts, seconds=seconds, seed=self.args.seed)
        return {**counts, "seconds": seconds}


def _tools(args) -> list[Tool]:
    names = args.tools.split(",") if getattr(args, "tools", None) else [args.tool] if getattr(args, "tool", None) \
        else list(TOOL_MODULES)
    return [get_tool(n.strip()) for n in names]


def _summarise(pipe: Pipeline, per_stage: dict[str, dict], ingest: dict | None) -> dict:
    """Print a table of the funnel per tool (stderr) and return the figures."""
    tools: dict[str, dict] = {}
    for stage, counts in per_stage.items():
        kind, tool = stage.split("/")
        tools.setdefault(tool, {}).update({f"{kind}_seconds": counts["seconds"]},
                                          **{k: v for k, v in counts.items() if k != "seconds"})
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"run {pipe.run.name}")
    table.add_column("tool")
    for key in SUMMARY_KEYS:
        table.add_column(key.replace("_", " "), justify="right")
    for tool, counts in tools.items():
        table.add_row(tool, *(str(counts.get(k, "")) for k in SUMMARY_KEYS))
    console = Console(file=sys.stderr, width=max(120, Console(file=sys.stderr).width))
    if ingest:
        console.print(f"documents: {ingest['documents']} read, {ingest['skipped_empty']} empty skipped, "
                      f"{ingest['skipped_bad']} bad lines skipped")
        for example in ingest.get("skipped_examples", []):
            console.print(f"  skipped {example}")
    console.print(table)
    console.print(f"outputs in {pipe.run.path}/")
    return {"run": pipe.run.name, "path": str(pipe.run.path), "ingest": ingest, "tools": tools}


def cmd_sample(args) -> dict:
    pipe = Pipeline(args)
    ingest = pipe.ingest()
    return _summarise(pipe, {f"sample/{t.key}": pipe.sample(t) for t in _tools(args)}, ingest)


def cmd_execute(args) -> dict:
    pipe = Pipeline(args)
    return _summarise(pipe, {f"execute/{t.key}": pipe.execute(t) for t in _tools(args)}, None)


def cmd_filter(args) -> dict:
    pipe = Pipeline(args)
    return _summarise(pipe, {f"filter/{t.key}": pipe.filter(t) for t in _tools(args)}, None)


def cmd_curate(args) -> dict:
    pipe = Pipeline(args)
    ingest = pipe.ingest()
    tools = _tools(args)
    chosen = pipe.retrieved_docs(tools)
    stages = {}
    for tool in tools:
        stages[f"sample/{tool.key}"] = pipe.sample(tool, chosen[tool.key] if chosen else None)
        stages[f"execute/{tool.key}"] = pipe.execute(tool)
        stages[f"filter/{tool.key}"] = pipe.filter(tool)
    return _summarise(pipe, stages, ingest)


def _common(p, corpus: bool, tool_arg: str) -> None:
    p.add_argument("--run", required=True, help="run name: outputs go to RUNS_DIR/NAME/")
    p.add_argument("--runs-dir", default="runs", help="folder holding runs (default: runs)")
    if corpus:
        p.add_argument("--corpus", required=True,
                       help="documents: .jsonl, .jsonl.gz, .parquet, .txt (blank-line separated) or a saved dataset")
        p.add_argument("--skip-bad", action="store_true", help="skip malformed lines (counted and reported)")
        p.add_argument("--limit", type=int, help="use only the first N documents")
    if tool_arg == "tool":
        p.add_argument("--tool", required=True, help=f"one of: {', '.join(TOOL_MODULES)}")
    else:
        p.add_argument("--tools", help=f"comma-separated (default all: {','.join(TOOL_MODULES)})")
    p.add_argument("--model", default=DEFAULT_LM, help="hub id, local folder, .gguf file or embedded alias")
    p.add_argument("--syntax", default="toolformer", help="call syntax: toolformer or hw3")
    p.add_argument("--window", type=int, default=512, help="tokens of document per window")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tau-s", help="sampling threshold; a number, or tool=value,... per tool")
    p.add_argument("--k", help="positions kept per window; number or tool=value,...")
    p.add_argument("--m", help="calls sampled per position; number or tool=value,...")
    p.add_argument("--tau-f", help="filtering threshold on L- minus L+; number or tool=value,...")
    p.add_argument("--max-new-tokens", type=int, default=32, help="length cap of a sampled call")
    p.add_argument("--min-context", type=int, default=0,
                   help="propose no call before the N-th token of a window (default 0: every position, as in "
                        "the paper; at the very start L(ε) has no context, so any call looks useful)")
    p.add_argument("--chunk-docs", type=int, default=8,
                   help="documents per committed chunk: a killed stage redoes at most one chunk")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_commands(sub, command) -> None:
    _common(command(sub, "sample", cmd_sample, "sample API calls for a tool (writes candidates.jsonl)"), True, "tool")
    _common(command(sub, "execute", cmd_execute, "run the sampled calls (writes executed.jsonl)"), False, "tool")
    _common(command(sub, "filter", cmd_filter, "score calls by loss reduction (writes scored.jsonl)"), False, "tool")
    p = command(sub, "curate", cmd_curate, "sample, execute and filter for several tools")
    _common(p, True, "tools")
    p.add_argument("--tool-retriever", help="prompt each document only with the tools this retriever ranks "
                                            "highest: a folder from `toolformer retriever train`, all-minilm-l6-v2 or bm25")
    p.add_argument("--tools-per-doc", type=int, default=2, help="tools per document with --tool-retriever")
