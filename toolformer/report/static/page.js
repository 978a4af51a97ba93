// The report page's script (toolformer/report/html.py inlines it into report.html).
// It reads the JSON blob of the element #report-data and builds every example row with DOM calls
// and text nodes only (never innerHTML): document text is data, not markup.
// Row keys: t tool index, doc/pos document id and character position, b/a text before/after the
// call (cb/ca: cut), c/r/z the call up to its result, the result, the end marker, e error,
// why reason not kept, s status (k kept, f filtered, x failed), u usefulness, p p_start,
// l the losses [L⁺, L(ε), L(e(c,ε)), L⁻], ms latency, g the sections the row is in.
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
      "the nearest misses, the worst and the failed calls of each tool, plus a random sample (seed " + DATA.seed +
      ") evenly spread over tool × kept/filtered/failed. Counts, figures and the what-if table use all calls; " +
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
