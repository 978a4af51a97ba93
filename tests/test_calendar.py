"""Calendar: the date comes from the document, never the clock; prompt examples are real dates."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest

from toolformer.corpus.syntax import TOOLFORMER
from toolformer.tools import ToolError, get_tool, load_prompt, run_call
from toolformer.tools.calendar import TOOL, has_date, make_executor

REPO = Path(__file__).resolve().parents[1]
calendar = make_executor()


@pytest.mark.parametrize("value, expected", [
    ("2013-04-19", "Today is Friday, April 19, 2013."),
    ("2013-04-19T15:30:00", "Today is Friday, April 19, 2013."),
    ("2013-04-19T23:59:59+05:00", "Today is Friday, April 19, 2013."),  # the date as written
    ("2013-04-19 08:00:00Z", "Today is Friday, April 19, 2013."),
    (" 2013-04-19 ", "Today is Friday, April 19, 2013."),
    ("2000-01-01", "Today is Saturday, January 1, 2000."),
    ("1969-07-20", "Today is Sunday, July 20, 1969."),
    ("2024-02-29", "Today is Thursday, February 29, 2024."),
    ("1790-01-08", "Today is Friday, January 8, 1790."),
    (date(2013, 4, 19), "Today is Friday, April 19, 2013."),
    (datetime(2013, 4, 19, 12, 0), "Today is Friday, April 19, 2013."),
])
def test_date_from_meta(value, expected):
    assert calendar("", {"date": value}) == expected
    assert calendar("ignored input", {"date": value}) == expected


@pytest.mark.parametrize("meta", [
    {}, {"date": None}, {"date": ""}, {"date": "2013"}, {"date": "2013-02-30"}, {"date": "2013-13-01"},
    {"date": "April 19, 2013"}, {"date": 20130419}, {"date": "2013-04-19" + "0" * 100},
    {"year": None}, {"year": True}, {"year": 0}, {"year": "20133"}, {"year": "1790s"}, {"year": 17.9},
])
def test_missing_or_bad_date(meta):
    with pytest.raises(ToolError, match="no valid ISO date"):
        calendar("", meta)
    assert has_date("text", meta) is False
    out = run_call(TOOL, calendar, "", meta)
    assert out.result is None and "no valid ISO date" in out.error


@pytest.mark.parametrize("meta, expected", [
    ({"year": 1790}, "The year is 1790."),
    ({"year": "1790"}, "The year is 1790."),
    ({"year": 1790, "date": "2013-02-30"}, "The year is 1790."),  # an invalid date: only the year is known
    ({"year": 1790, "date": "2013-04-19"}, "Today is Friday, April 19, 2013."),  # the full date wins
])
def test_year_only(meta, expected):
    """A document that knows only its year (a State of the Union passage) gets the year."""
    assert calendar("", meta) == expected
    assert has_date("text", meta) is True


def test_heuristic_and_fields():
    assert has_date("any text", {"date": "2013-04-19"}) is True
    assert TOOL.heuristic is has_date
    assert get_tool("calendar") is TOOL
    assert (TOOL.tau_s, TOOL.k, TOOL.m, TOOL.tau_f) == (0.05, 5, 5, 1.0)
    assert TOOL.meta_keys == ("date", "year")  # the execute stage must not share one result across dates


def test_never_the_wall_clock():
    today = date.today()
    assert str(today.year) not in calendar("", {"date": "1901-06-15"})
    assert calendar("", {"date": "1901-06-15"}) == "Today is Saturday, June 15, 1901."


def test_prompt_and_tool_examples_are_real_dates():
    prompt = load_prompt(TOOL)
    assert prompt.endswith("Input: {input}\nOutput:")
    raw = (REPO / "toolformer" / "tools" / "prompts" / "calendar.txt").read_text(encoding="utf-8")
    assert raw.endswith("Input: {input}\nOutput:")
    outputs = [line for line in prompt.splitlines() if line.startswith("Output: ")]
    calls = [call for text in outputs + list(TOOL.examples) for call in TOOLFORMER.parse(text)]
    assert len(calls) == len(outputs) + len(TOOL.examples) == 5 + 3
    for call in calls:
        assert (call.tool, call.input) == ("Calendar", "")
        # the weekday each example claims must be the weekday of its date
        day = datetime.strptime(re.sub(r"^Today is \w+, ", "", call.result), "%B %d, %Y.").date()
        assert calendar("", {"date": day.isoformat()}) == call.result


def test_prompt_length(tokenizer):
    n = len(tokenizer(load_prompt(TOOL))["input_ids"])
    assert 250 <= n <= 400, n


def test_cli():
    script = shutil.which("toolformer", path=str(Path(sys.executable).parent))
    cmd = [script] if script else [sys.executable, "-m", "toolformer.cli"]
    ok = subprocess.run(cmd + ["tool", "calendar", "", "--date", "2013-04-19"],
                        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert (ok.returncode, ok.stdout) == (0, "Today is Friday, April 19, 2013.\n"), ok.stderr
    bad = subprocess.run(cmd + ["tool", "calendar", ""],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 1 and "no valid ISO date" in bad.stderr
