"""The report of a `toolformer iterate` folder: NAME/report.html and report.md, its rounds side by side.

    toolformer report --run NAME          # NAME holds iterate.json (or round folders)
    write_rounds_report(Path("runs/it"))

Each round is an ordinary run, so each first gets its own report (write.write_report), which
the rounds' table links to. The page keeps the run report's style (static/page.css, the same
tables); it has no examples, so no script.
"""
from __future__ import annotations

import time
from html import escape
from pathlib import Path

from toolformer.config import ReportSettings
from toolformer.errors import UserValueError
from toolformer.report.examples import MAX_EXAMPLES
from toolformer.report.html import Raw, esc, html_table, static_text
from toolformer.report.md import md_table
from toolformer.report.rounds import (Round, RoundsSummary, calls_table, evaluation_table, previous_round_table,
                                      rounds_table, settings_facts, summarize_rounds, training_table,
                                      usefulness_table)
from toolformer.report.tables import Table
from toolformer.report.write import check_in_browser, write_report
from toolformer.run import layout
from toolformer.training.iterate import ITERATE_JSON

# (anchor, title) of each section, in page order
SECTIONS = (("rounds", "Rounds"), ("calls", "Calls per round"), ("usefulness", "Usefulness of the scored calls"),
            ("training", "Training"), ("evaluation", "Evaluation"),
            ("previous", "Each round against the one before (tools on)"))
NOTES = {
    "calls": f"candidates and executed from each round's manifest (from its {layout.SCORED} where the manifest has "
             f"none yet); scored (calls with a usefulness) and kept (usefulness ≥ τ_f) from its {layout.SCORED}.",
    "usefulness": f"L⁻ − L⁺ of every scored call (failed calls have none), from each round's {layout.SCORED}.",
    "training": "From each round's model/finetune.json; tokens / s over the optimizer steps only.",
    "evaluation": "Accuracy with its 95% Wilson interval; on − off paired on the same examples "
                  "(Newcombe's interval, exact McNemar p). From each round's eval/<benchmark>.summary.json.",
    "previous": "The tools-on records of both rounds, paired on the same examples (toolformer compare).",
}


def _sections(iteration: RoundsSummary, report_link) -> list[tuple[str, str, Table, list[str]]]:
    """(anchor, title, table, notes under it) of each section."""
    previous, previous_notes = previous_round_table(iteration)
    not_asked = iteration.settings and not iteration.settings.get("iterate", {}).get("eval")
    unevaluated = [f"{r.name}: no evaluation ({'iterate ran without --eval' if not_asked else r.status_text})"
                   for r in iteration.rounds if not r.evals]
    untrained = [f"{r.name}: not trained yet ({r.status_text})" for r in iteration.rounds if r.finetune is None]
    tables = {"rounds": (rounds_table(iteration, report_link), []), "calls": (calls_table(iteration), []),
              "usefulness": (usefulness_table(iteration), []), "training": (training_table(iteration), untrained),
              "evaluation": (evaluation_table(iteration), unevaluated), "previous": (previous, previous_notes)}
    return [(anchor, title, *tables[anchor]) for anchor, title in SECTIONS]


def _headline(iteration: RoundsSummary) -> str:
    done = sum(r.status == "done" for r in iteration.rounds)
    return f"{len(iteration.rounds)} round{'s' * (len(iteration.rounds) != 1)}, {done} done"


def _settings_note(iteration: RoundsSummary) -> str:
    return f"All of them are in {ITERATE_JSON}." if iteration.settings else \
        f"No {ITERATE_JSON} yet: it is first written when round 0's calls are curated."


def render_rounds_md(iteration: RoundsSummary) -> str:
    def link(rnd: Round) -> str:
        return " · ".join(f"[{name}]({rnd.name}/{name})" for name in (layout.REPORT_MD, layout.REPORT_HTML))
    out = [f"# Toolformer iterate run `{iteration.name}`\n",
           f"{_headline(iteration)}. {layout.REPORT_HTML} has the same tables; each round's own report is "
           f"linked from the rounds' table.\n"]
    out += [f"> ⚠ {w}\n" for w in iteration.warnings]
    out += ["## Settings\n", md_table((["", ""], settings_facts(iteration))), f"\n{_settings_note(iteration)}\n"]
    for anchor, title, table, notes in _sections(iteration, link):
        out += [f"\n## {title}\n", md_table(table)]
        out += [f"\n{NOTES[anchor]}\n"] if anchor in NOTES else []
        out += [f"- {note}" for note in notes] + ([""] if notes else [])
    return "\n".join(out)


def render_rounds_html(iteration: RoundsSummary) -> str:
    def link(rnd: Round) -> Raw:
        href = escape(f"{rnd.name}/{layout.REPORT_HTML}", quote=True)
        return Raw(f'<a href="{href}">{esc(layout.REPORT_HTML)}</a>')
    sections = _sections(iteration, link)
    nav = '<a href="#settings">settings</a>' + "".join(f'<a href="#{a}">{esc(t.lower())}</a>' for a, t, *_ in sections)
    body = [f'<header><h1>Toolformer iterate run <code>{esc(iteration.name)}</code></h1>'
            f'<p class="muted">report generated {esc(time.strftime("%Y-%m-%d %H:%M"))} · {esc(_headline(iteration))}'
            f'</p><nav>{nav}</nav></header><main>']
    body += [f'<p class="warn">⚠ {esc(w)}</p>' for w in iteration.warnings]
    facts = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in settings_facts(iteration))
    body.append(f'<section id="settings"><h2>Settings</h2><dl class="facts">{facts}</dl>'
                f'<p class="note">{esc(_settings_note(iteration))}</p></section>')
    for anchor, title, table, notes in sections:
        note = f'<p class="note">{esc(NOTES[anchor])}</p>' if anchor in NOTES else ""
        listed = "".join(f'<p class="muted">{esc(n)}</p>' for n in notes)
        body.append(f'<section id="{anchor}"><h2>{esc(title)}</h2>'
                    f'{html_table(table, "" if anchor == "rounds" else "num")}{note}{listed}</section>')
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>toolformer report · {esc(iteration.name)}</title>"
            f"<style>\n{static_text('page.css')}</style></head><body>" + "".join(body) + "</main></body></html>\n")


def write_rounds_report(path: Path, max_rows: int = MAX_EXAMPLES, seed: int | None = None) -> dict:
    """Write each round's report, then path/report.html and report.md; return the figures of the job."""
    t0 = time.perf_counter()
    iteration = summarize_rounds(path)
    rounds = {}
    for rnd in iteration.rounds:
        if rnd.run is not None:  # reads its scored files again: the run report keeps no summary to share
            rounds[rnd.name] = write_report(rnd.path, max_rows=max_rows, seed=seed)
            rnd.report = Path(rounds[rnd.name]["html"])
    html_path, md_path = path / layout.REPORT_HTML, path / layout.REPORT_MD
    html_path.write_text(render_rounds_html(iteration), encoding="utf-8")
    md_path.write_text(render_rounds_md(iteration), encoding="utf-8")
    headline = ("n", "accuracy_tools_off", "accuracy_tools_on", "call_rate")
    return {"run": iteration.name, "html": str(html_path), "md": str(md_path),
            "html_bytes": html_path.stat().st_size, "md_bytes": md_path.stat().st_size,
            "rounds": [{"round": r.number, "run": r.name, "status": r.status,
                        "report": rounds[r.name]["html"] if r.name in rounds else None,
                        "tools": rounds[r.name]["tools"] if r.name in rounds else {},
                        "evals": {b: {k: s.get(k) for k in headline} for b, s in r.evals.items()}}
                       for r in iteration.rounds],
            "warnings": iteration.warnings, "seconds": round(time.perf_counter() - t0, 3)}


def report_rounds(settings: ReportSettings, path: Path) -> dict:
    """`toolformer report` on an iterate folder: the rounds' report (with settings.screenshot, also
    opened in headless Chromium)."""
    if settings.compare:
        raise UserValueError(f"--compare: {path} is an iterate folder, whose report already puts its rounds side "
                             f"by side; to compare two rounds' calls use --run round-R --runs-dir {path} "
                             f"--compare round-S")
    figures = write_rounds_report(path, max_rows=settings.max_examples, seed=settings.seed)
    if settings.screenshot:
        figures.update(check_in_browser(Path(figures["html"]), path / layout.REPORT_SCREENSHOT))
    return figures
