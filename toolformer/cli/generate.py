"""`toolformer generate "text" ...`: greedy generation with live tool calls, shown inline."""
from __future__ import annotations

from toolformer.cli.flags import add_flags, from_args
from toolformer.config import GenerateSettings


def cmd_generate(args) -> dict:
    from toolformer.cli.tool_cmd import date_meta
    from toolformer.inference.decoder import generate
    meta = date_meta(args.date)
    gens = generate(args.text, from_args(GenerateSettings, args), metas=[meta] * len(args.text))
    for g in gens:
        print(g.prompt + g.output)
    return {"generations": [vars(g) for g in gens],
            "calls": sum(len(g.calls) for g in gens), "new_tokens": sum(g.new_tokens for g in gens)}


def add_commands(sub, command) -> None:
    p = command(sub, "generate", cmd_generate, "greedy generation with live tool calls, shown inline")
    p.add_argument("text", nargs="+", help="prompt(s)")
    add_flags(p, GenerateSettings)
    p.add_argument("--date", help="today's date (ISO) for the Calendar tool")
