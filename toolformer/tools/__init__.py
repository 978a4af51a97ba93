"""The tools: one module per tool, each declaring a `Tool` and registering it in `TOOLS`.

    from toolformer.tools import get_tool, run_call
    calc = get_tool("calculator")
    run_call(calc, calc.executor(), "400 / 1400").result   # "0.29"

To add a tool: write toolformer/tools/<key>.py ending with `TOOL = register(Tool(...))`, its
few-shot prompt toolformer/tools/prompts/<key>.txt, and import the module below.
"""
from __future__ import annotations

from toolformer.tools.base import (TOOLS, CallResult, Executor, Tool, ToolError, load_prompt, register,
                                   run_call, run_calls)
# importing a tool module registers its tool; this order is the order of TOOL_KEYS
from toolformer.tools import calculator, calendar, wikisearch, qa  # noqa: E402,F401

TOOL_KEYS: tuple[str, ...] = tuple(TOOLS.names())  # ("calculator", "calendar", "wikisearch", "qa")


def get_tool(name: str) -> Tool:
    """The tool registered as `name` (case-insensitive); a UserValueError lists the known ones."""
    return TOOLS.get(name)


def all_tools() -> list[Tool]:
    return [TOOLS.get(key) for key in TOOL_KEYS]


__all__ = ["TOOLS", "TOOL_KEYS", "CallResult", "Executor", "Tool", "ToolError",
           "all_tools", "get_tool", "load_prompt", "register", "run_call", "run_calls"]
