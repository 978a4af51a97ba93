"""report.html: one self-contained page (inline CSS and JS from static/, figures as base64 PNG).

Tables are built here as escaped HTML; the example rows go in as one JSON blob that the page's
script renders with text nodes only, so no document text is ever parsed as markup.
"""
from __future__ import annotations

import base64
import json
import time
from functools import cache
from html import escape
from importlib.resources import files

from toolformer.report.content import Figure, Report
from toolformer.report.summary import RunSummary, ToolSummary
from toolformer.report.tables import (FUNNEL_NOTE, Table, compare_table, count_text, errors_table, funnel_table,
                                      manifest_facts, overview_table, percent, settings_diff_table, stages_table,
                                      top_values_table, usefulness_table, what_if_grid, what_if_table)
from toolformer.run import layout


@cache
def static_text(name: str) -> str:
    """A file of toolformer/report/static/ (package data)."""
    return (files("toolformer.report") / "static" / name).read_text(encoding="utf-8")


def static_fragment(name: str) -> str:
    """An HTML fragment of static/, without the file's final newline."""
    return static_text(name).removesuffix("\n")


class Raw(str):
    """HTML that is already escaped (built here, never from data)."""


def esc(value) -> str:
    return value if isinstance(value, Raw) else escape(str(value), quote=True)


def html_table(table: Table, cls: str = "") -> Raw:
    header, rows = table
    if not rows:
        return Raw('<p class="muted">none</p>')
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return Raw(f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
               f'<tbody>{body}</tbody></table></div>')


def json_for_script(data) -> str:
    """JSON safe inside <script>: no '<' can close the element, no '&' starts an entity."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _figure_html(figure: Figure, alt: str, caption: str) -> Raw:
    png = base64.b64encode(figure.png).decode()
    return Raw(f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{png}">'
               f'<figcaption>{esc(caption)} Also saved as <code>{esc(figure.name)}</code>.</figcaption></figure>')


def _funnel_html(t: ToolSummary) -> Raw:
    _, rows = funnel_table(t)
    top = max([s["count"] or 0 for s in t.funnel] + [1])
    body = []
    for step, (label, count, rate) in zip(t.funnel, rows):
        width = 0 if not step["count"] else max(0.4, 100 * step["count"] / top)
        bar = f'<div class="track"><div class="bar {"kept" if step["label"] == "kept" else ""}" ' \
              f'style="width:{width:.2f}%"></div></div>'
        body.append(f'<tr class="{"sub" if step["side"] else ""}"><td class="label">{esc(label)}</td>'
                    f'<td class="num">{esc(count)}</td><td class="barcell">{bar}</td>'
                    f'<td class="rate">{esc(rate)}</td></tr>')
    note = f'<p class="note">{esc(FUNNEL_NOTE)}</p>' if any(s["source"] == "records" for s in t.funnel) else ""
    return Raw('<table class="funnel"><thead><tr><th>step</th><th class="num">count</th><th></th><th>rate</th>'
               f'</tr></thead><tbody>{"".join(body)}</tbody></table>{note}')


def _manifest_html(run: RunSummary) -> Raw:
    items = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in manifest_facts(run))
    m = run.manifest
    full = esc(json.dumps(m, indent=2, ensure_ascii=False)) if m else f"no {layout.MANIFEST}"
    return Raw(f'<dl class="facts">{items}</dl><h3>Stages</h3>{html_table(stages_table(m))}'
               f'<details><summary>the whole {layout.MANIFEST}</summary><pre>{full}</pre></details>')


def _tool_html(t: ToolSummary, figure: Figure | None) -> Raw:
    parts = [f'<section class="tool" id="tool-{esc(t.key)}"><h2>{esc(t.name)}'
             f'<span class="tau">τ_f = {esc("?" if t.tau_f is None else f"{t.tau_f:g}")}</span></h2>']
    parts += [f'<p class="warn">⚠ {esc(w)}</p>' for w in t.warnings]
    reasons = (["reason (numbers → #)", "calls"], [[r, count_text(n)] for r, n in t.reasons.most_common(8)])
    parts.append(f'<div class="cols wide-left"><div><h3>Funnel</h3>{_funnel_html(t)}</div>'
                 f'<div><h3>Distributions</h3>{html_table(usefulness_table(t), "num")}'
                 f'<h3>Not kept, why</h3>{html_table(reasons, "num")}</div></div>')
    if figure:
        parts.append(_figure_html(figure, f"usefulness and p_start of {t.name}",
                                  "Left: L⁻ − L⁺ of every scored call, kept in green, τ_f dashed. "
                                  "Right: p_start of kept and filtered calls."))
    parts.append(f'<h3>At the threshold\'s edge</h3><div class="edge" data-tool="{esc(t.key)}"></div>')
    ok = t.records - t.counts["failed"]
    parts.append(f'<div class="cols"><div><h3>Most frequent inputs ({len(t.inputs):,} distinct)</h3>'
                 f'{html_table(top_values_table(t.inputs, t.records), "values")}</div>'
                 f'<div><h3>Most frequent results ({len(t.results):,} distinct)</h3>'
                 f'{html_table(top_values_table(t.results, ok), "values")}</div></div>')
    parts.append(f'<h3>Tool errors ({t.counts["failed"]:,} failed calls, {percent(t.counts["failed"], t.records)})</h3>'
                 f'{html_table(errors_table(t))}</section>')
    return Raw("".join(parts))


def _header_html(report: Report) -> str:
    run = report.run
    nav = "".join(f'<a href="#tool-{esc(t.key)}">{esc(t.name)}</a>' for t in run.tools)
    compare_link = '<a href="#compare">compare</a>' if report.other else ""
    return (f'<header><h1>Toolformer run <code>{esc(run.name)}</code></h1>'
            f'<p class="muted">report generated {esc(time.strftime("%Y-%m-%d %H:%M"))} · {run.records:,} scored '
            f'calls · {report.kept:,} kept</p>'
            f'<nav><a href="#manifest">manifest</a><a href="#overview">overview</a><a href="#whatif">what if τ_f</a>'
            f'{nav}{compare_link}<a href="#examples">examples</a></nav></header>')


def _compare_html(report: Report) -> str:
    run, other, figure = report.run, report.other, report.compare_figure
    img = _figure_html(figure, "usefulness of both runs",
                       "Usefulness per tool, solid: distribution, dashed: τ_f.") if figure else ""
    return (f'<section id="compare"><h2>Compared with <code>{esc(other.name)}</code></h2>'
            f'<h3>Settings that differ</h3>{html_table(settings_diff_table(run, other))}'
            f'<h3>Funnels and kept calls</h3>{html_table(compare_table(run, other), "num")}{img}</section>')


def _page_data(report: Report) -> dict:
    """The JSON blob the page's script reads."""
    run = report.run
    tools = [{"key": t.key, "name": t.name, "tau": t.threshold, "scored": len(t.usefulness),
              "records": t.records, "kept": t.counts["kept"]} for t in run.tools]
    return {"run": run.name, "tools": tools, "rows": report.rows, "records": run.records,
            "seed": report.seed, "whatif": what_if_grid(run)}


def render_html(report: Report) -> str:
    run = report.run
    body = [_header_html(report), "<main>"]
    body += [f'<p class="warn">⚠ {esc(w)}</p>' for w in report.warnings]
    body.append(f'<section id="manifest"><h2>Manifest</h2>{_manifest_html(run)}</section>')
    body.append(f'<section id="overview"><h2>Overview</h2>{html_table(overview_table(run), "num")}</section>')
    body.append(f'<section id="whatif"><h2>What if τ_f were different?</h2><p class="muted">Calls each tool '
                f'would keep at other thresholds (usefulness ≥ τ), from all scored records; failed calls are '
                f'never kept.</p>{html_table(what_if_table(run), "num")}{static_fragment("slider.html")}</section>')
    body += [_tool_html(t, report.figures.get(t.key)) for t in run.tools]
    if report.other:
        body.append(_compare_html(report))
    body.append(static_fragment("examples.html") + "</main>")
    # page.css and page.js end with a newline: one more after <style> and <script> frames them
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>toolformer report · {esc(run.name)}</title>"
            f"<style>\n{static_text('page.css')}</style></head><body>"
            + "".join(body)
            + f'<script type="application/json" id="report-data">{json_for_script(_page_data(report))}</script>'
            + f"<script>\n{static_text('page.js')}</script></body></html>\n")
