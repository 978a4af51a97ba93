"""The hostile-input matrix (issue 14): each case through the real readers, stages (a tiny model on
the real default tokenizer), build and tools, with the outcome it must have.

    10 MB document         read whole, cut into windows that hold every character (slow: the
                           real tokenizer takes ~30 s over 10 MB)
    1 MB line, no spaces   the same, in a .txt and a .jsonl corpus
    NUL bytes, only emoji, right-to-left text (with bidi controls)
                           curated and built: each call parses back, the text strips back exactly
    CRLF, BOM              read as the same file with LF line ends and without the BOM
    duplicate ids across a .jsonl.gz and a .parquet corpus
                           one corpus per run: the second is refused, the run unchanged
    call markers in a tool result
                           the built corpus parses back to the same calls; a call that cannot is
                           dropped and counted
    100k-character query   refused at once with a clear error (WikiSearch; the Calculator too)
"""
import gzip
import json
import random
import time
from pathlib import Path

import pytest

from toolformer.config import ExecuteSettings, FilterSettings, RunSettings, SampleSettings
from toolformer.corpus.build import build_augmented
from toolformer.corpus.calls import inline_result, strip_calls
from toolformer.corpus.syntax import TOOLFORMER
from toolformer.pipeline.curate import curate
from toolformer.pipeline.windows import document_windows
from toolformer.run import layout
from toolformer.run.manifest import Run, SettingsChanged
from toolformer.run.records import BadRecord, Document, dumps, read_documents, read_jsonl
from toolformer.tools import run_call
from toolformer.tools import calculator, wikisearch

DATE = "2013-04-19"


def covered_by_windows(lm, doc: Document, size: int) -> list:
    """The windows of `doc`, checked to hold every non-space character of it, in order."""
    windows = document_windows(lm, doc, size)
    assert windows and all(len(w.ids) == size for w in windows[:-1]) and 0 < len(windows[-1].ids) <= size
    covered = 0  # doc.text[:covered] lies in the windows seen so far
    for w in windows:
        begin = doc.text.find(w.text, w.char_starts[0])
        assert begin >= 0 and not doc.text[w.char_starts[0]:begin].strip(), f"window {w.index} is not the text"
        # a gap between windows is whitespace at most; a character cut into tokens of two windows is in both
        assert begin <= covered or not doc.text[covered:begin].strip(), f"text lost before window {w.index}"
        covered = max(covered, begin + len(w.text))
    assert not doc.text[covered:].strip()
    return windows


# ---------------------------------------------------------------------------- long documents

@pytest.mark.slow
def test_a_10mb_document_is_read_whole_and_every_character_lands_in_a_window(tmp_path, tiny_backend):
    rng = random.Random(0)
    words = ("Of", "1,400", "participants,", "400", "passed:", "29%.", "It", "is", "2013", "now.", "Ünïcödé",
             "東京", "مرحبا", "🙂", "\n\n")
    text = " ".join(rng.choice(words) for _ in range(1_700_000))
    assert len(text.encode()) > 10_000_000
    corpus = tmp_path / "big.jsonl"
    corpus.write_text(json.dumps({"id": "big", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    run = Run("r", tmp_path / "runs")
    assert run.ingest(corpus, limit=None, skip_bad=False)["documents"] == 1
    [doc] = run.documents()
    assert doc.text == text  # never truncated
    assert len(covered_by_windows(tiny_backend, doc, 512)) > 5000


def test_a_1mb_line_without_spaces_is_read_whole_and_windowed(tmp_path, tiny_backend):
    rng = random.Random(0)
    line = "".join(rng.choice("abcdefghij0123456789+=") for _ in range(1_000_000))
    (tmp_path / "line.txt").write_text(line + "\n")
    (tmp_path / "line.jsonl").write_text(json.dumps({"id": "line", "text": line}) + "\n")
    [doc] = read_documents(tmp_path / "line.txt")
    assert doc.text == line and [d.text for d in read_documents(tmp_path / "line.jsonl")] == [line]
    t0 = time.perf_counter()
    windows = covered_by_windows(tiny_backend, doc, 512)
    assert len(windows) > 1000
    # the Calculator's document heuristic reads every window of it in bounded time ("=5" is a result cue)
    decided = [calculator.looks_like_math(w.text) for w in windows]
    assert any(decided) and time.perf_counter() - t0 < 120


# ---------------------------------------------------------------------------- odd characters, curated

ODD_DOCS = {
    "nul": "Shop 1 sold 12\x00 pens and 3\x00\x00 pencils, 15 items in total.\x00",
    "emoji": "🙂🙃😀👍🏽👨‍👩‍👧‍👦🇫🇷🎉" * 6,
    "rtl": "\u202eمرحبا بالعالم 12 + 3 = 15 \u200fשלום עולם 400 / 1400 = 29%",
}


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory, favouring_model_dir):
    """The odd documents curated for Calculator and Calendar (every executed call kept), and built."""
    root = tmp_path_factory.mktemp("odd")
    corpus = root / "odd.jsonl"
    corpus.write_text("".join(json.dumps({"id": k, "text": t, "date": DATE}) + "\n" for k, t in ODD_DOCS.items()))
    settings = RunSettings(run="odd", runs_dir=str(root / "runs"), corpus=str(corpus), model=str(favouring_model_dir),
                           chunk_docs=1, no_progress=True)
    figures = curate(settings, "calculator,calendar", SampleSettings(window=16, k=3, m=4, max_new_tokens=12,
                                                                      tau_s="calendar=0"),
                     filter=FilterSettings(tau_f=-1000.0))["stages"]
    build = build_augmented(root / "runs" / "odd", heldout=0.0)
    rows = {json.loads(line)["id"]: json.loads(line)
            for line in (root / "runs" / "odd" / layout.AUGMENTED / "train.jsonl").read_text().splitlines()}
    return Run("odd", root / "runs"), figures, build, rows


@pytest.mark.parametrize("doc_id", list(ODD_DOCS))
def test_odd_characters_are_curated_and_built_into_calls_that_parse_back(odd_run, tiny_backend, doc_id):
    run, figures, build, rows = odd_run
    [doc] = [d for d in run.documents() if d.id == doc_id]
    assert doc.text == ODD_DOCS[doc_id]  # NUL, joiners, bidi controls all kept
    covered_by_windows(tiny_backend, doc, 3)  # windows cut inside emoji and bidi runs lose nothing
    scored = [r for _, r in read_jsonl(run.path / "calendar" / layout.SCORED) if r["doc_id"] == doc_id]
    assert scored and all(r["kept"] and r["result"] == "Today is Friday, April 19, 2013." for r in scored)
    assert all(0 <= r["position"] <= len(doc.text) for r in scored)
    row = rows[doc_id]
    plain, calls = strip_calls(row["text"], TOOLFORMER)
    assert plain == doc.text
    assert [(p, c.tool, c.input, c.result) for p, c in calls] == \
        [(c["position"], c["tool"], c["input"], c["result"]) for c in row["calls"]]
    assert row["n_calls"] == len(calls) >= 1
    assert build["unrenderable_dropped"] == 0 and figures["execute/calendar"]["executed_failed"] == 0


def test_nul_bytes_in_a_txt_corpus_are_kept(tmp_path):
    corpus = tmp_path / "nul.txt"
    corpus.write_bytes(b"first\x00 block\n\nsecond \x00\x00block\n")
    assert [d.text for d in read_documents(corpus)] == ["first\x00 block", "second \x00\x00block"]


# ---------------------------------------------------------------------------- line ends and BOM

ROWS = [{"id": "a", "text": "One line.\r\nAnd a CRLF kept inside the JSON string."}, {"id": "b", "text": "Two."}]
TXT = "First block,\nits second line.\n\nSecond block.\n"


def write_corpus(path: Path, text: str) -> Path:
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def read_texts(path: Path) -> list[tuple[str, str]]:
    return [(d.id, d.text) for d in read_documents(path)]


@pytest.mark.parametrize("name, text", [("c.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS)),
                                        ("c.jsonl.gz", "".join(json.dumps(r) + "\n" for r in ROWS)),
                                        ("c.txt", TXT)])
def test_crlf_and_a_bom_read_as_the_plain_lf_file(tmp_path, name, text):
    expected = read_texts(write_corpus(tmp_path / "lf" / name, text))
    assert expected == ([(r["id"], r["text"]) for r in ROWS] if "jsonl" in name else  # a "\r\n" in JSON is text
                        [("c:1", "First block,\nits second line."), ("c:4", "Second block.")])
    for variant, content in [("crlf", text.replace("\n", "\r\n")), ("bom", "\ufeff" + text),
                             ("bom-crlf", "\ufeff" + text.replace("\n", "\r\n"))]:
        assert read_texts(write_corpus(tmp_path / variant / name, content)) == expected, variant


def test_a_bom_inside_a_jsonl_file_is_a_bad_line(tmp_path):
    # two BOM files concatenated: the second BOM is not at the start of the file
    corpus = write_corpus(tmp_path / "c.jsonl", "\ufeff" + json.dumps(ROWS[0]) + "\n\ufeff" + json.dumps(ROWS[1]) + "\n")
    with pytest.raises(BadRecord, match=r"c.jsonl:2: bad JSON: Unexpected UTF-8 BOM"):
        list(read_documents(corpus))


# ---------------------------------------------------------------------------- duplicate ids

def test_the_same_ids_in_a_jsonl_gz_and_a_parquet_corpus(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [{"id": f"d{i}", "text": f"Document {i} has {i + 10} words."} for i in range(3)]
    gz = write_corpus(tmp_path / "c.jsonl.gz", "".join(json.dumps(r) + "\n" for r in rows))
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    # each alone is one run's corpus, read to the same documents
    gz_run, parquet_run = Run("gz", tmp_path / "runs"), Run("parquet", tmp_path / "runs")
    assert gz_run.ingest(gz, None, False)["documents"] == parquet_run.ingest(parquet, None, False)["documents"] == 3
    assert gz_run.documents_path.read_bytes() == parquet_run.documents_path.read_bytes()
    # both into one run: the ids would clash, so a run keeps its one corpus and refuses the second
    before = gz_run.documents_path.read_bytes()
    with pytest.raises(SettingsChanged, match=rf"{gz_run.documents_path} was made with other settings "
                                              r"\(corpus_fingerprint: "):
        gz_run.ingest(parquet, None, False)
    assert gz_run.documents_path.read_bytes() == before
    assert gz_run.stage("ingest").counts["documents"] == 3
    # duplicate ids inside one parquet file: its row number, as a file:line error (or skipped, counted)
    pq.write_table(pa.Table.from_pylist(rows + rows[:1]), parquet)
    with pytest.raises(BadRecord, match=r"c.parquet:4: duplicate id 'd0' \(first on line 1\)"):
        list(read_documents(parquet))
    assert [d.id for d in read_documents(parquet, skip_bad=True)] == ["d0", "d1", "d2"]


# ---------------------------------------------------------------------------- tool results and queries

PASSAGES = [
    {"id": "brackets", "title": "Bracket", "text": "Bracket notation [1] writes a list as [a, b] and an interval as [0, 1)."},
    {"id": "arrows", "title": "Arrow", "text": "An arrow → maps f → g; in code it is written -> or =>."},
    {"id": "calls", "title": "Nested call", "text": "Text may quote a call: [Calculator(1 + 2) → 3] is one."},
]
DOC = "Lists, arrows and calls are notation."


@pytest.fixture
def passages(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TOOLFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(wikisearch, "_loaded", {})
    path = tmp_path / "passages.jsonl"
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in PASSAGES), encoding="utf-8")
    return path


def test_markers_in_a_tool_result_still_parse_back_or_are_dropped_and_counted(tmp_path, passages):
    run = Run("r", tmp_path / "runs")
    run.path.mkdir(parents=True)
    run.documents_path.write_text(dumps({"id": "d", "text": DOC, "meta": {}}) + "\n")
    # calls as the sampler writes them, at four places; the last input's ")" would end the call early
    queries = {DOC.index(" arrows"): "Bracket notation", DOC.index(" and calls"): "Arrow maps",
               DOC.index(" are"): "Nested call quote", DOC.index(" notation"): "Arrow ) maps"}
    (run.path / "wikisearch").mkdir()
    (run.path / "wikisearch" / layout.CANDIDATES).write_text("".join(
        dumps({"id": f"c{n}", "doc_id": "d", "tool": "wikisearch", "window": 0, "position": position,
               "token_index": 0, "p_start": 0.5, "input": query, "call": TOOLFORMER.render("WikiSearch", query)}) + "\n"
        for n, (position, query) in enumerate(queries.items())))
    figures = curate(RunSettings(run="r", runs_dir=str(run.path.parent), no_progress=True), "wikisearch",
                     execute=ExecuteSettings(options={"corpus": str(passages)}), stages=("execute",))
    assert figures["stages"]["execute/wikisearch"]["executed_ok"] == 4
    executed = [r for _, r in read_jsonl(run.path / "wikisearch" / layout.EXECUTED)]
    # the executor writes results as the syntax will: no end marker, the other markers kept
    results = [inline_result(r["result"]) for r in executed]  # as the build writes them
    assert results[:3] == [
        "Bracket notation [1 writes a list as [a, b and an interval as [0, 1).",
        "An arrow → maps f → g; in code it is written -> or =>.",
        "Text may quote a call: [Calculator(1 + 2) → 3 is one."]
    # every call kept, as a filter with a low enough threshold would
    (run.path / "wikisearch" / layout.SCORED).write_text("".join(dumps(
        {**r, "loss_plus": 1.0, "loss_no_call": 2.0, "loss_no_result": 2.0, "loss_minus": 2.0, "usefulness": 1.0,
         "kept": True, "reason": None}) + "\n" for r in executed))
    build = build_augmented(run.path, heldout=0.0)
    assert build["unrenderable_dropped"] == 1 and build["calls_WikiSearch"] == 3
    [row] = [json.loads(line) for line in (run.path / layout.AUGMENTED / "train.jsonl").read_text().splitlines()]
    plain, calls = strip_calls(row["text"], TOOLFORMER)
    assert plain == DOC
    assert [(p, c.tool, c.input, c.result) for p, c in calls] == [
        (r["position"], "WikiSearch", r["input"], result) for r, result in zip(executed[:3], results)]


@pytest.mark.parametrize("query", ["x" * 100_000, "word " * 20_000])
def test_a_100k_character_query_is_refused_at_once(passages, query):
    executor = wikisearch.TOOL.executor(corpus=str(passages))
    out = run_call(wikisearch.TOOL, executor, query)
    assert out.result is None and out.error == f"query too long ({len(query.strip())} characters; at most 300)"
    assert out.latency_ms < 1000
    out = run_call(calculator.TOOL, calculator.TOOL.executor(), "1 + " * 25_000 + "1")
    assert out.result is None and out.error == "expression longer than 200 characters"
    # the longest query allowed still searches
    assert run_call(wikisearch.TOOL, executor, ("Arrow " * 50)[:300]).result.startswith("An arrow")
