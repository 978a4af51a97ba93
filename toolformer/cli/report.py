"""`toolformer report` (report.html and report.md of a run, or of an iterate folder's rounds side by
side) and `toolformer show` (a terminal table)."""
from __future__ import annotations

import dataclasses

from toolformer.cli.flags import add_flags, from_args
from toolformer.config import ReportSettings, ShowSettings

STATUS_FLAGS = ("kept", "filtered", "failed")  # ShowSettings fields given as exclusive switches


def cmd_report(args) -> dict:
    from toolformer.report import report_run
    from toolformer.report.rounds import is_iterate_folder
    from toolformer.report.rounds_page import report_rounds
    from toolformer.run.manifest import Run
    settings = from_args(ReportSettings, args)
    path = Run(settings.run, settings.runs_dir).path
    if is_iterate_folder(path):  # `toolformer iterate`'s folder: its rounds side by side
        figures = report_rounds(settings, path)
        written = sum(r["report"] is not None for r in figures["rounds"])
        print(f"wrote {figures['html']} and {figures['md']}, the rounds side by side ({len(figures['rounds'])}, "
              f"{written} with a report of their own) in {figures['seconds']:.1f} s")
    else:
        figures = report_run(settings)
        print(f"wrote {figures['html']} ({figures['html_bytes'] / 1e6:.2f} MB, {figures['examples_embedded']:,} of "
              f"{figures['records']:,} calls embedded) and {figures['md']} in {figures['seconds']:.1f} s")
    for warning in figures["warnings"]:
        print(f"warning: {warning}")
    if "load_s" in figures:
        print(f"opened in headless Chromium in {figures['load_s']:.2f} s; screenshot {figures['screenshot']}; "
              f"{len(figures['console_errors'])} console errors")
    return figures


def cmd_show(args) -> dict:
    from toolformer.report import show_calls
    return show_calls(from_args(ShowSettings, args))


def add_commands(sub, command) -> None:
    p = command(sub, "report", cmd_report,
                "write runs/RUN/report.html (self-contained) and report.md: funnels, usefulness, examples; "
                "on an iterate folder, its rounds side by side (and each round's own report)", torch=False)
    add_flags(p, ReportSettings)
    p = command(sub, "show", cmd_show, "print a run's calls of one tool as a table in the terminal", torch=False)
    add_flags(p, ShowSettings, skip=STATUS_FLAGS)
    others = tuple(f.name for f in dataclasses.fields(ShowSettings) if f.name not in STATUS_FLAGS)
    add_flags(p.add_mutually_exclusive_group(), ShowSettings, skip=others)
