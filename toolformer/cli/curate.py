"""Commands for the three curation stages and for all of them at once.

    toolformer sample  --tool T --corpus FILE --run NAME
    toolformer execute --tool T --run NAME
    toolformer filter  --tool T --run NAME
    toolformer curate  --corpus FILE --run NAME [--tools calculator,wikisearch,...]
    toolformer curate  --corpus gsm8k_train.jsonl --run NAME --tools calculator --from-annotations gsm8k
                       (candidates from the corpus's own calls; --skip-bad skips and counts bad rows)

Each stage resumes where a killed run stopped. The summary goes to stderr as a table; --json
prints it as one JSON line. Every command takes the same flags (those a stage does not use are
ignored), so one flag set serves a whole run.
"""
from __future__ import annotations

import sys

from toolformer.cli.flags import add_flags, from_args
from toolformer.config import ExecuteSettings, FilterSettings, RunSettings, SampleSettings
from toolformer.pipeline.curate import curate
from toolformer.tools import TOOL_KEYS

ANNOTATION_LOSSES = ("other_tools", "inside_a_token", "at_the_end", "duplicates")
SUMMARY_KEYS = ("documents", "windows", "positions", "candidates", "executed_ok", "executed_failed", "kept")
CORPUS_FLAGS = ("corpus", "limit", "skip_bad")
RETRIEVER_FLAGS = ("tool_retriever", "tools_per_doc")


def summarise(figures: dict) -> dict:
    """Print a table of the funnel per tool (stderr) and return the figures by tool."""
    from rich.console import Console
    from rich.table import Table
    tools: dict[str, dict] = {}
    for stage, counts in figures["stages"].items():
        kind, tool = stage.split("/")
        tools.setdefault(tool, {}).update({f"{kind}_seconds": counts["seconds"]},
                                          **{k: v for k, v in counts.items() if k != "seconds"})
    table = Table(title=f"run {figures['run']}")
    table.add_column("tool")
    for key in SUMMARY_KEYS:
        table.add_column(key.replace("_", " "), justify="right")
    for tool, counts in tools.items():
        table.add_row(tool, *(str(counts.get(k, "")) for k in SUMMARY_KEYS))
    console = Console(file=sys.stderr, width=max(120, Console(file=sys.stderr).width))
    ingest = figures["ingest"]
    if ingest and "annotations" in ingest:
        skipped = ", ".join(f"{n} {why}" for why, n in ingest["skipped"].items()) or "none"
        console.print(f"documents: {ingest['documents']} with {ingest['annotations']} annotations; skipped: "
                      f"{skipped}" + (f"; {ingest['test_left_out']} in the benchmark's test split left out"
                                      if ingest["test_left_out"] else "")
                      + (f"; {ingest['undated']} without a date (no Calendar candidates)"
                         if "undated" in ingest else ""))
    elif ingest:
        console.print(f"documents: {ingest['documents']} read, {ingest['skipped_empty']} empty skipped, "
                      f"{ingest['skipped_bad']} bad lines skipped")
    if ingest and ingest["skipped_examples"]:  # one line, not one per skipped row: the report lists them
        console.print(f"  examples of the skipped rows: `toolformer report` ({figures['path']}/report.md)")
    for tool, counts in tools.items():
        if "annotations" in counts:  # what became of each annotation
            console.print(f"{tool}: {counts['annotations']} annotations -> {counts['candidates']} candidates "
                          + ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in ANNOTATION_LOSSES))
    console.print(table)
    console.print(f"outputs in {figures['path']}/")
    return {"run": figures["run"], "path": figures["path"], "ingest": ingest, "tools": tools}


def _runner(stages: tuple[str, ...]):
    def cmd(args) -> dict:
        tools = args.tools if stages == ("sample", "execute", "filter") else [args.tool]
        sample = from_args(SampleSettings, args) if "sample" in stages else SampleSettings()
        filter = from_args(FilterSettings, args) if stages == ("filter",) else \
            from_args(FilterSettings, args, window=None)
        return summarise(curate(from_args(RunSettings, args), tools, sample, from_args(ExecuteSettings, args),
                                filter, stages))
    return cmd


def add_commands(sub, command) -> None:
    for name, stages, help in (
            ("sample", ("sample",), "sample API calls for a tool (writes candidates.jsonl)"),
            ("execute", ("execute",), "run the sampled calls (writes executed.jsonl)"),
            ("filter", ("filter",), "score calls by loss reduction (writes scored.jsonl)"),
            ("curate", ("sample", "execute", "filter"), "sample, execute and filter for several tools")):
        p = command(sub, name, _runner(stages), help)
        add_flags(p, RunSettings, skip=() if "sample" in stages else CORPUS_FLAGS)
        if name == "curate":
            p.add_argument("--tools", help=f"comma-separated (default all: {','.join(TOOL_KEYS)})")
        else:
            p.add_argument("--tool", required=True, help=f"one of: {', '.join(TOOL_KEYS)}")
        # --window is the sampler's; filter takes it from the run (and refuses another value)
        add_flags(p, SampleSettings, skip=(("window",) if name == "filter" else ()) +
                  (() if name == "curate" else RETRIEVER_FLAGS))
        add_flags(p, FilterSettings, skip=() if name == "filter" else ("window",))
        add_flags(p, ExecuteSettings)
