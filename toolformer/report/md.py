"""report.md: the page's tables in Markdown, with a few examples per tool and the figures linked."""
from __future__ import annotations

from toolformer.report.content import Report
from toolformer.report.tables import (FUNNEL_NOTE, Table, compare_table, errors_table, funnel_table,
                                      manifest_facts, overview_table, settings_diff_table, signed_usefulness,
                                      stages_table, top_values_table, usefulness_table, what_if_table)
from toolformer.run import layout


def md_table(table: Table) -> str:
    header, rows = table
    if not rows:
        return "none\n"

    def cell(value) -> str:
        return " ".join(str(value).split()).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"



def _md_example(row: dict) -> list[str]:
    call = row["c"] + (row["r"] or "") + row["z"]
    # shorter than the page's: a row of a table in a text file
    before, cut_before = _clip_words(row["b"], 120, from_end=True)
    after, cut_after = _clip_words(row["a"], 90)
    text = ("…" if row["cb"] or cut_before else "") + before + f" `{call}` " + after + \
        ("…" if row["ca"] or cut_after else "")
    mark = {"k": "✓", "f": "✗", "x": f"⚠ {row['e']}"}[row["s"]]
    return [text, signed_usefulness(row["u"]), mark]


def _clip_words(text: str, n: int, from_end: bool = False) -> tuple[str, bool]:
    """About n characters of text, cut at a space; and whether it was cut."""
    if len(text) <= n:
        return text, False
    if from_end:
        cut = text[-n:]
        return cut[cut.index(" ") + 1:] if " " in cut[:25] else cut, True
    cut = text[:n]
    return cut[:cut.rindex(" ")] if " " in cut[-25:] else cut, True


def _tool_md(report: Report, index: int) -> list[str]:
    t = report.run.tools[index]
    out = [f"\n## {t.name} (τ_f = {'?' if t.tau_f is None else f'{t.tau_f:g}'})\n"]
    out += [f"> ⚠ {w}\n" for w in t.warnings]
    out += [md_table(funnel_table(t))]
    if any(s["source"] == "records" for s in t.funnel):
        out.append(f"\n{FUNNEL_NOTE}\n")
    out += ["\n### Distributions\n", md_table(usefulness_table(t))]
    if t.key in report.figures:
        out.append(f"\n![usefulness and p_start of {t.name}]({report.figures[t.key].name})\n")
    for section, title in (("top", "Top kept"), ("near", "Nearest misses"), ("worst", "Worst")):
        sign = 1 if section == "worst" else -1
        # calls kept unscored (τ_f = -inf) have no usefulness: they come last
        picked = sorted((r for r in report.rows if r["t"] == index and section in r["g"]),
                        key=lambda r: (r["u"] is None, sign * (r["u"] or 0)))[:5]
        out += [f"\n### {title}\n", md_table((["example", "L⁻ − L⁺", "kept"], [_md_example(r) for r in picked]))]
    ok = t.records - t.counts["failed"]
    out += ["\n### Most frequent inputs\n", md_table(top_values_table(t.inputs, t.records)),
            "\n### Most frequent results\n", md_table(top_values_table(t.results, ok)),
            "\n### Tool errors\n", md_table(errors_table(t))]
    return out


def render_md(report: Report) -> str:
    run, other = report.run, report.other
    out = [f"# Toolformer run `{run.name}`\n", f"{run.records:,} scored calls, {report.kept:,} kept. "
           f"{layout.REPORT_HTML} has the same and an explorer of {len(report.rows):,} example calls.\n"]
    out += [f"> ⚠ {w}\n" for w in report.warnings]
    out += ["## Manifest\n", md_table((["", ""], manifest_facts(run))),
            "\n### Stages\n", md_table(stages_table(run.manifest)),
            "\n## Overview\n", md_table(overview_table(run)),
            "\n## What if τ_f were different?\n", md_table(what_if_table(run))]
    for index in range(len(run.tools)):
        out += _tool_md(report, index)
    if other:
        out += [f"\n## Compared with `{other.name}`\n", "### Settings that differ\n",
                md_table(settings_diff_table(run, other)), "\n### Funnels and kept calls\n",
                md_table(compare_table(run, other))]
        if report.compare_figure:
            out.append(f"\n![usefulness of both runs]({report.compare_figure.name})\n")
    return "\n".join(out)
