"""`toolformer tool NAME "INPUT"`: run one call, print the result (exit 0) or the error (exit 1)."""
from __future__ import annotations

import json
import sys

from toolformer.errors import UserValueError
from toolformer.tools import TOOL_KEYS, get_tool, run_call


def parse_options(pairs: list[str] | None) -> dict:
    """--option key=value pairs (values parsed as JSON when they are JSON)."""
    options = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserValueError(f"--option expects key=value, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def run_tool(args) -> dict:
    tool = get_tool(args.name)
    executor = tool.executor(**parse_options(args.option))
    meta = {"date": args.date} if args.date else {}
    out = run_call(tool, executor, args.input, meta, timeout_s=args.timeout)
    if out.error is None:
        print(out.result)
    else:
        print(f"error: {out.error}", file=sys.stderr)
    return {"tool": tool.name, "input": args.input, "result": out.result, "error": out.error,
            "latency_ms": round(out.latency_ms, 3), "exit_code": 0 if out.error is None else 1}


def add_commands(sub, command) -> None:
    p = command(sub, "tool", run_tool, "run one tool call and print its result")
    p.add_argument("name", help=f"tool: {', '.join(TOOL_KEYS)}")
    p.add_argument("input", help='the call input, e.g. "400 / 1400"')
    p.add_argument("--date", help="document date (ISO) for Calendar")
    p.add_argument("--timeout", type=float, help="seconds (default: the tool's own)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="executor option, e.g. corpus=passages.jsonl or snippet_chars=300")
