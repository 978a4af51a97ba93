"""Options every command shares, every command's --help, and `toolformer tool`."""
import dataclasses
import json
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


def test_only_commands_that_run_torch_take_threads(capsys):
    for path, takes in ((["compare"], False), (["show"], False), (["report"], False), (["tool"], True),
                        (["eval"], True), (["retriever", "train"], True)):
        with pytest.raises(SystemExit):
            main([*path, "--help"])
        assert ("--threads" in capsys.readouterr().out) == takes, path


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


@pytest.mark.parametrize("argv, message", [
    # each crashed with a traceback (range() arg 3 must not be zero, torch's "Invalid learning rate")
    # or ran on silently (--limit -1 evaluated 999 of 1000 examples, -k 0 printed nothing)
    (["eval", "--benchmark", "svamp", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (["eval", "--benchmark", "svamp", "--limit", "-1"], "argument --limit: must be at least 1, got -1"),
    (["curate", "--run", "r", "--chunk-docs", "0"], "argument --chunk-docs: must be at least 1, got 0"),
    (["retriever", "train", "--out", "x", "--lr", "-1"], "argument --lr: must be greater than 0, got -1"),
    (["retriever", "eval", "--queries", "q", "--holdout", "1.5"], "argument --holdout: must be at most 0.9, got 1.5"),
    (["retriever", "search", "x", "-k", "0"], "argument -k: must be at least 1, got 0"),
    (["finetune", "--run", "r", "--lr", "nan"], "argument --lr: must be greater than 0, got nan"),
    (["build", "--run", "r", "--max-per-tool", "-1"], "argument --max-per-tool: must be at least 0, got -1"),
])
def test_a_number_out_of_its_bounds_is_refused_by_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_default_of_zero_is_shown_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["retriever", "train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "seed of --limit's sample and of training (default: 0)" in out and "(default: 0.0)" in out  # --holdout


@pytest.mark.parametrize("flags, message", [
    (["--tau-f", "abc"], "--tau-f 'abc': expected a float"),
    (["--k", "calculator=-1"], "--k for calculator: -1 is outside [1, inf]"),
    (["--tau-s", "1.5"], "--tau-s for calculator: 1.5 is outside [0, 1]"),
])
def test_per_tool_settings_are_checked_before_any_stage_runs(flags, message, tmp_path, capsys):
    # --tau-f abc was refused only by the filter, after the whole sample and execute stages
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"id": "d", "text": "The 4 tickets cost 12 dollars."}) + "\n")
    code = main(["curate", "--run", "r", "--runs-dir", str(tmp_path), "--corpus", str(corpus),
                 "--tools", "calculator", *flags])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing ran, nothing written


def test_a_path_of_the_wrong_kind_is_a_one_line_error(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    api = tmp_path / "api.jsonl"
    api.write_text(json.dumps({"name": "Calc", "description": "adds numbers"}) + "\n")
    assert main(["retriever", "train", "--out", str(a_file), "--tools", str(api), "--synthesize", "2"]) == 2
    assert capsys.readouterr().err == f"error: {a_file}: a file is there, where a folder was expected\n"


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


def test_tool_takes_its_flags_from_the_settings(capsys):
    # `toolformer tool` was plain argparse; its flags now come from ToolSettings like every command's
    from toolformer.cli import build_parser
    from toolformer.cli.flags import from_args
    from toolformer.config import ToolSettings
    parser = build_parser()
    tool = parser._subparsers._group_actions[0].choices["tool"]
    helps = {action.dest: action.help for action in tool._actions}
    assert all(helps[f.name] == f.metadata["help"] for f in dataclasses.fields(ToolSettings))
    args = parser.parse_args(["tool", "Calculator", "7 / 2", "--option", "decimals=0", "--option", "x=1",
                                      "--timeout", "0.5", "--date", "2013-04-19"])
    assert from_args(ToolSettings, args) == ToolSettings(name="Calculator", input="7 / 2", date="2013-04-19",
                                                         timeout=0.5, option=["decimals=0", "x=1"])
    assert main(["tool", "calculator", "7 / 2", "--option", "decimals=0", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "4" and json.loads(out[-1]) == {"tool": "Calculator", "input": "7 / 2", "result": "4",
                                                     "error": None, "latency_ms": json.loads(out[-1])["latency_ms"],
                                                     "exit_code": 0}
    # the call's own failure: exit 1, its error on stderr and in the figures
    assert main(["tool", "calculator", "1 / 0", "--json"]) == 1
    out, err = capsys.readouterr()
    assert err == "error: division by zero\n" and json.loads(out.splitlines()[-1])["error"] == "division by zero"


@pytest.mark.parametrize("argv, message", [
    (["abacus", "1"], "unknown tool 'abacus' (available: calculator, calendar, wikisearch, qa)"),
    (["calculator", "1", "--option", "decimals"], "--option expects key=value, got 'decimals'"),
    (["calculator", "1", "--option", "decimals=1.5"], "decimals must be a whole number 0..10, got 1.5"),
    (["calculator", "1", "--option", "decimals=abc"], "decimals must be a whole number 0..10, got 'abc'"),
    (["calculator", "1", "--option", "digits=3"], "Calculator has no option 'digits' (options: decimals)"),
    (["calculator", "1", "--timeout", "0"], "--timeout must be a positive number of seconds, got 0"),
    (["calculator", "1", "--timeout", "-1"], "--timeout must be a positive number of seconds, got -1"),
    (["calendar", "", "--date", "2013-13-01"], "--date must be an ISO 8601 date such as 2013-04-19, got '2013-13-01'"),
])
def test_tool_mistakes_are_one_line_errors(argv, message, capsys):
    # before: a traceback (decimals=abc), a call error with exit 1 (a bad --date, decimals=1.5) or
    # a silently ignored flag (--timeout 0 ran with the tool's own timeout)
    assert main(["tool", *argv]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"error: {message}\n")
