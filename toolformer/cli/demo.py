"""`toolformer demo`: the main job end to end (toolformer/demo.py)."""
from __future__ import annotations

from toolformer.cli.flags import add_flags, from_args
from toolformer.config import DemoSettings


def cmd_demo(args) -> dict:
    from toolformer.cli import main
    from toolformer.demo import demo
    return demo(from_args(DemoSettings, args), main)


def add_commands(sub, command) -> None:
    p = command(sub, "demo", cmd_demo, "math problems and a facts slice -> one 135M model that calls "
                                      "Calculator, Calendar, WikiSearch and QA, against the same finetuning "
                                      "without calls")
    add_flags(p, DemoSettings)
