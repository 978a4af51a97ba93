"""Reports on a run's API calls: what was sampled, executed, kept and filtered, per tool.

    toolformer report --run NAME [--compare OTHER]   runs/NAME/report.html (+ report.md, report-*.png)
    toolformer show --run NAME --tool T [--kept|--filtered|--failed] [--top N]   a terminal table
    toolformer report --run ITERATE_NAME             an iterate folder: its rounds side by side

Modules: summary (reading a run: manifest and per-tool statistics), examples (the rows the page
embeds), tables, figures, html and md (the two renderings), write (the files), show (the
terminal view), rounds and rounds_page (an iterate folder's rounds); static/ holds the page's CSS, script and fixed HTML.
"""
from __future__ import annotations

from toolformer.report.examples import MAX_EXAMPLES
from toolformer.report.show import show_calls
from toolformer.report.summary import RunSummary, ToolSummary, read_manifest, sample_seed, summarize_run
from toolformer.report.tables import FUNNEL_NOTE, compare_table, errors_table, what_if_grid, what_if_table
from toolformer.report.write import check_in_browser, report_run, write_report

__all__ = ["FUNNEL_NOTE", "MAX_EXAMPLES", "RunSummary", "ToolSummary", "check_in_browser", "compare_table",
           "errors_table", "read_manifest", "report_run", "sample_seed", "show_calls", "summarize_run",
           "what_if_grid", "what_if_table", "write_report"]
