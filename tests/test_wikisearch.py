"""WikiSearch: passage splitting, snippets, the BM25 index and its disk cache, the executor.

Tests marked slow use the real embedded Wikipedia leads (index built once, then cached on disk in
the user's cache, ~3 s cold); the others build tiny passage files in-test, with the cache in a
temporary folder.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from toolformer.cli import main as cli_main
from toolformer.run.records import BadRecord
from toolformer.tools import ToolError, run_call
from toolformer.tools import wikisearch as ws

EINSTEIN_LEAD = "Albert Einstein was a German-born theoretical physicist best known for developing"


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def wiki_index() -> ws.WikiIndex:
    return ws.load_index()


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    """A private cache folder and an empty in-memory index cache."""
    monkeypatch.setenv("TOOLFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ws, "_loaded", {})
    return tmp_path / "cache"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


PASSAGES = [
    {"id": "p1", "title": "Quintor", "text": "Quintor is a fictional planet. Its capital is Zorblax."},
    {"id": "p2", "title": "Blue whale", "text": "It is the largest animal known to have lived."},
    {"id": 3, "text": "Saffron is a spice made from the stigmas of the crocus flower."},
]


# ---------------------------------------------------------------------------- pure functions

def test_split_passages_cuts_after_whole_sentences():
    text = "A b c. D e f. G h."
    assert ws.split_passages(text, max_words=4) == ["A b c.", "D e f.", "G h."]
    assert ws.split_passages(text, max_words=6) == ["A b c. D e f.", "G h."]
    assert ws.split_passages(text, max_words=8) == ["A b c. D e f. G h."]


def test_split_passages_cuts_an_overlong_sentence_by_words():
    assert ws.split_passages("Hi. one two three four five", max_words=3) == \
        ["Hi.", "one two three", "four five"]
    assert ws.split_passages("  one\ntwo  three\tfour  ", max_words=3) == ["one two three", "four"]


def test_snippet_cuts_on_a_word_boundary():
    assert ws.snippet("alpha beta gamma", 16) == "alpha beta gamma"
    assert ws.snippet("alpha beta gamma", 10) == "alpha beta"    # the cut falls on a space
    assert ws.snippet("alpha beta gamma", 13) == "alpha beta"    # "gam" is dropped
    assert ws.snippet("alphabetagamma", 5) == "alpha"            # one long word: hard cut
    assert ws.snippet("a, b", 3) == "a"                          # no dangling comma
    assert ws.snippet("one\n two", 20) == "one two"


# ---------------------------------------------------------------------------- real corpus

@pytest.mark.slow
def test_default_corpus_keeps_every_article_in_short_passages():
    passages = ws.load_passages(ws.default_corpus())
    assert len({p["title"] for p in passages}) == 10_033
    assert all(1 <= len(p["text"].split()) <= ws.PASSAGE_WORDS for p in passages)
    assert len({p["id"] for p in passages}) == len(passages)


@pytest.mark.slow
def test_einstein_query_finds_the_einstein_article_first(wiki_index):
    hits = wiki_index.search("Albert Einstein physicist relativity", k=5)
    assert hits[0][0] == "Albert Einstein"
    assert hits[0][1].startswith(EINSTEIN_LEAD)
    assert len(hits) == 5 and [h[2] for h in hits] == sorted((h[2] for h in hits), reverse=True)


@pytest.mark.slow
@pytest.mark.parametrize("query, title", [
    ("Mount Everest height", "Mount Everest"),
    ("who wrote Hamlet", "Hamlet"),
    ("Rosetta Stone decree hieroglyphic", "Rosetta Stone"),
    ("first person to walk on the Moon", "Neil Armstrong"),
])
def test_real_queries(wiki_index, query, title):
    assert ws.search(query, k=3)[0][0] == title


@pytest.mark.slow
def test_default_index_is_loaded_from_the_disk_cache(wiki_index, monkeypatch):
    monkeypatch.setattr(ws, "_loaded", {})  # forget the in-memory copy
    again = ws.load_index()
    assert again is not wiki_index and not again.built and again.key == wiki_index.key
    assert again.search("Albert Einstein", 1)[0][0] == "Albert Einstein"
    assert ws.load_index() is again  # then served from memory


@pytest.mark.slow
def test_executor_returns_a_snippet_of_the_top_passage(wiki_index):
    execute = ws.make_executor()
    result = execute("Albert Einstein physicist relativity", {})
    assert result.startswith(EINSTEIN_LEAD[:60]) and len(result) <= ws.DEFAULT_SNIPPET_CHARS
    short = ws.make_executor(snippet_chars=60)("Albert Einstein physicist relativity", {})
    assert short == "Albert Einstein was a German-born theoretical physicist best"
    two = ws.make_executor(snippet_chars=40, top=2)("Albert Einstein physicist relativity", {})
    first, second = two.split(" | ")
    assert first == "Albert Einstein was a German-born" and 0 < len(second) <= 40


@pytest.mark.slow
def test_run_call_reports_empty_and_unmatched_queries(wiki_index):
    execute = ws.make_executor()
    assert run_call(ws.TOOL, execute, "  ").error == "empty query"
    assert run_call(ws.TOOL, execute, "the of and").error == "no results"  # only stopwords
    ok = run_call(ws.TOOL, execute, "Rosetta Stone")
    assert ok.error is None and ok.result.startswith("The Rosetta Stone is a stele")


@pytest.mark.slow
def test_cli_tool_command(wiki_index, capsys):
    code = cli_main(["tool", "WikiSearch", "Albert Einstein", "--option", "snippet_chars=60", "--json"])
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and figures["result"] == "Albert Einstein was a German-born theoretical physicist best"


# ---------------------------------------------------------------------------- passage files

def test_jsonl_corpus_search_and_executor(tmp_path, tmp_cache):
    corpus = write_jsonl(tmp_path / "passages.jsonl", PASSAGES)
    assert ws.search("capital of Quintor", k=5, corpus=corpus)[0][:2] == \
        ("Quintor", "Quintor is a fictional planet. Its capital is Zorblax.")
    # a passage without a title is found by its text
    assert ws.search("crocus spice", k=1, corpus=corpus)[0][1].startswith("Saffron")
    # the title is indexed: "whale" is only in a title
    hits = ws.search("whale", k=5, corpus=corpus)
    assert [h[0] for h in hits] == ["Blue whale"]  # only positive scores are returned
    execute = ws.make_executor(corpus=str(corpus), snippet_chars=20)
    assert execute("largest animal", {}) == "It is the largest"
    with pytest.raises(ToolError, match="no results"):
        execute("zebra", {})


def test_index_is_built_once_then_loaded_from_disk(tmp_path, tmp_cache):
    corpus = write_jsonl(tmp_path / "passages.jsonl", PASSAGES)
    first = ws.load_index(corpus)
    assert first.built and ws.load_index(corpus) is first  # memory
    ws._loaded.clear()
    second = ws.load_index(corpus)
    assert not second.built and second.key == first.key
    # one finished entry, no half-written build left behind
    assert [p.name for p in (tmp_cache / "wiki-index").iterdir()] == [first.key]
    # the key depends on content, not on the path: a copy elsewhere reuses the entry
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(corpus.read_bytes())
    assert ws.index_key(copy) == first.key and not ws.load_index(copy).built


def test_changed_corpus_gets_a_new_key_and_index(tmp_path, tmp_cache):
    corpus = write_jsonl(tmp_path / "passages.jsonl", PASSAGES)
    old = ws.load_index(corpus)
    write_jsonl(corpus, PASSAGES + [{"id": "p4", "title": "Ytterby", "text": "Ytterby is a village in Sweden."}])
    assert ws.index_key(corpus) != old.key
    new = ws.load_index(corpus)
    assert new.built and new.key != old.key
    assert ws.search("Ytterby village", 1, corpus=corpus)[0][0] == "Ytterby"
    assert not old.search("Ytterby village", 1)


@pytest.mark.parametrize("bad_line, reason", [
    ('{"id": "x", "text": ', "bad JSON"),
    ('{"id": "x"}', "missing field 'text'"),
    ('{"id": "x", "text": "ok", "title": 5}', "field 'title' should be str"),
    ('{"id": "x", "text": "   "}', "field 'text' is empty"),
    ('{"id": true, "text": "ok"}', "field 'id'"),
])
def test_bad_jsonl_line_names_file_and_line(tmp_path, tmp_cache, bad_line, reason):
    corpus = write_jsonl(tmp_path / "bad.jsonl", [PASSAGES[0], PASSAGES[1], bad_line])
    with pytest.raises(BadRecord) as err:
        ws.load_index(corpus)
    assert str(err.value).startswith(f"{corpus}:3: ") and reason in str(err.value)
    assert not (tmp_cache / "wiki-index").exists() or not any((tmp_cache / "wiki-index").iterdir())


def test_bad_leads_json_names_the_entry(tmp_path, tmp_cache):
    leads = tmp_path / "leads.json"
    leads.write_text(json.dumps({"A": {"title": "A", "extract": "Alpha."}, "B": {"title": "B"}}))
    with pytest.raises(ValueError, match=re.escape(f"{leads}: entry 1 needs string fields")):
        ws.load_index(leads)


def test_missing_corpus_and_bad_options(tmp_path, tmp_cache):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        ws.load_index(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="backend"):
        ws.make_executor(backend="google")


# ---------------------------------------------------------------------------- live backend

def test_live_backend_serves_cached_responses(tmp_cache):
    summary = "The Rosetta Stone is a stele of granodiorite inscribed with three versions of a decree."
    path = ws.live_cache_path("Rosetta Stone")
    path.write_text(json.dumps({"query": "Rosetta Stone", "summary": summary}))
    ws.live_cache_path("Qwxz").write_text(json.dumps({"query": "Qwxz", "summary": ""}))
    execute = ws.make_executor(backend="live", snippet_chars=40)
    assert execute("Rosetta  Stone", {}) == "The Rosetta Stone is a stele of"
    with pytest.raises(ToolError, match="no results"):
        execute("Qwxz", {})


def test_live_backend_without_the_package_says_how_to_install(tmp_cache):
    if importlib.util.find_spec("wikipediaapi") is not None:
        pytest.skip("wikipedia-api is installed: an uncached query would need the network")
    with pytest.raises(ToolError, match=r"pip install 'toolformer\[live\]'"):
        ws.make_executor(backend="live")("Not In The Cache", {})


def test_tool_declares_the_paper_defaults():
    t = ws.TOOL
    assert (t.name, t.tau_s, t.k, t.m, t.tau_f, t.heuristic) == ("WikiSearch", 0.05, 5, 5, 1.0, None)


# ---------------------------------------------------------------------------- streamed index, dumps

WORDS = "river city king war music planet music river empire science painter ocean city king".split()


def synthetic_rows(n: int) -> list[dict]:
    """Articles of repeated words (varied term frequencies and lengths), each a few passages."""
    rows = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * j) % len(WORDS)] for j in range(5 + i % 9)]
        rows.append({"id": f"a{i}", "title": f"Article {i} {WORDS[i % len(WORDS)]}",
                     "text": f"{' '.join(words)}. " * (6 * (1 + i % 3)) + "Zorblax " * (i % 2)})
    return rows


def all_scores(index: ws.WikiIndex, query: str):
    import numpy as np
    ids = [index.vocab[t] for t in ws._tokens([query])[0] if t in index.vocab]
    return np.concatenate([s.scores(ids) for s in index.shards])


def test_streamed_shards_score_exactly_as_bm25s(tmp_path, tmp_cache, monkeypatch):
    import bm25s
    import numpy as np
    monkeypatch.setattr(ws, "SHARD_PASSAGES", 7)      # several shards, the last one short
    monkeypatch.setattr(ws, "TOKENIZE_PASSAGES", 3)
    corpus = write_jsonl(tmp_path / "dump.jsonl", synthetic_rows(12))
    index = ws.load_index(corpus)
    passages = ws.load_passages(corpus)
    assert [s.size for s in index.shards] == [7, 7, 5] and all(len(s.data) for s in index.shards)
    assert len(index) == len(passages) == 19 and [index.passage(i) for i in range(19)] == passages
    reference = bm25s.BM25()  # the whole corpus in memory, as the index was built before
    reference.index(ws._tokens([f"{p['title']} {p['text']}" for p in passages]), show_progress=False)
    for query in ["river king", "music music planet", "Zorblax ocean", "article 3 war", "empire"]:
        expected = reference.get_scores_from_ids(reference.get_tokens_ids(ws._tokens([query])[0]))
        assert np.array_equal(all_scores(index, query), expected), query
        ranked = index.ranked(query, 5)
        order = sorted(range(len(expected)), key=lambda i: (-expected[i], i))[:5]
        assert [row for row, _ in ranked] == order and [s for _, s in ranked] == [float(expected[i]) for i in order]


def test_exclusion_looks_past_the_excluded_article(tmp_path, tmp_cache):
    # the article "Zorblax" fills the top 8; excluding it, the next best come from deeper down
    rows = [{"id": "z", "title": "Zorblax", "text": " ".join(f"Zorblax city number {i}." for i in range(400))},
            {"id": "o1", "title": "Other one", "text": "Zorblax is mentioned once in a long text about rivers."},
            {"id": "o2", "title": "Other two", "text": "A second text names Zorblax among many other words here."}]
    corpus = write_jsonl(tmp_path / "dump.jsonl", rows)
    index = ws.load_index(corpus)
    assert {index.search("Zorblax", 8)[i][0] for i in range(8)} == {"Zorblax"}
    assert [h[0] for h in index.search("Zorblax", 3, exclude_title="Zorblax")] == ["Other one", "Other two"]
    execute = ws.make_executor(corpus=corpus, snippet_chars=30)
    assert execute("Zorblax", {ws.EXCLUDE_KEY: "Zorblax"}) == "Zorblax is mentioned once in a"


def test_parquet_dump_of_title_and_text(tmp_path, tmp_cache):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = synthetic_rows(6)
    path = tmp_path / "dump.parquet"
    pq.write_table(pa.table({"title": [r["title"] for r in rows], "text": [r["text"] for r in rows]}), path,
                   row_group_size=2)
    jsonl = write_jsonl(tmp_path / "dump.jsonl", [{k: r[k] for k in ("title", "text")} for r in rows])
    from_parquet, from_jsonl = ws.load_index(path), ws.load_index(jsonl)
    assert len(from_parquet) == len(from_jsonl) == 9
    assert [from_parquet.passage(i) for i in range(9)] == [from_jsonl.passage(i) for i in range(9)]
    assert from_parquet.passage(0)["id"] == "Article 0 river#0"  # no id column: the title is the id
    assert from_parquet.search("music planet", 3) == from_jsonl.search("music planet", 3)
    pq.write_table(pa.table({"title": ["A"], "body": ["b"]}), tmp_path / "nobody.parquet")
    with pytest.raises(ValueError, match="needs a 'text' column \\(it has title, body\\)"):
        ws.load_index(tmp_path / "nobody.parquet")
    pq.write_table(pa.table({"title": ["A", "B", None], "text": ["Alpha river.", None, "Gamma city."]}),
                   tmp_path / "holes.parquet")
    with pytest.raises(BadRecord, match=re.escape(f"{tmp_path / 'holes.parquet'}:2: missing field 'text'")):
        ws.load_index(tmp_path / "holes.parquet")


def test_skip_bad_counts_the_rows_and_a_strict_load_still_refuses(tmp_path, tmp_cache):
    corpus = write_jsonl(tmp_path / "dump.jsonl", [PASSAGES[0], '{"id": "x", "text": ', PASSAGES[1],
                                                   {"id": "y", "text": 5}, PASSAGES[2]])
    with pytest.raises(BadRecord, match=re.escape(f"{corpus}:2: bad JSON")):
        ws.load_index(corpus)
    index = ws.load_index(corpus, skip_bad=True)
    assert len(index) == 3 and index.meta["skipped_bad"] == 2
    assert [e.split(": ", 1)[0] for e in index.meta["skipped_examples"]] == [f"{corpus}:2", f"{corpus}:4"]
    assert ws.make_executor(corpus=corpus, skip_bad=True)("largest animal", {}).startswith("It is the largest")
    with pytest.raises(ValueError, match=re.escape(f"{corpus}:2: bad JSON") + r".*2 bad rows in all; skip them"):
        ws.make_executor(corpus=corpus)   # the cached index skipped rows this caller did not agree to skip


def test_unknown_format_and_broken_leads_json_are_one_line_errors(tmp_path, tmp_cache):
    (tmp_path / "dump.csv").write_text("title,text\nA,Alpha\n")
    with pytest.raises(ValueError, match=r"dump.csv: a WikiSearch corpus is .jsonl, .jsonl.gz or .parquet"):
        ws.load_index(tmp_path / "dump.csv")
    (tmp_path / "leads.json").write_text('{"A": {"title": "A",\n "extract": }}')
    with pytest.raises(ValueError, match=r"leads.json:2: bad JSON"):
        ws.load_index(tmp_path / "leads.json")


def test_a_killed_builds_leftovers_are_removed_by_the_next_build(tmp_path, tmp_cache):
    import subprocess
    import sys
    corpus = write_jsonl(tmp_path / "passages.jsonl", PASSAGES)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    key = ws.index_key(corpus)
    (tmp_cache / "wiki-index").mkdir(parents=True)
    stale = tmp_cache / "wiki-index" / f"{key}.tmp{dead.pid}"
    (stale / "half").mkdir(parents=True)
    running = tmp_cache / "wiki-index" / f"{key}.tmp{os.getpid()}x"  # not a pid: left alone
    running.mkdir()
    assert ws.load_index(corpus).built
    assert sorted(p.name for p in (tmp_cache / "wiki-index").iterdir()) == sorted([key, running.name])


def test_ties_at_the_cut_go_to_the_lower_row(tmp_path, tmp_cache):
    # identical passages: every one scores the same, the first three rows are the top 3 (a plain
    # argpartition returns rows from the end of 300 equal scores)
    corpus = write_jsonl(tmp_path / "dump.jsonl", [{"id": f"d{i}", "text": "Zorblax river."} for i in range(300)])
    index = ws.load_index(corpus)
    assert [row for row, _ in index.ranked("Zorblax", 3)] == [0, 1, 2]


def test_wiki_corpus_points_execute_and_the_decoders_toolbox_at_a_users_dump(tmp_path, tmp_cache):
    from toolformer.inference.toolbox import ToolBox
    from toolformer.run import layout
    from toolformer.run.manifest import Run
    from toolformer.tools import get_tool
    corpus = str(write_jsonl(tmp_path / "dump.jsonl", PASSAGES))
    assert [get_tool(k).corpus_options(corpus) for k in ("wikisearch", "qa", "calculator", "calendar")] == \
        [{"corpus": corpus}, {"corpus": corpus}, {}, {}]
    assert get_tool("wikisearch").corpus_options(None) == {}
    result, error = ToolBox(["wikisearch"], wiki_corpus=corpus).run("WikiSearch", "capital of Quintor", {})
    assert error is None and "Zorblax" in result  # only the dump knows Quintor
    run = Run("r", tmp_path / "runs")
    run.path.mkdir(parents=True)
    (run.path / layout.DOCUMENTS).write_text(json.dumps({"id": "d0", "text": "x", "meta": {}}) + "\n")
    (run.tool_dir("wikisearch") / layout.CANDIDATES).write_text(json.dumps(
        {"id": "c0", "doc_id": "d0", "tool": "wikisearch", "window": 0, "position": 0, "token_index": 0,
         "p_start": 0.5, "input": "capital of Quintor", "call": ""}) + "\n")
    assert cli_main(["execute", "--tool", "wikisearch", "--run", "r", "--runs-dir", str(tmp_path / "runs"),
                     "--wiki-corpus", corpus, "--no-progress"]) == 0
    executed = json.loads((run.tool_dir("wikisearch") / layout.EXECUTED).read_text())
    assert executed["error"] is None and "Zorblax" in executed["result"]
    assert run.stage("execute", "wikisearch").settings["options"]["corpus"] == corpus  # a resume must match it
