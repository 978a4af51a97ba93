"""`toolformer eval` (a benchmark with tools on and off) and `toolformer compare` (two record files)."""
from __future__ import annotations

from toolformer.benchmarks import BENCHMARKS
from toolformer.cli.flags import add_flags, from_args
from toolformer.config import CompareSettings, EvalSettings
from toolformer.evaluation.evaluate import compare_records, evaluate, p_value


def _accuracy(figures: dict) -> str:
    low, high = figures["ci"]
    return f"{100 * figures['accuracy']:.1f}% [{100 * low:.1f}–{100 * high:.1f}]"


def _difference(result: dict) -> str:
    low, high = result["ci"]
    return (f"{100 * result['difference']:+.1f} points [{100 * low:+.1f} to {100 * high:+.1f}], "
            f"McNemar p {'< 0.001' if result['p_value'] < 0.001 else '= ' + p_value(result['p_value'])}")


def cmd_eval(args) -> dict:
    summary = evaluate(from_args(EvalSettings, args))
    left_out = f", {summary['left_out']} not scorable, left out" if summary.get("left_out") else ""
    subset = (f", drawn from the {summary['in_reach']} of {summary['in_reach_of']} in reach"
              if summary.get("in_reach_of") else "")
    parts = [f"{summary['benchmark']} ({summary['n']} examples, {summary['split']['part']}{subset}{left_out}):"]
    if "tools_off" in summary:
        parts.append(f"tools off {_accuracy(summary['tools_off'])}")
    if "tools_on" in summary:
        parts.append(f"tools on {_accuracy(summary['tools_on'])} (calls in {100 * summary['call_rate']:.1f}% "
                     f"of examples)")
    if "on_vs_off" in summary:
        parts.append(f"on − off {_difference(summary['on_vs_off'])}")
    print("  ".join(parts))
    return summary


def cmd_compare(args) -> dict:
    result = compare_records(**vars(from_args(CompareSettings, args)))
    first, second = result["files"]
    print(f"{result['n']} examples: {first} {_accuracy(result['first'])}, {second} {_accuracy(result['second'])}; "
          f"second − first {_difference(result)}")
    return result


def add_commands(sub, command) -> None:
    p = command(sub, "eval", cmd_eval, "zero-shot evaluation with tools on and off (lenient metrics, 95% CIs)")
    p.epilog = (f"benchmarks: {', '.join(BENCHMARKS)}. --data-file formats (JSONL): math rows need a question "
                "(question/Question/sQuestion/problem/input, optional body/Body) and a numeric answer "
                "(answer/Answer/result/target/lSolutions); LAMA rows masked_sentence and obj_label; QA rows "
                "question and answers (a list).")
    add_flags(p, EvalSettings)
    p = command(sub, "compare", cmd_compare, "paired comparison of two `eval` record files on the same examples "
                                             "(difference with 95% CI, exact McNemar p)", torch=False)
    add_flags(p, CompareSettings)
