"""Fact candidates for Calendar, WikiSearch and QA (corpus/facts.py, `--from-annotations facts`)."""
import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from toolformer.config import FilterSettings, RunSettings, SampleSettings
from toolformer.corpus import facts
from toolformer.corpus.annotations import Annotation, read_annotated
from toolformer.corpus.build import build_augmented
from toolformer.corpus.calls import canonical_position
from toolformer.corpus.facts import (Fact, copies_next_words, date_mentions, fact_annotations, fact_spans,
                                     index_titles, wikisearch_supports)
from toolformer.pipeline.curate import curate
from toolformer.run.manifest import Run
from toolformer.run.records import SCORED, Document, read_jsonl
from toolformer.tools import get_tool, run_call
from toolformer.tools.wikisearch import EXCLUDE_KEY, load_index

TITLES = frozenset({"marie curie", "warsaw", "nobel prize", "france", "paris"})
CURIE = "Marie Curie was born in Warsaw. She won the Nobel Prize in 1903. The capital of France is Paris."


def at(text: str, word: str, n: int = 1) -> int:
    """The offset of the n-th occurrence of `word` in `text`, counted by hand."""
    p = -1
    for _ in range(n):
        p = text.index(word, p + 1)
    return p


# ---------------------------------------------------------------------------- Calendar

def test_date_mentions_full_date():
    text = "On Friday, April 19, 2013 the museum opened. In 2013 we met; in April too, on Friday. Since May we wait."
    # "April 19, 2013" is the rest of the first date phrase; "May" of a May date needs a day after it
    assert date_mentions(text, {"date": "2013-04-19"}) == [
        (3, "Friday"), (at(text, "2013", 2), "2013"), (at(text, "April", 2), "April"), (at(text, "Friday", 2), "Friday")]
    assert date_mentions(text, {"date": "2013-05-03"}) == [  # also a Friday, in May
        (3, "Friday"), (at(text, "2013"), "2013"), (at(text, "2013", 2), "2013"), (at(text, "Friday", 2), "Friday")]


def test_date_mentions_year_only():
    text = "In 1790, not $1790, nor 1,790, 17900 or 1790s, the year 1790."
    assert date_mentions(text, {"year": 1790}) == [(3, "1790"), (len(text) - 5, "1790")]
    assert date_mentions(text, {"year": "1790"}) == [(3, "1790"), (len(text) - 5, "1790")]
    assert date_mentions(text, {"year": 1791}) == []


@pytest.mark.parametrize("meta", [{}, {"year": None}, {"date": "April 1790"}, {"year": "the 1790s"}])
def test_undated_documents_get_no_calendar_candidates(meta):
    doc = Document("d", "In 1790 the census was taken.", meta)
    assert date_mentions(doc.text, meta) == []
    assert [a for a in fact_annotations(doc, TITLES) if a.tool == "Calendar"] == []
    assert facts.undated([doc, Document("e", "x", {"year": 1790})]) == 1


# ---------------------------------------------------------------------------- WikiSearch and QA

def test_relation_facts_exact():
    facts_found = fact_spans(CURIE, TITLES, subject="Marie Curie")
    assert facts_found == [
        Fact(at(CURIE, "Warsaw"), "Warsaw", "born_in", "Marie Curie", ("Marie Curie", "Marie Curie born"),
             "Where was Marie Curie born?"),
        # a sentence that opens with a pronoun is about the document's subject, named before it
        Fact(at(CURIE, "Nobel"), "Nobel Prize", "won", "Marie Curie", ("Marie Curie", "Marie Curie won"),
             "What did Marie Curie win?"),
        # the trigger names its own subject
        Fact(at(CURIE, "Paris"), "Paris", "capital_of_is", "France", ("France", "France capital"),
             "What is the capital of France?"),
    ]
    # without a subject the pronoun sentence has no entity: no candidate, rather than a wrong one
    assert [f.value for f in fact_spans(CURIE, TITLES)] == ["Warsaw", "Paris"]


def test_inputs_come_from_the_text_before_the_span():
    for f in fact_spans(CURIE, TITLES, subject="Marie Curie"):
        before = CURIE[:f.position]
        assert f.entity in before and all(word in before for q in f.queries for word in q.split())


def test_a_title_the_text_writes_in_lower_case_is_no_entity():
    """"State" is a title of the index, but a text that also writes "state" means the common noun:
    no "Where is State?" (a real SOTU passage had it); a proper name in the same text still counts."""
    titles = frozenset({"state", "cuba"})
    text = "The State was founded in 1790, the first state of its kind. Cuba was founded in 1902."
    assert [(f.entity, f.value) for f in fact_spans(text, titles)] == [("Cuba", "1902")]
    assert [(f.entity, f.value) for f in fact_spans("The State was founded in 1790.", titles)] == [("State", "1790")]


def test_a_subject_the_text_has_not_named_yet_is_not_used():
    text = "She won the Nobel Prize. Marie Curie was a physicist."
    assert fact_spans(text, TITLES, subject="Marie Curie") == []


def test_generic_facts_only_where_wikisearch_returns_them():
    """A year with no relation trigger is a fact where WikiSearch(the entity before it) returns it:
    the real index, with the document's own article left out (Ferdinand II of Aragon's lead holds 1504)."""
    text = "Isabella I of Castile ruled until 1504, and 1600 more people came in 1492."
    for meta in ({}, {EXCLUDE_KEY: "Isabella I of Castile"}):
        reaches = lambda q, e, v, meta=meta: wikisearch_supports(q, e, v, meta)  # noqa: E731
        assert fact_spans(text, index_titles(), None, reaches) == [
            Fact(at(text, "1504"), "1504", "generic", "Isabella I of Castile", ("Isabella I of Castile",), "")]
    assert fact_spans(text, index_titles()) == []  # without the check: no generic facts


def test_generic_names():
    """A title named after an entity is a fact where WikiSearch(the entity) returns it; a title that
    the text also writes in lower case is a common noun ("Republic" and "republic"), never one."""
    text = "Knossos, a Bronze Age site, stands on Crete by the River."
    crete = Fact(at(text, "Crete"), "Crete", "generic", "Knossos", ("Knossos",), "")
    bronze = Fact(at(text, "Bronze"), "Bronze Age", "generic", "Knossos", ("Knossos",), "")
    assert fact_spans(text, index_titles(), None, lambda q, e, v: wikisearch_supports(q, e, v, {})) == [crete]
    # Knossos's own lead left out: Minoan civilization's holds "Bronze Age" and "Crete" but is not
    # about Knossos (its sentences never name it): no fact
    own_out = {EXCLUDE_KEY: "Knossos"}
    assert fact_spans(text, index_titles(), "Knossos", lambda q, e, v: wikisearch_supports(q, e, v, own_out)) == []
    text = "Guatemala is a Republic; the republic has a River, the river is long."
    assert fact_spans(text, index_titles(), None, lambda q, e, v: True) == []


def test_a_result_about_another_entity_supports_only_what_it_states():
    """Busan's own lead left out, WikiSearch(Busan) returns Daegu's: "a city in southeastern South
    Korea. It is the third-largest urban agglomeration in South Korea after Seoul and Busan". It
    holds nothing about Busan's 3.3 million people, so that fact gets no WikiSearch call (the
    filter kept such neighbour calls before); "South Korea" and "Seoul" it states beside "Busan"
    (the real lead and index)."""
    busan = next(d for d in facts.wikipedia_lead_documents() if d.id == "wiki:Busan")
    result = run_call(get_tool("wikisearch"), get_tool("wikisearch").executor(), "Busan", busan.meta).result
    assert result.startswith("Daegu") and "3.3 million" in busan.text
    found = {f.value: f.queries for f in fact_spans(busan.text, index_titles(), "Busan",
                                                   lambda q, e, v: wikisearch_supports(q, e, v, busan.meta))}
    assert found["3.3 million"] == () and found["Seoul"] == found["South Korea"] == ("Busan",)
    anns = fact_annotations(busan, index_titles(), wikisearch_supports)
    assert "What is the population of Busan?" in {a.input for a in anns if a.tool == "QA"}  # QA reads other passages
    assert not wikisearch_supports("Busan population", "Busan", "3.3 million", busan.meta)
    # without the document's own article left out, its own lead supports it (the title is the entity)
    assert wikisearch_supports("Busan population", "Busan", "3.3 million", {})


def test_annotations_of_a_document():
    doc = Document("d", "In 1903 Marie Curie was born in Warsaw.", {"year": 1903})
    p = canonical_position(doc.text, at(doc.text, "Warsaw"))
    assert p == at(doc.text, "Warsaw") - 1  # before the space, where build writes a call
    assert fact_annotations(doc, TITLES) == [
        Annotation(3 - 1, "Calendar", "", None),
        Annotation(p, "WikiSearch", "Marie Curie", None),
        Annotation(p, "WikiSearch", "Marie Curie born", None),
        Annotation(p, "QA", "Where was Marie Curie born?", None),
    ]


def test_a_question_document_gets_its_queries_and_question_before_the_answer():
    """A relation fact asked as a question (facts_corpus): WikiSearch with each of the entity's queries
    that finds the answer (its own article left out) and QA with the question, before the answer;
    a query whose result lacks the answer is no candidate."""
    from toolformer.corpus.facts import question_rows
    busan = next(d for d in facts.wikipedia_lead_documents() if d.id == "wiki:Busan")
    rows = question_rows(busan, index_titles())
    assert rows and all(r["id"].startswith("wiki:Busan#q") and r["meta"][EXCLUDE_KEY] == "Busan" for r in rows)
    meta = {EXCLUDE_KEY: "Busan", "entity": "Busan", "queries": ["Busan", "Busan population"]}
    doc = Document("q", "Question: Where is Busan located?\nAnswer: South Korea", meta)
    p = doc.text.index("\nAnswer:") + len("\nAnswer:")
    assert fact_annotations(doc, index_titles(), wikisearch_supports) == [
        Annotation(p, "WikiSearch", "Busan", None), Annotation(p, "WikiSearch", "Busan population", None),
        Annotation(p, "QA", "Where is Busan located?", None)]
    # Daegu's lead, which WikiSearch returns for both queries, does not hold Busan's population
    doc = Document("q", "Question: What is the population of Busan?\nAnswer: 3.3 million", meta)
    p = doc.text.index("\nAnswer:") + len("\nAnswer:")
    assert fact_annotations(doc, index_titles(), wikisearch_supports) == [
        Annotation(p, "QA", "What is the population of Busan?", None)]
    # the same text without the queries in meta is plain text: no relation trigger there
    assert fact_annotations(Document("q", doc.text, {EXCLUDE_KEY: "Busan"}), index_titles(), wikisearch_supports) == []


def test_read_annotated_facts_format(tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [{"id": "sotu", "text": "In 1903 the census of Warsaw was taken.", "year": 1903},
            {"id": "plain", "text": "Nothing to see in 1903."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    docs = list(read_annotated(path, "facts"))
    assert [d.id for d in docs] == ["sotu", "plain"]
    assert docs[0].document.meta == {"year": 1903}  # top-level fields become meta, as the plain reader does
    assert [(a.position, a.tool, a.input) for a in docs[0].annotations] == [(2, "Calendar", "")]
    assert docs[1].annotations == ()


def test_relations_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "facts.txt"
    bad.write_text("# header\nborn | year | \\bborn | {entity} | When?\nbroken line\n")
    with pytest.raises(ValueError, match=r"facts.txt:3: expected"):
        facts.relations(bad)


# ---------------------------------------------------------------------------- the leak guard

@pytest.mark.parametrize("title", ["Albert Einstein", "Isabella I of Castile", "Paris"])
def test_own_article_is_never_returned(title):
    index = load_index()
    own = {text for t, text, _ in index.search(title, 50) if t == title}
    assert own, "the query must find the article itself, or the test proves nothing"
    assert all(t != title for t, _, _ in index.search(title, 50, exclude_title=title))
    tool = get_tool("wikisearch")
    executor = tool.executor()
    meta = {EXCLUDE_KEY: title}
    result = run_call(tool, executor, title, meta).result
    assert result is not None and not any(result in text or text.startswith(result[:60]) for text in own)
    assert EXCLUDE_KEY in tool.meta_keys and EXCLUDE_KEY in get_tool("qa").meta_keys  # cached per document


def test_copies_next_words():
    text = "The tower was completed in 1889 for the World's Fair in Paris, France."
    p = at(text, "1889") - 1
    assert copies_next_words("It was built in 1889 for the world's fair in Paris, France, by Eiffel.", text, p)
    assert not copies_next_words("It was built in 1889 for the world's fair in Lyon.", text, p)
    assert not copies_next_words("1889 for the world's fair", text, p, n=8)
    assert not copies_next_words(None, text, p)
    assert not copies_next_words("Paris, France.", text, at(text, "Paris"))  # fewer than 8 words left


# ---------------------------------------------------------------------------- end to end

SOTU = SHARED_DATA / "corpus" / "sotu_passages.jsonl"


@pytest.mark.skipif(not SOTU.is_file(), reason="needs ../shared/data/corpus/sotu_passages.jsonl")
def test_curate_real_documents(tmp_path, tiny_model_dir):
    """Two real dated SOTU passages that mention their year, one real Wikipedia lead, one undated
    line: calendar and wikisearch curated with a tiny model, every executed call kept (τ_f = -inf)
    and built: each call lands in the text right before its span."""
    rows = [r for r in map(json.loads, SOTU.open()) if date_mentions(r["text"], {"year": r["year"]})][:2]
    lead = next(d for d in facts.wikipedia_lead_documents() if d.id == "wiki:Burj Khalifa")
    corpus = tmp_path / "docs.jsonl"
    lines = rows + [lead.to_json(), {"id": "undated", "text": "Lima is the capital of Peru and 1790 is a year."}]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in lines))
    settings = RunSettings(run="f", runs_dir=str(tmp_path / "runs"), corpus=str(corpus), model=str(tiny_model_dir),
                           no_progress=True)
    figures = curate(settings, "calendar,wikisearch", SampleSettings(window=64, from_annotations="facts"),
                     filter=FilterSettings(tau_f=float("-inf")))
    assert figures["ingest"]["documents"] == 4 and figures["ingest"]["undated"] == 2
    mentions = {r["id"]: date_mentions(r["text"], {"year": r["year"]}) for r in rows}
    sample = figures["stages"]["sample/calendar"]
    assert sample["candidates"] == sum(map(len, mentions.values())) >= 2
    assert sample["documents_heuristic"] == 2  # the report's funnel: 2 of 4 documents are dated
    run = Run("f", str(tmp_path / "runs"))
    cal = [r for _, r in read_jsonl(run.stage_output("filter", "calendar"), SCORED)]
    assert sorted((r["doc_id"], r["position"]) for r in cal) == sorted(
        (d, canonical_position(next(x["text"] for x in rows if x["id"] == d), p)) for d, ms in mentions.items()
        for p, _ in ms)
    year = {r["id"]: r["year"] for r in rows}
    assert all(r["result"] == f"The year is {year[r['doc_id']]}." and r["call"] == "[Calendar()]" for r in cal)
    wiki = [r for _, r in read_jsonl(run.stage_output("filter", "wikisearch"), SCORED)]
    burj = fact_spans(lead.text, index_titles(), "Burj Khalifa",
                      lambda q, e, v: wikisearch_supports(q, e, v, lead.meta))
    assert burj and {r["input"] for r in wiki if r["doc_id"] == lead.id} == {q for f in burj for q in f.queries}
    own = {text for t, text, _ in load_index().search("Burj Khalifa", 50) if t == "Burj Khalifa"}
    assert not any(r["result"] and any(r["result"][:60] in text for text in own)
                   for r in wiki if r["doc_id"] == lead.id)
    # build merges the kept calls of both tools into each document, unchanged
    built = build_augmented(run.path, heldout=0.0)
    out = {r["id"]: r for _, r in read_jsonl(Path(built["out"]) / "train.jsonl")}
    for doc_id in mentions:
        assert f"[Calendar() → The year is {year[doc_id]}.] {year[doc_id]}" in out[doc_id]["text"]
    assert {c["tool"] for c in out[lead.id]["calls"]} == {"WikiSearch"}


def test_candidates_are_placed_against_the_users_dump(tmp_path):
    """--wiki-corpus: titles and WikiSearch's answers come from the dump the run will search, not the
    embedded leads (a town only the dump knows gets its candidate; the embedded leads give none)."""
    dump = tmp_path / "dump.jsonl"
    dump.write_text(json.dumps({"title": "Frobnitz", "text": "Frobnitz is a town in Zorbland. It was founded "
                                "in 1234 by millers."}) + "\n" + json.dumps({"title": "Zorbland",
                                "text": "Zorbland is a small country."}) + "\n")
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text(json.dumps({"id": "d", "text": "Frobnitz was founded in 1234. Frobnitz has 1234 mills."}) + "\n")
    embedded = [d.annotations for d in read_annotated(corpus, "facts")]
    assert embedded == [()]
    (doc,) = read_annotated(corpus, "facts", wiki_corpus=str(dump))
    at_1234 = canonical_position(doc.document.text, doc.document.text.index("1234"))
    assert [(a.position, a.tool, a.input) for a in doc.annotations] == [
        (at_1234, "WikiSearch", "Frobnitz"), (at_1234, "WikiSearch", "Frobnitz founded"),
        (at_1234, "QA", "When was Frobnitz founded?"),
        (canonical_position(doc.document.text, doc.document.text.rindex("1234")), "WikiSearch", "Frobnitz")]
    assert "frobnitz" in index_titles(str(dump)) and "frobnitz" not in index_titles()
