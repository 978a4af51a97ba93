"""`toolformer demo`: the main job end to end on the embedded defaults."""
from __future__ import annotations


def cmd_demo(args) -> dict:
    raise NotImplementedError("demo is being assembled")


def add_commands(sub, command) -> None:
    command(sub, "demo", cmd_demo, "run the whole pipeline on the embedded defaults")
