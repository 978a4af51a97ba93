"""One model on every benchmark against its baselines: the multi-tool evaluation table (issue 20 §5).

    run_suite({"multi": "runs/m/model/adapter", "control": "runs/m/control/adapter", "base": None},
              control="control", out="runs/suite", data_dir="../shared/data", limit=100)

Each model (an adapter folder, or None for the base model) is evaluated on each benchmark by
`evaluate`, resumable, under out/<name>/: tools off and on, and the control (a model finetuned on
the same documents without calls) tools off. `suite_table` then reads only the per-example record
files, so every figure of the table is one of those files' outcomes counted:
  accuracy  n, tools off and on (Wilson 95% CI), on − off and on − control's tools off on the same
            examples (Newcombe 95% CI, exact McNemar p);
  tool use  call rate, calls per tool, the right-tool rate (calls to the benchmark's expected tool
            over all calls, unparsed ones too);
  reach     on knowledge benchmarks, the ceiling (top-1 and top-5 passages hold a gold answer), on
            Dateset the Calendar's (its output holds it), and the accuracy on the in-reach subset,
            off and on, with both paired differences there.
It writes out/suite.md (the two tables) and out/suite.json (every figure).
"""
from __future__ import annotations

import json
from pathlib import Path

from toolformer.benchmarks import get_benchmark
from toolformer.errors import UserValueError
from toolformer.evaluation.evaluate import difference_ci, evaluate, mode_figures, p_value, percent_ci
from toolformer.evaluation.reach import DEPTH, IN_REACH_K, ceilings
from toolformer.run.records import read_jsonl
from toolformer.stats import paired

SUITE = ("svamp", "asdiv", "lama-squad", "lama-google-re", "nq", "webq", "dateset")


def run_suite(models: dict[str, str | None], control: str | None = None, benchmarks=SUITE,
              out: str | Path = "runs/suite", **eval_fields) -> dict:
    """Evaluate every model on every benchmark (resuming what `out` holds), then write the table.
    eval_fields go to every evaluate() (data_dir, limit, batch_size, model, ...)."""
    if control is not None and control not in models:
        raise UserValueError(f"the control {control!r} is not one of the models ({', '.join(models)})")
    out = Path(out)
    for bench in benchmarks:
        for name, adapter in models.items():
            evaluate(benchmark=bench, adapter=adapter, tools="off" if name == control else "both",
                     out=str(out / name), **eval_fields)
    return suite_table(out, list(models), control, benchmarks)


def _records(path: Path) -> dict[str, dict]:
    records = {}
    for line, record in read_jsonl(path):
        if record["id"] in records:
            raise UserValueError(f"{path}:{line}: example {record['id']!r} appears twice")
        records[record["id"]] = record
    return records


def _pair(first: dict[str, dict], second: dict[str, dict], ids: list[str]) -> dict | None:
    return paired([first[i]["correct"] for i in ids], [second[i]["correct"] for i in ids]) if ids else None


def benchmark_figures(out: Path, name: str, bench: str, control: dict[str, dict] | None) -> dict:
    """The figures of one model on one benchmark, from its record files under out/<name>/."""
    expected = get_benchmark(bench).expected_tool
    modes = {mode: _records(path) for mode in ("off", "on")
             if (path := out / name / f"{bench}.tools-{mode}.jsonl").exists()}
    if not modes:
        raise UserValueError(f"{out / name}: no evaluation of {bench} (tools-off or tools-on records)")
    first = next(iter(modes.values()))
    ids = list(first)
    if any(set(records) != set(ids) for records in modes.values()):
        raise UserValueError(f"{out / name}: the tools-off and tools-on records of {bench} hold different examples")
    figures = {"n": len(ids)}
    for mode, records in modes.items():
        figures[f"tools_{mode}"] = mode_figures([records[i] for i in ids], expected)
    reachable = all("in_reach" in r for records in modes.values() for r in records.values())
    inside = [i for i in ids if first[i]["in_reach"]] if reachable else []
    if reachable:
        figures["reach"] = {"ceiling": ceilings([first[i]["reach_rank"] for i in ids]), "in_reach_n": len(inside),
                            "depth": DEPTH, "in_reach_k": IN_REACH_K}
    if len(modes) == 2:
        figures["on_vs_off"] = _pair(modes["off"], modes["on"], ids)
        figures["on_vs_off_in_reach"] = _pair(modes["off"], modes["on"], inside) if reachable else None
    if control is not None and "on" in modes:
        if set(control) != set(ids):
            raise UserValueError(f"{out / name}: {bench} holds other examples than the control's "
                                 f"({len(ids)} and {len(control)}): pass the same --limit and seed")
        figures["on_vs_control"] = _pair(control, modes["on"], ids)
        figures["on_vs_control_in_reach"] = _pair(control, modes["on"], inside) if reachable else None
    return figures


def _cell(figures: dict | None, key: str | None = None) -> str:
    figures = figures.get(key) if figures is not None and key else figures
    return percent_ci(figures) if figures else "–"


def _diff(pair: dict | None) -> list[str]:
    return [difference_ci(pair), p_value(pair["p_value"])] if pair else ["–", "–"]


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


ACCURACY_HEADER = ["benchmark", "model", "n", "tools off (95% CI)", "tools on (95% CI)", "on − off (95% CI)",
                   "p", "on − control (95% CI)", "p"]
TOOLS_HEADER = ["benchmark", "model", "call rate", "calls per tool", "right tool", "right-tool rate",
                "ceiling top-1", f"ceiling top-{DEPTH}", "in reach n", "in reach: off", "in reach: on",
                "on − off in reach", "p", "on − control in reach", "p"]


def suite_table(out: str | Path, models: list[str], control: str | None = None, benchmarks=SUITE) -> dict:
    """Read every model's records under `out`, write out/suite.md and out/suite.json; return the figures.
    The control is paired by its tools-off records: it was finetuned without calls."""
    out = Path(out)
    figures, accuracy_rows, tool_rows = {}, [], []
    for bench in benchmarks:
        control_off = None
        if control is not None:
            path = out / control / f"{bench}.tools-off.jsonl"
            if not path.exists():
                raise UserValueError(f"{path}: the control has no tools-off evaluation of {bench}")
            control_off = _records(path)
        for name in models:
            f = benchmark_figures(out, name, bench, None if name == control else control_off)
            figures.setdefault(bench, {})[name] = f
            on, reach = f.get("tools_on"), f.get("reach")
            accuracy_rows.append([bench, name, str(f["n"]), _cell(f.get("tools_off")), _cell(on),
                                  *_diff(f.get("on_vs_off")), *_diff(f.get("on_vs_control"))])
            use = on or f["tools_off"]
            per_tool = ", ".join(f"{t} {n}" for t, n in use["calls_per_tool"].items()) or "–"
            tool_rows.append([bench, name, _rate(use["call_rate"]), per_tool, use["expected_tool"] or "–",
                              _rate(use["right_tool_rate"]),
                              _cell(reach["ceiling"], "top1") if reach else "–",
                              _cell(reach["ceiling"], f"top{DEPTH}") if reach else "–",
                              str(reach["in_reach_n"]) if reach else "–",
                              _cell(f.get("tools_off"), "in_reach"), _cell(on, "in_reach"),
                              *_diff(f.get("on_vs_off_in_reach")), *_diff(f.get("on_vs_control_in_reach"))])
    text = (f"Accuracy (%) with Wilson 95% intervals; differences on the same examples (Newcombe 95% interval, "
            f"exact McNemar p); control: {control or 'none'}, tools off.\n\n"
            + _markdown(ACCURACY_HEADER, accuracy_rows)
            + f"\nTool use with tools on (tools off for the control); right tool: the calls that go to the "
              f"benchmark's tool, of all calls. Reach: a gold answer in the top WikiSearch passages of the "
              f"example's question (knowledge benchmarks; in reach: in the top {IN_REACH_K}, the passages the tools "
              f"read), or in what Calendar() says for the example's date (Dateset).\n\n"
            + _markdown(TOOLS_HEADER, tool_rows))
    (out / "suite.md").write_text(text, encoding="utf-8")
    result = {"models": models, "control": control, "benchmarks": list(benchmarks), "figures": figures}
    (out / "suite.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"
