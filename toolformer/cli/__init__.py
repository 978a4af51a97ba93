"""`toolformer` command line. Each stage module registers its own subcommands.

A command function takes the parsed args and returns a dict of figures; with --json the dict is
printed as one JSON object on the last line of stdout. Human-readable output goes to stderr
(progress bars) or stdout before it.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from toolformer.cli.flags import bounded
from toolformer.errors import UserError, fixable


# modules that define add_commands(subparsers, command)
COMMAND_MODULES = (
    "toolformer.cli.tool_cmd",
    "toolformer.cli.curate",
    "toolformer.cli.demo",
    "toolformer.cli.report",
    "toolformer.cli.retriever",
    "toolformer.cli.build", "toolformer.cli.finetune", "toolformer.cli.generate", "toolformer.cli.evaluate",
    "toolformer.cli.iterate",
)


def command(subparsers, name: str, func, help: str, results: bool = True, torch: bool = True) -> argparse.ArgumentParser:
    """Add a subcommand; commands that produce results also get --json, those that run torch --threads."""
    parser = subparsers.add_parser(name, help=help, description=help)
    if results:
        parser.add_argument("--json", action="store_true",
                            help="end by printing the figures as one JSON object on the last line")
    if torch:
        parser.add_argument("--threads", type=bounded(int, low=1), metavar="N",
                            help="CPU threads for torch (default: one per core). Give each run 1 when several "
                                 "share a machine: torch's threads slow down sharply when cores are oversubscribed")
    parser.set_defaults(func=func)
    return parser


class LiteralHelpFormatter(argparse.HelpFormatter):
    """Help strings are plain text: a "%" in one ("95% CIs") prints as written. argparse would
    %-format them and crash on it; no help here uses %(default)s (add_flags writes defaults in)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help.replace("%", "%%")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser with literal help. argparse builds subparsers of the parser's own class,
    so every subcommand, however deep, gets it too."""

    def __init__(self, *args, formatter_class=LiteralHelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="toolformer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub, command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        import torch
        torch.set_num_threads(args.threads)
    try:
        figures = args.func(args)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except UserError as err:
        # something the user can fix (bad file:line, unknown tool, missing model): one clear line;
        # anything else is a bug and keeps its traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder, a file where a folder belongs
        user_error = fixable(err)
        if user_error is None:
            raise
        print(f"error: {user_error}", file=sys.stderr)
        return 2
    if isinstance(figures, int):  # a command that only reports success or failure
        return figures
    if getattr(args, "json", False) and figures is not None:
        print(json.dumps(figures, ensure_ascii=False, default=str))
    return int(figures.get("exit_code", 0)) if isinstance(figures, dict) else 0


if __name__ == "__main__":
    sys.exit(main())
