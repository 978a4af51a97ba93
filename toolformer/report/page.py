"""The report page's fixed parts: stylesheet, script, the slider and the example explorer
(toolformer/report.py builds the HTML around them).

The script reads the JSON blob in <script id="report-data"> and builds every example row with
DOM calls and text nodes only (never innerHTML): document text is data, not markup.
Row keys: t tool index, doc/pos document id and character position, b/a text before/after the
call (cb/ca: cut), c/r/z the call up to its result, the result, the end marker, e error,
why reason not kept, s status (k kept, f filtered, x failed), u usefulness, p p_start,
l the losses [L⁺, L(ε), L(e(c,ε)), L⁻], ms latency, g the sections the row is in.
"""
from __future__ import annotations

# the what-if slider; the script fills the table
SLIDER_HTML = """<div class="slider"><div><div class="now">τ = <output id="tau-value"></output></div>
<input type="range" id="tau-slider" aria-label="τ"><p class="note">drag to try a threshold</p></div>
<table id="tau-table" class="num"></table></div>"""

# the example explorer: its controls and an empty table the script fills
EXAMPLES_HTML = """<section id="examples"><h2>Examples</h2><p class="muted" id="sample-note"></p>
<div class="controls">
<label>tool <select id="f-tool"></select></label>
<label>status <select id="f-status"><option value="">all</option><option value="k">kept</option>
<option value="f">filtered</option><option value="x">failed</option></select></label>
<label>section <select id="f-section"><option value="">all rows</option><option value="top">top kept</option>
<option value="near">nearest misses</option><option value="worst">worst</option><option value="failed">failed</option>
<option value="sample">random sample</option></select></label>
<label>usefulness from <input id="f-min" type="number" step="0.1"></label>
<label>to <input id="f-max" type="number" step="0.1"></label>
<label class="grow">text <input id="f-text" type="search" placeholder="document, call, result, error…"></label>
<label>sort <select id="f-sort"><option value="u-desc">usefulness ↓</option><option value="u-asc">usefulness ↑</option>
<option value="p-desc">p_start ↓</option><option value="doc">document order</option></select></label>
</div>
<p id="f-count" class="count"></p>
<table class="examples" id="examples-table"><thead><tr><th>tool</th><th>document text with the call in place</th>
<th title="usefulness">L⁻ − L⁺</th><th>kept</th><th>losses</th></tr></thead><tbody></tbody></table>
<button id="more" type="button">show more</button></section>"""

PAGE_CSS = """
:root { --fg: #1f2933; --muted: #6b7280; --line: #e4e7eb; --bg: #f4f5f7; --card: #fff;
  --kept: #1b5e20; --kept-bg: #dff3e0; --kept-line: #8fcf94; --filt: #37474f; --filt-bg: #eceff1;
  --filt-line: #b0bec5; --fail: #b71c1c; --fail-bg: #fde7e7; --fail-line: #f19a9a; --accent: #1565c0; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif;
  color: var(--fg); background: var(--bg); }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
header { background: var(--card); border-bottom: 1px solid var(--line); padding: 14px 32px 0; }
header h1 { margin: 0; font-size: 20px; font-weight: 650; }
header p { margin: 2px 0 0; }
nav { display: flex; flex-wrap: wrap; gap: 2px; margin-top: 6px; }
nav a { padding: 6px 10px; color: var(--fg); text-decoration: none; border-bottom: 2px solid transparent; }
nav a:hover { border-bottom-color: var(--accent); color: var(--accent); }
main { max-width: 1360px; margin: 0 auto; padding: 8px 32px 80px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 16px 22px 20px;
  margin: 18px 0; scroll-margin-top: 8px; }
h2 { margin: 0 0 10px; font-size: 18px; font-weight: 650; }
h3 { margin: 18px 0 8px; font-size: 12px; font-weight: 650; text-transform: uppercase; letter-spacing: .05em;
  color: var(--muted); }
h4 { margin: 4px 0 6px; font-size: 13px; font-weight: 600; }
.muted { color: var(--muted); }
.warn { background: #fff8e1; border: 1px solid #ffe082; border-radius: 6px; padding: 6px 10px; margin: 8px 0; }
.tau { margin-left: 12px; font-size: 13px; font-weight: 500; color: #c62828; background: #fdecea;
  padding: 2px 8px; border-radius: 10px; vertical-align: middle; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { font-size: 12px; font-weight: 600; color: var(--muted); background: #fafbfc; white-space: nowrap; }
tbody tr:hover { background: #fafcff; }
table.num td:first-child { white-space: nowrap; }
table.num td:not(:first-child), td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 6px 18px; margin: 0; }
.facts div { border-bottom: 1px dotted var(--line); padding: 2px 0; min-width: 0; }
.facts dt { font-size: 11px; color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
details > summary { cursor: pointer; color: var(--accent); white-space: nowrap; }
pre { background: #f6f8fa; padding: 10px; border-radius: 6px; overflow: auto; max-height: 420px; }
.cols { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 28px; }
@media (max-width: 900px) { .cols, .cols.wide-left { grid-template-columns: 1fr; } }
table.funnel td.label { white-space: nowrap; }
table.funnel tr.sub td.label { padding-left: 24px; color: var(--fail); }
.track { width: 130px; }
.cols.wide-left { grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); }
.bar { height: 14px; background: #90a4ae; border-radius: 3px; margin-top: 3px; }
.bar.kept { background: #43a047; }
tr.sub .bar { background: #e57373; }
figure { margin: 14px 0 4px; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 12px; color: var(--muted); }
th.group { background: #fff; color: var(--fg); font-size: 13px; padding-top: 14px; border-bottom: 2px solid var(--line); }
table.values td:first-child { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
  overflow-wrap: anywhere; }
table.values td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; width: 80px; }
table.funnel td.rate { color: var(--muted); font-variant-numeric: tabular-nums; }
.note { font-size: 12px; color: var(--muted); margin: 4px 0 0; }
.slider { margin-top: 14px; display: grid; grid-template-columns: 320px 1fr; gap: 16px; align-items: start; }
.slider .now { font-size: 22px; font-weight: 650; margin-bottom: 6px; }
.slider input { width: 100%; }
.controls { display: flex; flex-wrap: wrap; gap: 10px 14px; align-items: flex-end; background: #f8fafc;
  border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; position: sticky; top: 0; z-index: 5; }
.controls label { display: flex; flex-direction: column; font-size: 11px; color: var(--muted); gap: 2px; }
.controls label.grow { flex: 1; min-width: 220px; }
.controls input, .controls select { font: inherit; padding: 4px 6px; border: 1px solid #cfd6dd; border-radius: 5px;
  background: #fff; color: var(--fg); }
.controls input[type=number] { width: 90px; }
.count { margin: 10px 0 6px; font-weight: 600; }
table.examples td { font-size: 13.5px; }
table.examples td.ctx-cell { width: 100%; }
.ctx { white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.6; }
.where { font-size: 11px; color: var(--muted); margin-top: 2px; }
mark.call { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
  padding: 1px 4px; margin: 0 2px; border-radius: 4px; white-space: pre-wrap; }
mark.call.kept { background: var(--kept-bg); color: var(--kept); box-shadow: inset 0 0 0 1px var(--kept-line); }
mark.call.filtered { background: var(--filt-bg); color: var(--filt); box-shadow: inset 0 0 0 1px var(--filt-line); }
mark.call.failed { background: var(--fail-bg); color: var(--fail); box-shadow: inset 0 0 0 1px var(--fail-line); }
mark.call b { font-weight: 700; }
.error { color: var(--fail); font-size: 12.5px; }
.u { font-weight: 650; font-variant-numeric: tabular-nums; white-space: nowrap; }
.u.above { color: var(--kept); } .u.below { color: #8d6e63; } .u.none { color: var(--muted); }
.mark { font-size: 16px; text-align: center; }
.mark.k { color: var(--kept); } .mark.f { color: #9e9e9e; } .mark.x { color: var(--fail); }
table.losses { width: auto; margin-top: 4px; }
table.losses td { padding: 2px 6px; font-size: 12px; border: none; white-space: nowrap; }
button#more { margin-top: 10px; font: inherit; padding: 6px 14px; border-radius: 6px; border: 1px solid #cfd6dd;
  background: #fff; cursor: pointer; }
button#more[hidden] { display: none; }
"""

PAGE_JS = r"""
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const TOOLS = DATA.tools;
  const ROWS = DATA.rows;
  const PAGE = 50;
  const STATUS = {k: "kept", f: "filtered", x: "failed"};
  const MARK = {k: "✓", f: "✗", x: "⚠"};
  const $ = (id) => document.getElementById(id);

  // A DOM element; string children become text nodes, so data is never parsed as HTML.
  function el(tag, cls, ...children) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  const num = (x, digits) => (x === null ? "–" : x.toFixed(digits));
  // usefulness rounded down to 3 decimals, so a call just under τ_f never reads as τ_f itself
  const signed = (x) => {
    if (x === null) return "–";
    const down = Math.floor(x * 1000 + 1e-9) / 1000;
    return (down >= 0 ? "+" : "") + down.toFixed(3);
  };
  const count = (n) => n.toLocaleString("en-US");

  // the end of `text` (short: about n characters, starting at a word); the text was cut if shorter
  function tail(text, n) {
    if (text.length <= n) return [text, false];
    const cut = text.slice(-n), space = cut.indexOf(" ");
    return [space >= 0 && space < 25 ? cut.slice(space + 1) : cut, true];
  }
  function head(text, n) {
    if (text.length <= n) return [text, false];
    const cut = text.slice(0, n), space = cut.lastIndexOf(" ");
    return [space > n - 25 ? cut.slice(0, space) : cut, true];
  }

  // the document text around the call, the call and its result in place; short: less text
  function contextCell(r, short) {
    const [before, cutBefore] = short ? tail(r.b, 150) : [r.b, false];
    const [after, cutAfter] = short ? head(r.a, 110) : [r.a, false];
    const text = el("div", "ctx");
    if (r.nodoc) text.append(el("span", "muted", "(document not in documents.jsonl) "));
    text.append((r.cb || cutBefore ? "…" : "") + before);
    const call = el("mark", "call " + STATUS[r.s], r.c);
    if (r.r !== null) call.append(el("b", null, r.r));
    call.append(r.z);
    text.append(call);
    if (r.e !== null) text.append(el("span", "error", " ⚠ " + r.e + " "));
    text.append(after + (r.ca || cutAfter ? "…" : ""));
    const where = el("div", "where", "document " + r.doc + " · character " + r.pos + " · p_start " + num(r.p, 4));
    return el("td", "ctx-cell", text, where);
  }

  function lossesCell(r) {
    const rows = [
      ["L⁺ = L(e(c, r))", num(r.l[0], 3), "call with its result"],
      ["L(ε)", num(r.l[1], 3), "no call"],
      ["L(e(c, ε))", num(r.l[2], 3), "call, empty result"],
      ["L⁻ = min", num(r.l[3], 3), "of the two above"],
      ["L⁻ − L⁺", signed(r.u), "usefulness"],
      ["τ_f", TOOLS[r.t].tau === null ? "?" : String(TOOLS[r.t].tau), TOOLS[r.t].name],
      ["latency", num(r.ms, 1) + " ms", "tool execution"],
    ];
    if (r.why) rows.push(["reason", r.why, ""]);
    const table = el("table", "losses");
    for (const [name, value, note] of rows) {
      table.append(el("tr", null, el("td", null, name), el("td", "num", value), el("td", "muted", note)));
    }
    return el("td", null, el("details", null, el("summary", null, "losses"), table));
  }

  function usefulnessCell(r) {
    const tau = TOOLS[r.t].tau;
    const side = r.u === null ? "none" : tau === null ? "" : r.u >= tau ? "above" : "below";
    return el("td", "u num " + side, signed(r.u));
  }

  function rowElement(r, withTool, short) {
    const tr = el("tr");
    if (withTool) tr.append(el("td", null, TOOLS[r.t].name));
    const mark = el("td", "mark " + r.s, MARK[r.s]);
    mark.title = STATUS[r.s] + (r.e !== null ? ": " + r.e : "");
    tr.append(contextCell(r, short), usefulnessCell(r), mark, lossesCell(r));
    return tr;
  }

  const byUsefulness = (dir) => (a, b) =>
    a.u === null ? 1 : b.u === null ? -1 : dir * (a.u - b.u);
  const headRow = (names) => el("tr", null, ...names.map((h) => el("th", null, h)));

  // ---- the threshold's edge of each tool: top kept, nearest misses, worst
  const EDGE = [["top", "Top kept", -1], ["near", "Nearest misses: the best calls under τ_f", -1],
                ["worst", "Worst", 1]];
  for (const box of document.querySelectorAll(".edge")) {
    const tool = TOOLS.findIndex((t) => t.key === box.dataset.tool);
    const table = el("table", "examples edge-table",
      el("thead", null, headRow(["document text with the call in place", "L⁻ − L⁺", "kept", "losses"])));
    for (const [section, title, dir] of EDGE) {
      const rows = ROWS.filter((r) => r.t === tool && r.g.includes(section)).sort(byUsefulness(dir)).slice(0, 5);
      const group = el("th", "group", title + (rows.length ? "" : ": none"));
      group.colSpan = 4;
      const body = el("tbody", null, el("tr", null, group));
      for (const r of rows) body.append(rowElement(r, false, true));
      table.append(body);
    }
    box.append(table);
  }

  // ---- what if τ_f: kept counts on a grid of thresholds
  (function slider() {
    const grid = DATA.whatif.grid;
    const input = $("tau-slider");
    input.min = 0; input.max = grid.length - 1; input.step = 1;
    const start = TOOLS.find((t) => t.tau !== null);
    const target = start ? start.tau : 0;
    let best = 0;
    grid.forEach((g, i) => { if (Math.abs(g - target) < Math.abs(grid[best] - target)) best = i; });
    input.value = best;
    function update() {
      const i = Number(input.value);
      $("tau-value").textContent = grid[i].toFixed(2);
      const table = $("tau-table");
      table.replaceChildren(el("thead", null, headRow(["tool", "kept at τ", "of scored", "kept at its τ_f", "change"])));
      const body = el("tbody");
      for (const t of TOOLS) {
        const kept = DATA.whatif.kept[t.key][i];
        const diff = kept - t.kept;
        body.append(el("tr", null, el("td", null, t.name), el("td", "num", count(kept)),
          el("td", "num", t.scored ? (100 * kept / t.scored).toFixed(1) + " %" : "–"),
          el("td", "num", count(t.kept)), el("td", "num", (diff > 0 ? "+" : "") + count(diff))));
      }
      table.append(body);
    }
    input.addEventListener("input", update);
    update();
  })();

  // ---- the example explorer
  const hay = ROWS.map((r) =>
    [r.b, r.c, r.r || "", r.z, r.a, r.e || "", r.why || "", r.doc].join(" ").toLowerCase());
  const toolSelect = $("f-tool");
  toolSelect.append(el("option", null, "all tools"));
  toolSelect.options[0].value = "";
  TOOLS.forEach((t, i) => { const o = el("option", null, t.name); o.value = String(i); toolSelect.append(o); });
  const note = $("sample-note");
  note.textContent = ROWS.length >= DATA.records
    ? "All " + count(DATA.records) + " calls of this run are here."
    : "This page holds " + count(ROWS.length) + " of the run's " + count(DATA.records) + " calls: the top kept, " +
      "the nearest misses, the worst and the failed calls of each tool, plus a random sample evenly spread " +
      "over tool × kept/filtered/failed. Counts, figures and the what-if table use all calls; " +
      "`toolformer show` lists any of them in a terminal.";

  let shown = PAGE;
  let matching = [];
  function filterRows() {
    const tool = toolSelect.value, status = $("f-status").value, section = $("f-section").value;
    const lo = $("f-min").value === "" ? -Infinity : Number($("f-min").value);
    const hi = $("f-max").value === "" ? Infinity : Number($("f-max").value);
    const ranged = lo !== -Infinity || hi !== Infinity;
    const words = $("f-text").value.toLowerCase().split(/\s+/).filter(Boolean);
    matching = [];
    ROWS.forEach((r, i) => {
      if (tool !== "" && r.t !== Number(tool)) return;
      if (status && r.s !== status) return;
      if (section && !r.g.includes(section)) return;
      if (ranged && (r.u === null || r.u < lo || r.u > hi)) return;
      if (words.length && !words.every((w) => hay[i].includes(w))) return;
      matching.push(r);
    });
    const sort = $("f-sort").value;
    if (sort === "u-desc") matching.sort(byUsefulness(-1));
    else if (sort === "u-asc") matching.sort(byUsefulness(1));
    else if (sort === "p-desc") matching.sort((a, b) => b.p - a.p);
    else matching.sort((a, b) => a.doc.localeCompare(b.doc, "en", {numeric: true}) || a.pos - b.pos);
  }
  function render() {
    const body = $("examples-table").tBodies[0];
    body.replaceChildren(...matching.slice(0, shown).map((r) => rowElement(r, true, false)));
    $("f-count").textContent = count(matching.length) + " matching rows" +
      (matching.length > shown ? " · showing the first " + count(shown) : "");
    $("more").hidden = matching.length <= shown;
  }
  function refresh() { shown = PAGE; filterRows(); render(); }
  for (const id of ["f-tool", "f-status", "f-section", "f-sort"]) $(id).addEventListener("change", refresh);
  for (const id of ["f-min", "f-max", "f-text"]) $(id).addEventListener("input", refresh);
  $("more").addEventListener("click", () => { shown += PAGE * 4; render(); });
  refresh();
})();
"""
