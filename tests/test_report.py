"""`toolformer report` and `toolformer show` on hand-written runs with known counts, an HTML
injection case, a synthetic 100,000-call run, and the page in a real headless Chromium."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from synthetic_run import write_synthetic_run
import toolformer.report as report
from toolformer.report.browser import INSTALL_HINT, Chromium, find_chromium
from toolformer.cli import main
from toolformer.run.records import SCORED, read_jsonl
from toolformer.corpus.syntax import TOOLFORMER

DOCS = {
    "d1": "The budget grew from 400 dollars to 1400 dollars, an increase of 250 percent in one year.",
    "d2": "Out of 85 patients, 23 were admitted to the ward that week.",
    "d3": "Sales were 30 units on Monday and 45 units on Tuesday, so 75 in total.",
    "d4": "Today the committee met again in the capital.",
}
# (tool, document, the text the call goes before, input, result, error, usefulness)
CALLS = [
    ("calculator", "d1", " an increase", "400 / 1400", "0.29", None, 1.2),
    ("calculator", "d2", " were admitted", "85 / 23", "3.7", None, 0.5),        # exactly τ_f: kept
    ("calculator", "d3", " in total", "30 + 45", "75", None, 0.499),            # just under: filtered
    ("calculator", "d3", " units on Tuesday", "30 - 45", "-15", None, -1.0),
    ("calculator", "d1", " percent", "3 +* 4", None, "cannot evaluate '3 +* 4': bad operator", None),
    ("calculator", "d2", " that week", "1 // 0", None, "cannot evaluate '1 // 0': bad operator", None),
    ("calendar", "d4", " the committee", "", "Today is Friday, April 19, 2013.", None, 1.5),
    ("calendar", "d4", " in the capital", "", "Today is Friday, April 19, 2013.", None, 0.2),
    ("calendar", "d4", " met again", "", None, "timeout after 5 s", None),
]
NAMES = {"calculator": "Calculator", "calendar": "Calendar"}


def scored_record(i: int, tool: str, doc: str, before: str, input: str, result, error, usefulness,
                  tau: float, text: str) -> dict:
    rec = {"id": f"{tool}-{i}", "doc_id": doc, "tool": tool, "window": 0, "position": text.index(before),
           "token_index": 0, "p_start": 0.1 + i / 100, "input": input, "call": TOOLFORMER.render(NAMES[tool], input),
           "result": result, "error": error, "latency_ms": 1.5}
    if error is not None:
        return rec | {"loss_plus": None, "loss_no_call": None, "loss_no_result": None, "loss_minus": None,
                      "usefulness": None, "kept": False, "reason": f"tool error: {error}"}
    minus = 3.0
    return rec | {"loss_plus": minus - usefulness, "loss_no_call": minus, "loss_no_result": minus + 0.25,
                  "loss_minus": minus, "usefulness": usefulness, "kept": usefulness >= tau,
                  "reason": None if usefulness >= tau else f"usefulness {usefulness:.3f} < tau_f {tau:g}"}


def make_run(runs: Path, name: str = "small", calc_tau: float = 0.5, docs: dict = DOCS, calls: list = CALLS,
             config: dict | None = None, seed: int = 7) -> Path:
    """A run folder as the curation stages write it: manifest, documents.jsonl, <tool>/scored.jsonl."""
    run = runs / name
    taus = {"calculator": calc_tau, "calendar": 1.0}
    by_tool: dict[str, list[dict]] = {}
    for i, call in enumerate(calls):
        by_tool.setdefault(call[0], []).append(scored_record(i, *call, tau=taus[call[0]], text=docs[call[1]]))
    stages = {}
    for tool, records in by_tool.items():
        (run / tool).mkdir(parents=True)
        (run / tool / "scored.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        failed = sum(r["error"] is not None for r in records)
        stages[f"sample/{tool}"] = {"counts": {"documents": 4, "documents_heuristic": 3, "windows": 4,
                                               "windows_heuristic": 3, "positions": 5, "samples": len(records) + 1,
                                               "unclosed": 1, "candidates": len(records)},
                                    "seconds": 2.5, "config": {"model": "tiny", "syntax": "toolformer", "tau_s": 0.0,
                                                                        "seed": seed}}
        stages[f"execute/{tool}"] = {"counts": {"executed_ok": len(records) - failed, "executed_failed": failed},
                                     "seconds": 0.1}
        stages[f"filter/{tool}"] = {"counts": {"scored": len(records), "kept": sum(r["kept"] for r in records)},
                                    "seconds": 3.0, "config": {"model": "tiny", "tau_f": taus[tool]}}
    # a tool that was only sampled, and found nothing
    stages["sample/qa"] = {"counts": {"documents": 4, "documents_heuristic": 0, "windows": 4, "windows_heuristic": 0,
                                      "positions": 0, "samples": 0, "candidates": 0}, "seconds": 0.2}
    manifest = {"run": name, "config": config or {"corpus": "small.jsonl"}, "versions": {"toolformer": "0.1.0"},
                "stages": stages}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "documents.jsonl").write_text("".join(json.dumps({"id": k, "text": v, "meta": {}}) + "\n"
                                                 for k, v in docs.items()))
    return run


def page_data(html: str) -> dict:
    blob = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1)
    return json.loads(blob)


@pytest.fixture
def small(tmp_path) -> tuple[Path, dict]:
    run = make_run(tmp_path / "runs")
    return run, report.write_report(run)


# ---------------------------------------------------------------------------- counts and content

def test_counts_match_the_jsonl(small):
    run, figures = small
    for tool in ("calculator", "calendar"):
        records = [r for _, r in read_jsonl(run / tool / "scored.jsonl", SCORED)]
        expected = {"records": len(records), "kept": sum(r["kept"] for r in records),
                    "failed": sum(r["error"] is not None for r in records),
                    "filtered": sum(not r["kept"] and r["error"] is None for r in records)}
        assert {k: figures["tools"][tool][k] for k in expected} == expected
    assert figures["tools"]["calculator"] | {"tau_f": 0.5} == {
        "tau_f": 0.5, "records": 6, "scored": 4, "kept": 2, "filtered": 2, "failed": 2}
    assert figures["tools"]["qa"]["records"] == 0
    assert figures["warnings"] == []
    html = Path(figures["html"]).read_text()
    # overview row: τ_f, candidates, executed ok, failed, kept, kept / executed ok, kept / candidates
    assert ("<td>Calculator</td><td>0.5</td><td>6</td><td>4</td><td>2</td><td>2</td><td>50.0 %</td>"
            "<td>33.3 %</td>") in html
    assert "<td>Calendar</td><td>1</td><td>3</td><td>2</td><td>1</td><td>1</td><td>50.0 %</td>" in html
    md = Path(figures["md"]).read_text()
    for row in ("| kept | 2 | 50.0 % of executed ok |", "| executed, failed | 2 | 33.3 % of candidates |",
                "| dropped: never closed | 1 | 14.3 % of calls sampled |", "| positions | 5 | 1.67 × windows "
                "passing the heuristic |", "| executed ok | not run |"):
        assert row in md
    for png in figures["figures"]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(figures["figures"]) == 2  # calculator and calendar; qa has no scored calls


def test_every_kept_call_is_embedded_with_its_text(small):
    run, figures = small
    rows = page_data(Path(figures["html"]).read_text())["rows"]
    assert len(rows) == len(CALLS)  # a small run: every call is on the page
    kept = [r for tool in ("calculator", "calendar") for _, r in read_jsonl(run / tool / "scored.jsonl") if r["kept"]]
    assert len(kept) == 3
    for rec in kept:
        row = next(r for r in rows if r["doc"] == rec["doc_id"] and r["pos"] == rec["position"])
        text = DOCS[rec["doc_id"]]
        assert row["s"] == "k" and row["u"] == rec["usefulness"]
        assert row["b"] + row["a"] == text  # short documents: all of the text, split at the call
        assert text[:rec["position"]] == row["b"]
        assert row["c"] + row["r"] + row["z"] == TOOLFORMER.render(NAMES[rec["tool"]], rec["input"], rec["result"])
    md = Path(figures["md"]).read_text()
    assert "an increase of 250 percent in one year." in md
    assert ("The budget grew from 400 dollars to 1400 dollars, `[Calculator(400 / 1400) → 0.29]` "
            "an increase") in md


def test_sections_show_the_threshold_edge(small):
    _, figures = small
    rows = page_data(Path(figures["html"]).read_text())["rows"]
    in_section = lambda name: sorted(r["u"] for r in rows if name in r["g"] and r["t"] == 0)  # noqa: E731
    assert in_section("top") == [0.5, 1.2]
    assert in_section("near") == [-1.0, 0.499]
    assert in_section("worst") == [-1.0, 0.499, 0.5, 1.2]
    assert len([r for r in rows if "failed" in r["g"] and r["t"] == 0]) == 2


def test_errors_grouped_and_what_if(small):
    run, _ = small
    summary = report.summarize_run(run)
    calc = summary.tools[0]
    _, errors = report.errors_table(calc)
    assert errors == [["cannot evaluate '…': bad operator", "2", "100.0 %", "cannot evaluate '3 +* 4': bad operator",
                       "3 +* 4"]]
    assert calc.reasons == {"usefulness # < tau_f #": 2}
    assert calc.kept_at([1.3, 1.2, 0.5, 0.499, 0.0, -1.0, -2.0]).tolist() == [0, 1, 2, 3, 3, 4, 4]
    _, rows = report.what_if_table(summary)
    header, _ = report.what_if_table(summary)
    assert rows[0][header.index("τ = 0.5")] == "2 (50.0 %) ◀ τ_f"
    assert rows[0][header.index("τ = 0")] == "3 (75.0 %)"
    assert rows[1][header.index("τ = 1")] == "1 (50.0 %) ◀ τ_f"
    grid = report.what_if_grid(summary)
    assert grid["kept"]["calculator"][grid["grid"].index(0.5)] == 2
    assert grid["kept"]["calendar"][grid["grid"].index(0.2)] == 2


def test_the_seed_is_the_one_the_run_was_sampled_with(tmp_path):
    """The manifest keeps the sample seed in stages["sample/<tool>"]["config"]; the page shows it and
    draws its random example sample with it."""
    figures = report.write_report(make_run(tmp_path / "runs", seed=11))
    html = Path(figures["html"]).read_text()
    assert figures["seed"] == 11 and page_data(html)["seed"] == 11
    assert "<dt>seed</dt><dd>11</dd>" in html and "| seed | 11 |" in Path(figures["md"]).read_text()
    run = tmp_path / "runs" / "synthetic"
    write_synthetic_run(run, 2000, n_docs=200)
    manifest = json.loads((run / "manifest.json").read_text())
    for stage, info in manifest["stages"].items():
        if stage.startswith("sample/"):
            info["config"]["seed"] = 11
    (run / "manifest.json").write_text(json.dumps(manifest))
    rows = {seed: page_data(Path(report.write_report(run, max_rows=400, seed=seed)["html"]).read_text())["rows"]
            for seed in (None, 11, 0)}
    assert rows[None] == rows[11] != rows[0]


def test_manifest_disagreement_and_bad_lines_are_reported(tmp_path, capsys):
    run = make_run(tmp_path / "runs")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["filter/calculator"]["counts"]["kept"] = 5
    (run / "manifest.json").write_text(json.dumps(manifest))
    figures = report.write_report(run)
    assert "the manifest counts 5 kept but calculator/scored.jsonl has 2 (an unfinished or re-run stage?)" \
        in figures["warnings"]
    with open(run / "calendar" / "scored.jsonl", "a") as f:
        f.write('{"id": "broken"}\n')
    assert main(["report", "--run", "small", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert f"{run / 'calendar' / 'scored.jsonl'}:4: missing field 'doc_id'" in capsys.readouterr().err


def test_kept_flag_that_disagrees_with_tau_is_reported(tmp_path):
    run = make_run(tmp_path / "runs", calc_tau=0.499)  # records kept at 0.499 ...
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["filter/calculator"]["config"]["tau_f"] = 0.5  # ... but the manifest says 0.5
    manifest["stages"]["filter/calculator"]["counts"]["kept"] = 3
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert report.summarize_run(run).tools[0].warnings == [
        "1 scored calls have a kept flag that disagrees with usefulness ≥ τ_f = 0.5 (τ_f from the manifest)"]


def test_a_run_that_kept_every_call_has_a_report(tmp_path):
    """τ_f = -inf (an iterate seed with --seed-filter all keeps every call that executes): the page,
    figures and what-if table are written, with no threshold drawn and every scored call kept."""
    run = make_run(tmp_path / "runs", calc_tau=float("-inf"))
    figures = report.write_report(run)
    calculator = figures["tools"]["calculator"]
    assert calculator["kept"] == calculator["scored"] > 0 and calculator["tau_f"] == float("-inf")
    assert page_data(Path(figures["html"]).read_text())["tools"][0]["tau"] is None
    assert "## Calculator (τ_f = -inf)" in Path(figures["md"]).read_text()


def test_run_without_manifest_or_documents(tmp_path):
    run = make_run(tmp_path / "runs")
    (run / "manifest.json").unlink()
    (run / "documents.jsonl").unlink()
    figures = report.write_report(run)
    assert figures["tools"]["calculator"]["kept"] == 2
    assert sorted(figures["tools"]) == ["calculator", "calendar"]
    assert "9 example rows name a document that is not in documents.jsonl" in figures["warnings"][0]
    md = Path(figures["md"]).read_text()
    assert "| kept | 2 * | 50.0 % of executed ok |" in md and report.FUNNEL_NOTE in md


def test_run_that_was_only_sampled(tmp_path, capsys):
    run = make_run(tmp_path / "runs")
    shutil.rmtree(run / "calculator")
    shutil.rmtree(run / "calendar")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"] = {k: v for k, v in manifest["stages"].items() if k.startswith("sample/")}
    (run / "manifest.json").write_text(json.dumps(manifest))
    figures = report.write_report(run)
    assert figures["records"] == 0 and figures["figures"] == [] and sorted(figures["tools"]) == [
        "calculator", "calendar", "qa"]
    md = Path(figures["md"]).read_text()
    assert "| candidates | 6 | 85.7 % of calls sampled |" in md and "| kept | not run |" in md
    assert main(["report", "--run", "nothing", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "no run folder" in capsys.readouterr().err


def test_compare_two_runs(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "a")
    make_run(runs, "b", calc_tau=0.499)
    code = main(["report", "--run", "a", "--compare", "b", "--runs-dir", str(runs)])
    assert code == 0
    md = (runs / "a" / "report.md").read_text()
    assert "| stages.filter/calculator.config.tau_f | 0.5 | 0.499 |" in md
    header, rows = report.compare_table(report.summarize_run(runs / "a"), report.summarize_run(runs / "b"))
    assert header[1:5] == ["Calculator · a", "Calculator · b", "Calendar · a", "Calendar · b"]
    assert ["kept", "2", "3", "1", "1", "–", "–"] in rows
    assert rows[0][:5] == ["τ_f", "0.5", "0.499", "1", "1"]  # then qa's default τ_f
    assert (runs / "a" / "report-compare-b.png").exists()


def test_show_prints_a_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal's width
    make_run(tmp_path / "runs")
    args = ["show", "--run", "small", "--runs-dir", str(tmp_path / "runs"), "--tool", "calculator", "--json"]
    assert main(args + ["--kept"]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    assert (figures["matching"], figures["shown"], figures["kept"], figures["failed"]) == (2, 2, 2, 2)
    assert "[Calculator(400 / 1400) → 0.29]" in out and "an increase" in out
    assert out.index("+1.200") < out.index("+0.500")  # best first
    assert main(args + ["--filtered", "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "+0.499" in out and "-1.000" not in out and json.loads(out.strip().splitlines()[-1])["shown"] == 1
    assert main(args + ["--failed"]) == 0
    out = capsys.readouterr().out
    assert "cannot evaluate '1 // 0': bad operator" in out
    assert main(args[:-3] + ["--tool", "qa"]) == 2
    assert "tools with scored calls in this run: calculator, calendar" in capsys.readouterr().err


# ---------------------------------------------------------------------------- HTML injection

INJECTED_DOC = ('Injected <script>window.__pwned = 1</script></table></script><img src=x '
                'onerror="window.__pwned = 2"> &amp; <!-- then 12 + 30 = 42 is the total.')
INJECTED_CALLS = [("calculator", "evil<1>", " is the total", "12 + 30 </script><b>", "<i>42</i>", None, 2.0),
                  ("calculator", "evil<1>", " the total", "</table>", None, "bad '<script>alert(1)</script>'", None)]


@pytest.fixture
def injected(tmp_path) -> Path:
    run = make_run(tmp_path / "runs", "injected", docs={"evil<1>": INJECTED_DOC}, calls=INJECTED_CALLS,
                   config={"corpus": "</script><script>window.__pwned = 3</script>"})
    report.write_report(run)
    return run / "report.html"


def test_html_injection_is_escaped(injected):
    html = injected.read_text()
    assert html.count("<script") == 2 and html.count("</script>") == 2  # the data blob and the page's code
    assert html.count("<img") == 1 and "<!--" not in html and "<i>42" not in html  # the one figure
    rows = page_data(html)["rows"]
    assert rows[0]["b"] + rows[0]["a"] == INJECTED_DOC
    assert rows[0]["r"] == "<i>42</i>"


# ---------------------------------------------------------------------------- scale

@pytest.fixture(scope="module")
def big_run(tmp_path_factory) -> tuple[Path, dict, dict, float]:
    run = tmp_path_factory.mktemp("big") / "runs" / "big"
    truth = write_synthetic_run(run, 100_000, n_docs=5000)
    t0 = time.perf_counter()
    figures = report.write_report(run)
    return run, truth, figures, time.perf_counter() - t0


def test_100k_calls_give_a_small_page(big_run):
    run, truth, figures, seconds = big_run
    assert figures["records"] == 100_000
    for tool, counts in truth.items():
        assert {k: figures["tools"][tool][k] for k in counts} == counts
    assert figures["html_bytes"] < 20e6
    # the sections of each tool (4 × 25) come first; the random sample fills the rest of the budget
    assert figures["examples_embedded"] == report.MAX_EXAMPLES
    rows = page_data(Path(figures["html"]).read_text())["rows"]
    assert {(r["t"], r["s"]) for r in rows if r["g"] == ["sample"]} == {(t, s) for t in range(3) for s in "kfx"}
    assert seconds < 60, f"report of 100,000 calls took {seconds:.1f} s"


# ---------------------------------------------------------------------------- in a real browser

@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip(f"headless browser test: no Chromium found; {INSTALL_HINT}")
    with Chromium() as b:
        yield b


def keep_screenshot(path: Path) -> None:
    """With REPORT_SCREENSHOT_DIR set (e.g. runs/), the screenshots are kept there too."""
    if os.environ.get("REPORT_SCREENSHOT_DIR"):
        shutil.copy(path, Path(os.environ["REPORT_SCREENSHOT_DIR"]) / path.name)


def visible_rows(b: Chromium) -> int:
    return b.eval("document.getElementById('examples-table').tBodies[0].rows.length")


def choose(b: Chromium, control: str, value: str) -> None:
    b.eval(f"(() => {{ const c = document.getElementById('{control}'); c.value = {json.dumps(value)};"
           f" c.dispatchEvent(new Event(c.tagName === 'SELECT' ? 'change' : 'input')); }})()")


def test_page_in_chromium(small, browser, tmp_path):
    _, figures = small
    browser.console_errors.clear()
    browser.open(figures["html"])
    shot = browser.screenshot(tmp_path / "report-small.png")
    keep_screenshot(shot)
    assert shot.read_bytes()[:4] == b"\x89PNG"
    assert browser.console_errors == []
    assert visible_rows(browser) == len(CALLS)
    choose(browser, "f-status", "k")
    assert visible_rows(browser) == 3
    browser.type_text("#f-text", "patients")
    assert visible_rows(browser) == 1
    choose(browser, "f-status", "")
    assert visible_rows(browser) == 2  # the kept 85 / 23 and the failed 1 // 0
    choose(browser, "f-text", "")
    choose(browser, "f-min", "0.5")
    assert visible_rows(browser) == 3  # 1.2, 0.5, 1.5: failed calls have no usefulness
    choose(browser, "f-max", "1.3")
    assert visible_rows(browser) == 2
    choose(browser, "f-min", "")
    choose(browser, "f-max", "")
    choose(browser, "f-tool", "1")
    assert visible_rows(browser) == 3
    first = browser.eval("document.querySelector('#examples-table > tbody > tr > .u').textContent")
    choose(browser, "f-sort", "u-asc")
    assert (first, browser.eval("document.querySelector('#examples-table > tbody > tr > .u').textContent")) \
        == ("+1.500", "+0.200")
    # the what-if slider: at τ = 1.0 the calculator keeps only its 1.2 call
    index = page_data(Path(figures["html"]).read_text())["whatif"]["grid"].index(1.0)
    choose(browser, "tau-slider", str(index))
    assert browser.eval("document.querySelector('#tau-table tbody tr td:nth-child(2)').textContent") == "1"
    edge = browser.eval("document.querySelector('.edge').textContent")
    assert "Top kept" in edge and "[Calculator(400 / 1400) → 0.29]" in edge
    assert browser.console_errors == []


def test_injection_renders_as_text_in_chromium(injected, browser):
    browser.console_errors.clear()
    browser.open(injected)
    assert browser.eval("window.__pwned === undefined")
    assert browser.eval("[...document.images].every(i => i.src.startsWith('data:image/png'))")
    text = browser.eval("document.getElementById('examples-table').textContent")
    assert "<script>window.__pwned = 1</script></table></script><img src=x" in text
    assert "[Calculator(12 + 30 </script><b>) → <i>42</i>]" in text
    assert "</script><script>window.__pwned = 3</script>" in browser.eval("document.getElementById('manifest').textContent")
    assert browser.console_errors == []


def test_100k_page_opens_fast_in_chromium(big_run, browser, tmp_path):
    _, _, figures, _ = big_run
    browser.console_errors.clear()
    load_s = browser.open(figures["html"])
    keep_screenshot(browser.screenshot(tmp_path / "report-100k.png"))
    assert browser.console_errors == []
    # the goal is < 2 s; the bound leaves room for a busy shared CI machine (bench/report_page.py measures)
    assert load_s < 5, f"the page of a 100,000-call run took {load_s:.2f} s to open"
    assert visible_rows(browser) == 50  # paginated: the rest come with "show more"
    browser.eval("document.getElementById('more').click()")
    assert visible_rows(browser) == 250
    assert browser.eval("document.getElementById('f-count').textContent").startswith("3,000 matching rows")


def test_report_command_with_screenshot(tmp_path, capsys):
    if find_chromium() is None:
        pytest.skip(f"headless browser test: no Chromium found; {INSTALL_HINT}")
    make_run(tmp_path / "runs")
    assert main(["report", "--run", "small", "--runs-dir", str(tmp_path / "runs"), "--screenshot", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["console_errors"] == [] and figures["load_s"] > 0
    assert Path(figures["screenshot"]).read_bytes()[:4] == b"\x89PNG"
