"""Evaluate a model zero-shot with tools on and off (paper §4), lenient metrics (benchmarks.py).

    toolformer eval [--model REF] [--adapter DIR] --benchmark NAME [--data-dir DIR | --data-file FILE]
                    [--limit N] [--tools on|off|both] [--table results.md]

Writes, under --out (default runs/eval/<model>/): <benchmark>.tools-on.jsonl and .tools-off.jsonl
(one line per example: prompt, output with calls inline, answer = output without calls, parsed
answer, gold, correct, calls) and <benchmark>.summary.json: accuracy with tools on and off, the
share of examples with a call, calls per tool. --table FILE appends one row per run to a markdown
table, so several models (base, finetuned) line up side by side.

The answer is the output without its calls: "[Calculator(7 + 2) → 9] 9 apples" answers "9 apples".
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

from toolformer.tools import TOOL_MODULES, get_tool
from toolformer.assets import DEFAULT_LM
from toolformer.evaluation.benchmarks import BENCHMARKS, Example, get_benchmark, load_examples, score
from toolformer.inference.decoder import ToolBox, ToolDecoder, add_retriever_options, adapter_info, load_model, offer_tools
from toolformer.run.records import write_jsonl_atomic
from toolformer.corpus.syntax import get_syntax

TABLE_HEADER = ("| model | adapter | benchmark | n | tools off | tools on | call rate | calls per tool |\n"
                "|---|---|---|---:|---:|---:|---:|---|\n")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-80:] or "model"


def run_mode(decoder: ToolDecoder, examples: list[Example], max_new_tokens: int, batch_size: int,
             progress: bool, offered: list[frozenset[str]] | None = None) -> tuple[list[dict], dict]:
    """Records and figures for one decoding mode (offered: per example, the tools it may call)."""
    t0 = time.perf_counter()
    gens = decoder.generate([e.prompt for e in examples], [e.meta for e in examples], max_new_tokens,
                            batch_size, stop_at_newline=True, progress=progress, offered=offered)
    seconds = time.perf_counter() - t0
    records, per_tool, errors, not_offered, correct, with_call = [], Counter(), 0, 0, 0, 0
    for i, (ex, gen) in enumerate(zip(examples, gens)):
        ok, parsed = score(ex, gen.answer)
        correct += ok
        with_call += bool(gen.calls)
        per_tool.update(c["tool"] or "unparsed" for c in gen.calls)
        errors += sum(c["error"] is not None for c in gen.calls)
        not_offered += sum(c["tool"] is not None and c["tool"].lower() not in {t.lower() for t in offered[i]}
                           for c in gen.calls) if offered else 0
        records.append({"id": ex.id, "prompt": ex.prompt, "output": gen.output, "answer": gen.answer,
                        "parsed": parsed, "gold": list(ex.gold), "correct": ok, "calls": gen.calls,
                        "meta": ex.meta} | ({"tools_offered": sorted(offered[i])} if offered else {}))
    n = max(len(examples), 1)
    figures = {"accuracy": round(correct / n, 4), "correct": correct, "call_rate": round(with_call / n, 4),
               "calls_per_tool": dict(sorted(per_tool.items())), "call_errors": errors,
               "calls_not_offered": not_offered,
               "false_starts": sum(g.false_starts for g in gens), "seconds": round(seconds, 1),
               "new_tokens": sum(g.new_tokens for g in gens)}
    return records, figures


def evaluate(benchmark: str, model: str | None = None, adapter: str | Path | None = None,
             data_file: str | Path | None = None, data_dir: str | Path | None = None, hub: str | None = None,
             split: str | None = None, limit: int | None = None, tools: str = "both", allow_tools=None,
             top_k: int = 10, max_calls: int = 1, batch_size: int = 16, max_new_tokens: int | None = None,
             syntax: str | None = None, out_dir: str | Path | None = None, table: str | Path | None = None,
             seed: int = 0, progress: bool = True, tool_retriever: str | None = None,
             tools_per_input: int = 1) -> dict:
    """Run one benchmark with tools on and/or off; write records and a summary; return the summary."""
    if tools not in ("on", "off", "both"):
        raise ValueError(f"--tools must be on, off or both, not {tools!r}")
    bench = get_benchmark(benchmark)
    examples, info = load_examples(benchmark, data_file, data_dir, hub, split, limit, seed)
    if not examples:
        raise ValueError(f"benchmark {benchmark}: no examples to evaluate ({info})")
    recorded = adapter_info(adapter)
    model_ref = model or recorded.get("base_model") or DEFAULT_LM
    syntax_name = syntax or recorded.get("syntax") or "toolformer"
    if allow_tools is None:
        allowed = [t.name for t in map(get_tool, TOOL_MODULES) if t.name not in bench.deny_tools]
    else:
        allowed = [get_tool(t).name for t in allow_tools]
    lm, tok = load_model(model_ref, adapter)
    out_dir = Path(out_dir or Path("runs") / "eval" / _slug(str(adapter or model_ref)))
    out_dir.mkdir(parents=True, exist_ok=True)

    summary = {"benchmark": benchmark, "model": model_ref, "adapter": str(adapter) if adapter else None,
               "syntax": syntax_name, "n": len(examples), **info, "top_k": top_k, "max_calls": max_calls,
               "tools_allowed": allowed, "seed": seed, "tool_retriever": tool_retriever,
               "tools_per_input": tools_per_input if tool_retriever else None}
    modes = ("off", "on") if tools == "both" else (tools,)
    for mode in modes:
        toolbox = ToolBox(allowed) if mode == "on" else None
        decoder = ToolDecoder(lm, tok, get_syntax(syntax_name), toolbox, top_k, max_calls)
        offered = offer_tools(tool_retriever, [e.prompt for e in examples], toolbox, tools_per_input)
        records, figures = run_mode(decoder, examples, max_new_tokens or bench.max_new_tokens, batch_size, progress,
                                    offered)
        path = out_dir / f"{benchmark}.tools-{mode}.jsonl"
        write_jsonl_atomic(path, records)
        summary[f"accuracy_tools_{mode}"] = figures["accuracy"]
        summary[f"tools_{mode}"] = {**figures, "records": str(path)}
    if "on" in modes:  # the headline figures of tool use
        summary.update({k: summary["tools_on"][k] for k in ("call_rate", "calls_per_tool", "call_errors", "false_starts")})
    (out_dir / f"{benchmark}.summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    if table:
        append_table_row(table, summary)
    return summary


def table_row(summary: dict) -> str:
    def pct(key):
        return f"{100 * summary[key]:.1f}" if key in summary else "–"
    per_tool = ", ".join(f"{t} {n}" for t, n in summary.get("calls_per_tool", {}).items()) or "–"
    adapter = summary["adapter"] or "–"
    return (f"| {summary['model']} | {adapter} | {summary['benchmark']} | {summary['n']} | {pct('accuracy_tools_off')} "
            f"| {pct('accuracy_tools_on')} | {pct('call_rate')} | {per_tool} |\n")


def append_table_row(path: str | Path, summary: dict) -> None:
    """Append one result to a markdown table (header written when the file is new)."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", encoding="utf-8") as f:
        f.write((TABLE_HEADER if new else "") + table_row(summary))


def cmd_eval(args) -> dict:
    summary = evaluate(args.benchmark, args.model, args.adapter, args.data_file, args.data_dir, args.hub, args.split,
                       args.limit, args.tools, args.allow_tools.split(",") if args.allow_tools else None,
                       args.top_k, args.max_calls, args.batch_size, args.max_new_tokens, args.syntax, args.out,
                       args.table, args.seed, progress=not args.no_progress, tool_retriever=args.tool_retriever,
                       tools_per_input=args.tools_per_input)
    on, off = summary.get("accuracy_tools_on"), summary.get("accuracy_tools_off")
    print(f"{summary['benchmark']} ({summary['n']} examples): "
          + (f"tools off {100 * off:.1f}%  " if off is not None else "")
          + (f"tools on {100 * on:.1f}% (calls in {100 * summary['call_rate']:.1f}% of examples)" if on is not None else ""))
    return summary


def add_commands(sub, command) -> None:
    p = command(sub, "eval", cmd_eval, "zero-shot evaluation with tools on and off (lenient metrics)")
    p.epilog = ("--data-file formats (JSONL): math rows need a question (question/Question/sQuestion/problem/input, "
                "optional body/Body) and a numeric answer (answer/Answer/result/target/lSolutions); LAMA rows "
                "masked_sentence and obj_label; QA rows question and answers (a list).")
    p.add_argument("--benchmark", required=True, help=", ".join(BENCHMARKS))
    p.add_argument("--model", help="hub id, local folder, .gguf file or embedded alias "
                                   "(default: the adapter's base model, else smollm2-135m-instruct)")
    p.add_argument("--adapter", help="LoRA adapter folder written by `toolformer finetune`")
    p.add_argument("--data-dir", help="folder with math/, lama/, qa/ files (default: $TOOLFORMER_DATA)")
    p.add_argument("--data-file", help="one JSONL file with the benchmark's rows (overrides --data-dir)")
    p.add_argument("--hub", help="dataset id[:config] for datasets.load_dataset (needs a connection)")
    p.add_argument("--split", help="hub split (default: the benchmark's usual one)")
    p.add_argument("--limit", type=int, help="a seeded random subset of N examples (dateset: N generated)")
    p.add_argument("--tools", choices=("on", "off", "both"), default="both")
    p.add_argument("--allow-tools", help="comma-separated tools the model may call "
                                         "(default: all but those the paper withholds from the task)")
    p.add_argument("--syntax", help="call syntax (default: the adapter's, else toolformer)")
    p.add_argument("--top-k", type=int, default=10, help="start a call when the start marker is in the top k")
    p.add_argument("--max-calls", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, help="default: per benchmark (math 64, LAMA 32, QA 64, dateset 40)")
    p.add_argument("--out", help="output folder (default: runs/eval/<model or adapter>)")
    p.add_argument("--table", help="append a row to this markdown results table")
    p.add_argument("--seed", type=int, default=0, help="subset and dateset seed")
    p.add_argument("--no-progress", action="store_true")
    add_retriever_options(p)
