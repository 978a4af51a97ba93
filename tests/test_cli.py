"""Options every command shares."""
import subprocess
import sys

import pytest

from toolformer.cli import main


def test_threads_sets_torchs_thread_count():
    # in a child process: the thread count is process-wide
    code = ("import torch; from toolformer.cli import main; "
            "main(['tool', 'calculator', '2 + 2', '--threads', '1']); print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["4", "1"], out.stderr


def test_threads_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["tool", "calculator", "2 + 2", "--threads", "0"])
    assert exit_.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_a_user_error_is_one_line_without_traceback(tmp_path, capsys):
    # a stage whose input is missing: the user runs the earlier stage; no Python traceback
    code = main(["execute", "--tool", "calculator", "--run", "nothing-here", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1
    assert "Traceback" not in err and "nothing-here" in err



def test_flags_are_generated_from_a_settings_dataclass():
    import argparse
    from dataclasses import dataclass

    from toolformer.cli.flags import add_flags, from_args
    from toolformer.config import opt

    @dataclass(frozen=True)
    class Settings:
        name: str = opt(help="required")
        steps: int = opt(30, "steps")
        limit: int | None = opt(None, "optional")
        quiet: bool = opt(False, "a switch")
        progress: bool = opt(True, "on unless --no-progress")
        run: list[str] | None = opt(None, "repeatable", repeat=True)
        ray: str | None = opt(None, "bare flag means local", const="local")

    parser = argparse.ArgumentParser()
    add_flags(parser, Settings)
    s = from_args(Settings, parser.parse_args(["--name", "x", "--run", "a", "--run", "b", "--ray", "--no-progress"]))
    assert s == Settings(name="x", steps=30, limit=None, quiet=False, progress=False, run=["a", "b"], ray="local")
    s = from_args(Settings, parser.parse_args(["--name", "y", "--steps", "5", "--limit", "2", "--quiet", "--ray", "auto"]))
    assert (s.steps, s.limit, s.quiet, s.progress, s.run, s.ray) == (5, 2, True, True, None, "auto")
    with pytest.raises(SystemExit):
        parser.parse_args(["--steps", "5"])  # --name is required


def _command_paths(parser, path=()):
    """Every command of the parser as its words: (), ("eval",), ("retriever", "train"), ..."""
    import argparse
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, path + (name,))


def test_every_command_has_help(capsys):
    # `toolformer --help` once crashed: argparse %-formatted "95% CIs" in eval's help
    from toolformer.cli import build_parser
    paths = list(_command_paths(build_parser()))
    assert {(), ("eval",), ("compare",), ("tool",), ("retriever", "train")} <= set(paths) and len(paths) > 15
    for path in paths:
        with pytest.raises(SystemExit) as exit_:
            main([*path, "--help"])
        out, err = capsys.readouterr()
        assert exit_.value.code == 0 and out.startswith(f"usage: {' '.join(('toolformer', *path))}"), (path, err)
        assert len(out.splitlines()) > 3, path


def test_help_strings_are_literal_text():
    from toolformer.cli import Parser
    parser = Parser(prog="p")
    parser.add_subparsers().add_parser("sub", help="a 95% CI").add_argument("--x", help="20% of %(default)s")
    assert "a 95% CI" in parser.format_help()
    assert "20% of %(default)s" in parser._subparsers._group_actions[0].choices["sub"].format_help()
