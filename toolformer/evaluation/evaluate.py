"""Evaluate a model zero-shot with tools on and off (paper §4), lenient metrics (benchmarks.py).

    evaluate(benchmark="svamp", adapter="runs/r1/model/adapter", data_dir="../shared/data", limit=300)

Writes, under `out` (default runs/eval/<model or adapter>/):
    <benchmark>.tools-on.jsonl, .tools-off.jsonl   one record per example: prompt, output with calls
                    inline, answer (the output without its calls), parsed answer, gold, correct, calls
    <benchmark>.settings.json   what the records depend on; a re-run with other settings is refused
    <benchmark>.summary.json    accuracies with 95% Wilson intervals, call rate, calls per tool, the
                    right-tool rate (calls to the benchmark's expected tool), and with both modes the
                    paired comparison on the same examples: on - off with Newcombe's interval and
                    McNemar's exact p (stats.py)
On a knowledge benchmark (LAMA, NQ, WebQ, TriviaQA) every record also says whether its gold answer
is within the tools' reach (reach.py: reach_rank, in_reach), and the summary gives the ceiling
(top-1 and top-5) and the accuracy on the in-reach subset beside the full set.
A `table` gets one markdown row per run, so several models line up side by side.

Records are committed a few batches at a time (run.records.ResumableWriter): a killed evaluation
continues where it stopped, and a larger limit adds only the new examples.
The answer is the output without its calls: "[Calculator(7 + 2) → 9] 9 apples" answers "9 apples".
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from toolformer.assets import DEFAULT_LM
from toolformer.benchmarks import Benchmark, Example, get_benchmark, limit_examples, load_examples, score
from toolformer.config import EvalSettings
from toolformer.corpus.syntax import get_syntax
from toolformer.errors import UserValueError
from toolformer.evaluation import reach
from toolformer.run.layout import EVAL
from toolformer.run.records import ResumableWriter, read_jsonl
from toolformer.stats import accuracy, paired
from toolformer.tools import all_tools, get_tool, wikisearch
# everything evaluation takes from the model and decoding layers, in one place
from toolformer.inference.decoder import ToolDecoder
from toolformer.inference.toolbox import ToolBox, offer_tools
from toolformer.lm.backend import get_backend
from toolformer.lm.loading import adapter_folder, adapter_info, resolve

CHUNK_BATCHES = 4  # batches per committed chunk: what a kill can cost

TABLE_HEADER = ("| model | adapter | benchmark | split | n | tools off (95% CI) | tools on (95% CI) | call rate "
                "| on − off (95% CI) | McNemar p | calls per tool | right-tool rate |\n"
                "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n")
COMPARE_HEADER = ("| first | second | n | first (95% CI) | second (95% CI) | second − first (95% CI) | McNemar p |\n"
                  "|---|---|---:|---:|---:|---:|---:|\n")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-80:] or "model"


# ---------------------------------------------------------------------------- one mode

def decode(decoder: ToolDecoder, examples: list[Example], max_new_tokens: int, batch_size: int,
           offered: list[frozenset[str]] | None = None, extra: dict[str, dict] | None = None) -> list[dict]:
    """One scored record per example (offered: per example, the tools it may call; extra: per
    example id, fields its record carries, e.g. reach)."""
    gens = decoder.generate([e.prompt for e in examples], [e.meta for e in examples], max_new_tokens,
                            batch_size, stop_at_newline=True, offered=offered)
    records = []
    for i, (ex, gen) in enumerate(zip(examples, gens)):
        ok, parsed = score(ex, gen.answer)
        records.append({"id": ex.id, "prompt": ex.prompt, "output": gen.output, "answer": gen.answer,
                        "parsed": parsed, "gold": list(ex.gold), "correct": ok, "calls": gen.calls,
                        "meta": ex.meta, "new_tokens": gen.new_tokens, "false_starts": gen.false_starts}
                       | ({"tools_offered": sorted(offered[i])} if offered else {}) | (extra or {}).get(ex.id, {}))
    return records


def _not_offered(record: dict) -> int:
    if "tools_offered" not in record:
        return 0
    offered = {t.lower() for t in record["tools_offered"]}
    return sum(c["tool"] is not None and c["tool"].lower() not in offered for c in record["calls"])


def mode_figures(records: list[dict], expected_tool: str | None = None) -> dict:
    """Accuracy with its Wilson interval and the tool-use figures of one mode's records: calls per
    tool, the right-tool rate (the share of all calls, unparsed ones too, made to `expected_tool`;
    None without calls) and, where records say whether they are in reach, the accuracy on those."""
    per_tool = Counter(c["tool"] or "unparsed" for r in records for c in r["calls"])
    calls = sum(per_tool.values())
    right = sum(n for tool, n in per_tool.items() if expected_tool and tool.lower() == expected_tool.lower())
    in_reach = [r["correct"] for r in records if r.get("in_reach")]
    return {**accuracy([r["correct"] for r in records]),
            "call_rate": round(sum(bool(r["calls"]) for r in records) / len(records), 4),
            "calls_per_tool": dict(sorted(per_tool.items())),
            "expected_tool": expected_tool, "right_tool_calls": right,
            "right_tool_rate": round(right / calls, 4) if calls else None,
            **({"in_reach": accuracy(in_reach) if in_reach else None} if "in_reach" in records[0] else {}),
            "call_errors": sum(c["error"] is not None for r in records for c in r["calls"]),
            "calls_not_offered": sum(map(_not_offered, records)),
            "false_starts": sum(r.get("false_starts", 0) for r in records),
            "new_tokens": sum(r.get("new_tokens", 0) for r in records)}


# ---------------------------------------------------------------------------- resuming

def _adapter_digest(adapter: str | None) -> str | None:
    """A hash of the adapter's weights: retraining into the same folder is other settings."""
    if adapter is None:
        return None
    digest = hashlib.sha256()
    for f in sorted(Path(adapter).glob("adapter_model.*")):
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _check_settings(path: Path, settings: dict) -> bool:
    """True when `path` already records these settings; a UserValueError when it records others."""
    if not path.exists():
        return False
    before = json.loads(path.read_text())
    if before != settings:
        changed = ", ".join(f"{k}: {before.get(k)!r} -> {settings.get(k)!r}"
                            for k in sorted(set(before) | set(settings)) if before.get(k) != settings.get(k))
        raise UserValueError(f"{path.parent} holds an evaluation with other settings ({changed}); "
                             f"pass another --out, or delete {path.parent} to start afresh")
    return True


def _committed(path: Path, examples: list[Example]) -> dict[str, dict]:
    """The records already in `path` by example id, each checked against today's data."""
    by_id = {e.id: e for e in examples}
    done = {}
    for line, record in read_jsonl(path):
        ex = by_id.get(record["id"])
        if ex is not None and (record["prompt"], tuple(record["gold"])) != (ex.prompt, ex.gold):
            raise UserValueError(f"{path}:{line}: example {ex.id} was evaluated with another prompt or gold "
                                 f"answer: the data changed; pass another --out or delete {path.parent}")
        done[record["id"]] = record
    return done


def _decode_committed(writer: ResumableWriter, decoder: ToolDecoder, todo: list[Example],
                      offered: list[frozenset[str]] | None, max_new_tokens: int, batch_size: int,
                      progress: str | None, extra: dict[str, dict] | None = None) -> Iterator[dict]:
    """The records of `todo`, committed CHUNK_BATCHES batches at a time (progress: a bar's label)."""
    chunk = batch_size * CHUNK_BATCHES
    with tqdm(total=len(todo), desc=progress, unit="example", disable=progress is None, file=sys.stderr) as bar:
        for i in range(0, len(todo), chunk):
            part = todo[i:i + chunk]
            records = decode(decoder, part, max_new_tokens, batch_size, offered[i:i + chunk] if offered else None,
                             extra)
            writer.commit(part[0].id, records)
            bar.update(len(part))
            yield from records


# ---------------------------------------------------------------------------- evaluate

def _allowed_tools(bench: Benchmark, allow: str | None) -> list[str]:
    """Tools the model may call: those named ("Calculator,QA"), else all the paper allows on the task."""
    if allow is None:
        return [t.name for t in all_tools() if t.name not in bench.deny_tools]
    return [get_tool(name).name for name in allow.split(",") if name.strip()]


def _in_reach(examples: list[Example], reached: dict | None, bench: Benchmark, limit: int | None,
              seed: int) -> tuple[list[Example], int]:
    """The examples in reach (a seeded `limit` of them if given), and how many are in reach."""
    if reached is None:
        raise UserValueError(f"--in-reach-only: {bench.name} has no reach to select by (knowledge benchmarks "
                             f"and dateset have)")
    inside = [e for e in examples if reached[e.id]["in_reach"]]
    if not inside:
        raise UserValueError(f"--in-reach-only: none of the {len(examples)} {bench.name} examples is in reach")
    return limit_examples(inside, limit, seed), len(inside)


def evaluate(settings: EvalSettings | None = None, **fields) -> dict:
    """Run one benchmark with tools on and/or off, resuming what `out` holds; write records, a
    summary and an optional table row; return the summary. Takes EvalSettings, or its fields
    as keyword arguments (evaluate(benchmark="svamp", limit=50)), or both (fields override)."""
    s = dataclasses.replace(settings, **fields) if settings else EvalSettings(**fields)
    bench = get_benchmark(s.benchmark)
    # in reach only: every example is searched, then --limit draws among those in reach
    whole = s.in_reach_only and bench.kind != "dateset"
    examples, info = load_examples(bench.name, data_file=s.data_file, data_dir=s.data_dir, hub=s.hub,
                                   hub_split=s.hub_split, split=s.split, limit=None if whole else s.limit,
                                   seed=s.seed)
    if not examples:
        raise UserValueError(f"benchmark {bench.name}: no examples to evaluate ({info})")
    # a missing adapter or model, or an unknown syntax, is said so before --out's settings are compared
    recorded = adapter_info(adapter_folder(s.adapter)) if s.adapter else {}
    model_ref = s.model or recorded.get("base_model") or DEFAULT_LM
    resolve(model_ref)
    syntax_name = s.syntax or recorded.get("syntax") or "toolformer"
    syntax = get_syntax(syntax_name)
    allowed = _allowed_tools(bench, s.allow_tools)
    max_new_tokens = s.max_new_tokens or bench.max_new_tokens
    out_dir = Path(s.out or Path("runs") / EVAL / _slug(str(s.adapter or model_ref)))
    # everything a record depends on: a re-run must match it to continue
    fixed = {"benchmark": bench.name, "model": model_ref, "adapter": str(s.adapter) if s.adapter else None,
             "adapter_weights": _adapter_digest(s.adapter), "syntax": syntax_name, "split": info["split"],
             "seed": s.seed, "top_k": s.top_k, "max_calls": s.max_calls, "max_call_tokens": s.max_call_tokens,
             "max_new_tokens": max_new_tokens,
             "tools_allowed": allowed, "tool_retriever": s.tool_retriever,
             "tools_per_input": s.tools_per_input if s.tool_retriever else None,
             # recorded only when set, so evaluations made before the flag existed still resume
             **({"wiki_corpus": s.wiki_corpus} if s.wiki_corpus else {})}
    reached = None  # per example: does the tool's source hold its answer? (knowledge benchmarks, Dateset)
    if reach.is_knowledge(bench):
        index = wikisearch.load_index(s.wiki_corpus)
        fixed["reach"] = reach.index_info(index)
        reached = reach.reach_fields(examples, index)
    elif bench.expected_tool == "Calendar":  # what Calendar() says is fixed by each example's date
        reached = reach.calendar_reach(examples)
    if s.in_reach_only:
        examples, info["in_reach"] = _in_reach(examples, reached, bench, s.limit if whole else None, s.seed)
        fixed["subset"], info["in_reach_of"] = "in reach", len(reached)
    settings_path = out_dir / f"{bench.name}.settings.json"
    claimed = _check_settings(settings_path, fixed)

    summary = {**fixed, "n": len(examples), **info}
    lm = None  # loaded when some example is still to do
    modes = ("off", "on") if s.tools == "both" else (s.tools,)
    # the retriever ranks every example before any decoding: a bad --tool-retriever fails at once
    box = ToolBox(allowed, s.wiki_corpus) if "on" in modes else None
    offers = offer_tools(s.tool_retriever, [e.prompt for e in examples], box, s.tools_per_input)
    offers = dict(zip((e.id for e in examples), offers)) if offers is not None else None
    results = {}
    for mode in modes:
        path = out_dir / f"{bench.name}.tools-{mode}.jsonl"
        writer = ResumableWriter(path)
        done = _committed(path, examples)
        todo = [e for e in examples if e.id not in done]
        if todo:
            if lm is None:
                lm = get_backend(model_ref, backend=s.backend, adapter=s.adapter)
                writer = ResumableWriter(path)  # reopened: its clock times decoding, not loading
            toolbox = box if mode == "on" else None
            decoder = ToolDecoder(lm, syntax, toolbox, s.top_k, s.max_calls, s.max_call_tokens)
            if not claimed:  # once everything loaded: settings that fail do not claim --out
                settings_path.write_text(json.dumps(fixed, indent=2, ensure_ascii=False) + "\n")
                claimed = True
            offered = [offers[e.id] for e in todo] if offers is not None and toolbox is not None else None
            for record in _decode_committed(writer, decoder, todo, offered, max_new_tokens, s.batch_size,
                                            f"tools {mode}" if s.progress else None, reached):
                done[record["id"]] = record
        results[mode] = [done[e.id] for e in examples]
        figures = mode_figures(results[mode], bench.expected_tool)
        summary[f"accuracy_tools_{mode}"] = figures["accuracy"]
        summary[f"tools_{mode}"] = {**figures, "reused": len(examples) - len(todo), "seconds": writer.seconds,
                                    "records": str(path)}
    if "on" in modes:  # the headline figures of tool use
        summary.update({k: summary["tools_on"][k]
                        for k in ("call_rate", "calls_per_tool", "call_errors", "false_starts", "right_tool_rate")})
    if reached is not None:
        summary["reach_ceiling"] = reach.ceilings([reached[e.id]["reach_rank"] for e in examples])
    if len(modes) == 2:
        summary["on_vs_off"] = paired([r["correct"] for r in results["off"]], [r["correct"] for r in results["on"]])
        inside = [i for i, r in enumerate(results["off"]) if r.get("in_reach")]
        if inside:
            summary["on_vs_off_in_reach"] = paired([results["off"][i]["correct"] for i in inside],
                                                   [results["on"][i]["correct"] for i in inside])
    (out_dir / f"{bench.name}.summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    if s.table:
        append_table_row(s.table, table_row(summary), TABLE_HEADER)
    return summary


# ---------------------------------------------------------------------------- comparing two runs

def read_outcomes(path: str | Path) -> dict[str, tuple[bool, tuple]]:
    """id -> (correct, gold) of an evaluation record file."""
    outcomes = {}
    for line, record in read_jsonl(path):
        if record.get("id") in outcomes:
            raise UserValueError(f"{path}:{line}: example {record['id']!r} appears twice")
        if not isinstance(record.get("correct"), bool):
            raise UserValueError(f"{path}:{line}: not an evaluation record (needs id and correct)")
        outcomes[record["id"]] = (record["correct"], tuple(record.get("gold", ())))
    if not outcomes:
        raise UserValueError(f"{path}: no evaluation records")
    return outcomes


def compare_records(first: str | Path, second: str | Path, table: str | Path | None = None) -> dict:
    """Paired comparison of two evaluation record files on the same examples (model A vs B, or
    tools off vs on): second - first with Newcombe's interval and McNemar's exact p."""
    a, b = read_outcomes(first), read_outcomes(second)
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        raise UserValueError(f"{first} and {second} hold different examples ({len(a)} and {len(b)}; "
                             f"{len(only_a)} only in the first, e.g. {only_a[:3]}, {len(only_b)} only in the "
                             f"second, e.g. {only_b[:3]}): a paired comparison needs the same ones")
    differ = [i for i in a if a[i][1] != b[i][1]]
    if differ:
        raise UserValueError(f"{first} and {second} give example {differ[0]!r} different gold answers: "
                             f"not the same benchmark data")
    ids = list(a)
    result = {"files": [str(first), str(second)], **paired([a[i][0] for i in ids], [b[i][0] for i in ids])}
    if table:
        append_table_row(table, compare_row(result), COMPARE_HEADER)
    return result


# ---------------------------------------------------------------------------- tables

def percent_ci(figures: dict) -> str:
    low, high = figures["ci"]
    return f"{100 * figures['accuracy']:.1f} ({100 * low:.1f}–{100 * high:.1f})"


def difference_ci(comparison: dict) -> str:
    low, high = comparison["ci"]
    return f"{100 * comparison['difference']:+.1f} ({100 * low:+.1f} to {100 * high:+.1f})"


def p_value(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def table_row(summary: dict) -> str:
    def mode(name):
        return percent_ci(summary[f"tools_{name}"]) if f"tools_{name}" in summary else "–"
    pair = summary.get("on_vs_off")
    difference, p = (difference_ci(pair), p_value(pair["p_value"])) if pair else ("–", "–")
    per_tool = ", ".join(f"{t} {n}" for t, n in summary.get("calls_per_tool", {}).items()) or "–"
    call_rate = f"{100 * summary['call_rate']:.1f}" if "call_rate" in summary else "–"
    right = summary.get("right_tool_rate")
    right = "–" if right is None else f"{100 * right:.1f} ({summary['tools_on']['expected_tool']})"
    return (f"| {summary['model']} | {summary['adapter'] or '–'} | {summary['benchmark']} "
            f"| {summary['split']['part']} | {summary['n']} | {mode('off')} | {mode('on')} | {call_rate} "
            f"| {difference} | {p} | {per_tool} | {right} |\n")


def compare_row(result: dict) -> str:
    first, second = result["files"]
    return (f"| {first} | {second} | {result['n']} | {percent_ci(result['first'])} | {percent_ci(result['second'])} "
            f"| {difference_ci(result)} | {p_value(result['p_value'])} |\n")


def append_table_row(path: str | Path, row: str, header: str) -> None:
    """Append one row to a markdown table; a new file, or one whose table has other columns
    (an older version's), gets the header first."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.splitlines()
    headers = [lines[i] for i in range(len(lines) - 1) if lines[i + 1].startswith("|---")]
    same_columns = bool(headers) and headers[-1] == header.splitlines()[0]
    with open(path, "a", encoding="utf-8") as f:
        f.write(row if same_columns else ("\n" if text else "") + header + row)
