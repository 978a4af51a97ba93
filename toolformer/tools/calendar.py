"""Calendar: `[Calendar() → Today is Friday, April 19, 2013.]`, from the document's own date.

The date is meta["date"] (ISO 8601, optionally with a time part: "2013-04-19",
"2013-04-19T15:30:00Z"), never the wall clock: a document from 2013 must see 2013.
Day and month names are spelled out here rather than with strftime, which follows the locale.
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


def today_text(day: date) -> str:
    return f"Today is {WEEKDAYS[day.weekday()]}, {MONTHS[day.month - 1]} {day.day}, {day.year}."


def make_executor() -> Executor:
    def calendar(input: str, meta: Mapping) -> str:
        # the input is ignored: the call is written Calendar()
        day = document_date(meta)
        if day is None:
            raise ToolError(f"the document has no valid ISO date (meta date: {meta.get('date')!r:.40})")
        return today_text(day)
    return calendar


def has_date(text: str, meta: Mapping | None = None) -> bool:
    """The paper only annotates documents whose date is known (it takes it from the URL)."""
    return document_date(meta) is not None


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
    tau_s=0.05, k=5, m=5, tau_f=1.0,
    make_executor=make_executor,
    heuristic=has_date,
    timeout_s=1.0,
    meta_keys=("date",),  # the result depends on the document's date, not only on the input
    takes_input=False,
))
