"""Calendar: `[Calendar() → Today is Friday, April 19, 2013.]`, from the document's own date.

The date is meta["date"] (ISO 8601, optionally with a time part: "2013-04-19",
"2013-04-19T15:30:00Z"), never the wall clock: a document from 2013 must see 2013. A document
that knows only its year (meta["year"], e.g. a State of the Union passage) gets what is known:
`The year is 1790.`. Day and month names are spelled out here rather than with strftime, which
follows the locale.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Mapping

from toolformer.tools.base import Executor, Tool, ToolError, register

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def document_date(meta: Mapping | None) -> date | None:
    """The document's date from meta["date"], or None if it has none or an invalid one."""
    value = (meta or {}).get("date")
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return datetime.fromisoformat(value.strip()).date()
    except ValueError:
        return None


def document_year(meta: Mapping | None) -> int | None:
    """The document's year: its date's, else meta["year"] (an int or a string of digits, 1..9999)."""
    day = document_date(meta)
    if day is not None:
        return day.year
    value = (meta or {}).get("year")
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 4:
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 9999 else None


def today_text(day: date) -> str:
    return f"Today is {WEEKDAYS[day.weekday()]}, {MONTHS[day.month - 1]} {day.day}, {day.year}."


def year_text(year: int) -> str:
    return f"The year is {year}."


def calendar_text(meta: Mapping | None) -> str | None:
    """What Calendar() answers for a document with this metadata; None when it has no date."""
    day = document_date(meta)
    if day is not None:
        return today_text(day)
    year = document_year(meta)
    return None if year is None else year_text(year)


def make_executor() -> Executor:
    def calendar(input: str, meta: Mapping) -> str:
        # the input is ignored: the call is written Calendar()
        text = calendar_text(meta)
        if text is None:
            raise ToolError(f"the document has no valid ISO date (meta date: {meta.get('date')!r:.40}) "
                            f"and no year")
        return text
    return calendar


def has_date(text: str, meta: Mapping | None = None) -> bool:
    """The paper only annotates documents whose date is known (it takes it from the URL)."""
    return document_year(meta) is not None


TOOL = register(Tool(
    name="Calendar",
    description="Tells today's date (weekday, month, day and year) at the time the text was "
                "written; takes no input.",
    examples=(
        "The election is in two days, on [Calendar() → Today is Sunday, November 4, 2012.] "
        "Tuesday, November 6.",
        "This year, [Calendar() → Today is Monday, March 2, 2015.] 2015, the festival turns 50.",
        "The report is due next month, in [Calendar() → Today is Friday, April 19, 2013.] May.",
    ),
    # the present only: the date of a past or announced event is a fact to look up (WikiSearch, QA)
    uses=("Question: What is the date today?", "Question: What day of the week is it today?",
          "Question: Which month comes after this one?", "The new law takes effect next year, in",
          "Earlier this year, in"),
    tau_s=0.05, k=5, m=5, tau_f=1.0,
    make_executor=make_executor,
    heuristic=has_date,
    timeout_s=1.0,
    # the result depends on the document's date (or year), not only on the input
    meta_keys=("date", "year"),
    takes_input=False,
))
