"""Writing a run's report: report.html, report.md and the figures beside them.

    write_report(Path("runs/demo"))                      # the files, and figures about the job
    report_run(ReportSettings(run="demo", compare="b"))  # the same from settings, as `toolformer report`
"""
from __future__ import annotations

import time
from pathlib import Path

from toolformer.config import ReportSettings
from toolformer.report.content import Figure, Report
from toolformer.report.examples import MAX_EXAMPLES, collect_examples
from toolformer.report.figures import compare_figure, tool_figure
from toolformer.report.html import render_html
from toolformer.report.md import render_md
from toolformer.report.summary import STATUSES, sample_seed, summarize_run
from toolformer.run import layout
from toolformer.run.manifest import Run


def write_report(run_dir: Path, compare_dir: Path | None = None, max_rows: int = MAX_EXAMPLES,
                 seed: int | None = None) -> dict:
    """Write report.html, report.md and the figures into run_dir; return the figures of the job.
    seed: of the random example sample; by default the seed the run was sampled with."""
    t0 = time.perf_counter()
    run = summarize_run(run_dir)
    other = summarize_run(compare_dir) if compare_dir else None
    seed = seed if seed is not None else sample_seed(run.manifest) or 0
    rows, warnings = collect_examples(run, max_rows, seed)
    figures = {t.key: Figure(tool_figure(t), layout.REPORT_TOOL_FIGURE.format(tool=t.key)) for t in run.tools if t.records}
    compared = Figure(compare_figure(run, other), layout.REPORT_COMPARE_FIGURE.format(other=other.name)) if other else None
    report = Report(run, other, rows, warnings, seed, figures, compared)
    for figure in report.all_figures:
        (run_dir / figure.name).write_bytes(figure.png)
    html_path, md_path = run_dir / layout.REPORT_HTML, run_dir / layout.REPORT_MD
    html_path.write_text(render_html(report), encoding="utf-8")
    md_path.write_text(render_md(report), encoding="utf-8")
    return {"run": run.name, "html": str(html_path), "md": str(md_path),
            "html_bytes": html_path.stat().st_size, "md_bytes": md_path.stat().st_size,
            "figures": [str(run_dir / figure.name) for figure in report.all_figures],
            "records": run.records, "examples_embedded": len(rows), "seed": seed,
            "tools": {t.key: {"tau_f": t.tau_f, "records": t.records, "scored": len(t.usefulness),
                              **{s: t.counts[s] for s in STATUSES}} for t in run.tools},
            "warnings": warnings + [w for t in run.tools for w in t.warnings],
            "seconds": round(time.perf_counter() - t0, 3)}


def check_in_browser(html_path: Path, screenshot: Path) -> dict:
    """Open the page in headless Chromium: load time, console errors, a screenshot."""
    from toolformer.report.browser import Chromium
    with Chromium() as browser:
        load_s = browser.open(html_path)
        browser.screenshot(screenshot)
        return {"load_s": round(load_s, 3), "console_errors": browser.console_errors,
                "screenshot": str(screenshot)}


def report_run(settings: ReportSettings) -> dict:
    """`toolformer report`: write the report of settings.run (and with settings.screenshot, open it
    in headless Chromium); return the figures of the job."""
    run = Run(settings.run, settings.runs_dir)
    other = Run(settings.compare, settings.runs_dir).path if settings.compare else None
    figures = write_report(run.path, other, max_rows=settings.max_examples, seed=settings.seed)
    if settings.screenshot:
        figures.update(check_in_browser(Path(figures["html"]), run.path / layout.REPORT_SCREENSHOT))
    return figures
