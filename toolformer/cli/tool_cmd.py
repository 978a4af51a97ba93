"""`toolformer tool NAME "INPUT"`: run one call, print the result (exit 0) or the error (exit 1)."""
from __future__ import annotations

import json
import sys

from toolformer.cli.flags import add_flags, from_args
from toolformer.config import ToolSettings
from toolformer.errors import UserValueError
from toolformer.tools import TOOL_KEYS, get_tool, run_call
from toolformer.tools.calendar import document_date


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


def date_meta(date: str | None) -> dict:
    """--date as a document's meta ({} without one)."""
    meta = {"date": date} if date else {}
    # a date that Calendar cannot read is the user's mistake, not the call's outcome
    if date and document_date(meta) is None:
        raise UserValueError(f"--date must be an ISO 8601 date such as 2013-04-19, got {date!r}")
    return meta


def run_tool(args) -> dict:
    s = from_args(ToolSettings, args)
    tool = get_tool(s.name)
    executor = tool.executor(**parse_options(s.option))
    meta = date_meta(s.date)
    out = run_call(tool, executor, s.input, meta, timeout_s=s.timeout)
    if out.error is None:
        print(out.result)
    else:
        print(f"error: {out.error}", file=sys.stderr)
    return {"tool": tool.name, "input": s.input, "result": out.result, "error": out.error,
            "latency_ms": round(out.latency_ms, 3), "exit_code": 0 if out.error is None else 1}


def add_commands(sub, command) -> None:
    p = command(sub, "tool", run_tool, "run one tool call and print its result")
    p.epilog = (f"tools: {', '.join(TOOL_KEYS)}. Exit status 0: the result is on stdout; 1: the call failed, its "
                "error is on stderr (in the figures with --json); 2: a mistake in the command")
    add_flags(p, ToolSettings)
