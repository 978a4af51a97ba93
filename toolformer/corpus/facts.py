"""Answer-aware candidates for WikiSearch, QA and Calendar (issue 20 §1, DESIGN §9).

A 135M model prompted for these tools writes noise (`WikiSearch(Press release press article
read as)`), so no call of theirs was ever kept. As annotations did for the calculator, this source
knows where a call belongs: it finds spans of a plain document's real text that a tool could have
produced, and proposes a call at the start of each span whose input comes only from the text
before it. The loss filter then judges every one, as it does any candidate.

    Calendar     a mention of the document's own year (meta "date" or "year"), month or weekday
                 -> Calendar() before it: "... in 1790 [Calendar() → The year is 1790.] 1790 ..."
    WikiSearch   a fact about a named entity: a year, number or name after a relation's trigger
    QA           ("born in", "capital of ... is", "located in", "founded in", "population of" ...;
                 the table is toolformer/tools/prompts/facts.txt) -> WikiSearch(<entity>) and
                 WikiSearch(<entity> <keyword>) (two queries, as the sampler proposes m calls at a
                 position: the filter keeps what helps) and QA(<a question from the template>)

The entity is a Wikipedia title (of the WikiSearch index) named in the sentence before the
trigger, the trigger's own subject ("capital of France is"), or, in a sentence that opens with a
pronoun, the document's subject: meta "wiki_title", when the text before the span names it.

A document with no date gets no Calendar candidate: `undated` counts them for the ingest counts.
A Wikipedia document names its article in meta "wiki_title"; WikiSearch and QA leave that article
out of their results while it is curated (tools/wikisearch.py, EXCLUDE_KEY), so a kept call is tool
use, not a copy of the next words; `copies_next_words` measures what copying is left.

`--from-annotations facts` reads a plain corpus this way (pipeline/annotated.py): each row is a
document as `toolformer curate --corpus` reads it (top-level fields such as `year` become meta).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from toolformer.assets import PROMPTS_DIR
from toolformer.corpus.annotations import FORMATS, Annotation, Where
from toolformer.corpus.calls import canonical_position
from toolformer.run.records import Document, document_from_row
from toolformer.tools import get_tool, run_call
from toolformer.tools.calendar import MONTHS, WEEKDAYS, document_date, document_year
from toolformer.tools.wikisearch import EXCLUDE_KEY, default_corpus, iter_articles, load_index

RELATIONS_FILE = PROMPTS_DIR / "facts.txt"
CALENDAR, WIKISEARCH, QA = (get_tool(k).name for k in ("calendar", "wikisearch", "qa"))

# what a tool could have produced; the left guards keep "1,790", "$1790" and "3.1790" out
_YEAR = r"(?<![\w$£€.,])(?:1\d{3}|20\d{2})(?![\w]|[.,]\d)(?: (?:BC|BCE|AD|CE)\b)?"
_NUMBER = r"(?<![\w$£€.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w%]|[.,]\d| %)(?: (?:million|billion|thousand)\b)?"
_NAME_WORD = r"[A-Z][\w'’-]*"
_CONNECT = r"(?:of|the|de|du|da|del|von|van|la|le|and|upon|al|y)"
_NAME = rf"{_NAME_WORD}(?: (?:{_CONNECT} )*{_NAME_WORD})*"
VALUES = {"year": _YEAR, "number": _NUMBER, "name": _NAME}
# any year, or number of two digits or more: a fact where WikiSearch returns it (fact_spans)
_GENERIC = re.compile(rf"{_YEAR}|(?=\d\d|\d,\d){_NUMBER}")
GENERIC = "generic"

# a question document (facts_corpus): a relation fact of a lead asked with its QA template
QUESTION_DOCUMENT = re.compile(r"Question: (?P<question>[^\n]+)\nAnswer: (?P<answer>[^\n]+)")
QUERIES_KEY, ENTITY_KEY = "queries", "entity"
# what a speech that never writes its year is asked: only Calendar can tell (not Dateset's wording)
YEAR_QUESTION = "\nQuestion: In what year was this address given?\nAnswer: {year}"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(\[“])")
_PHRASE = re.compile(_NAME)
_PRONOUN = re.compile(r"(?:He|She|It|They|His|Her|Its|Their|This|These)\b")
_POSSESSIVE = re.compile(r"['’]s?$")


@dataclass(frozen=True)
class Relation:
    name: str
    value: str              # year, number or name
    pattern: re.Pattern     # the trigger, then the value as the group "value"
    query: str              # WikiSearch query template
    question: str           # QA question template


@dataclass(frozen=True)
class Fact:
    position: int           # where the span starts: the call goes before it
    value: str              # the span: what the tool's result should contain
    relation: str
    entity: str
    queries: tuple[str, ...]  # WikiSearch inputs (distinct)
    question: str           # the QA input


@functools.cache
def relations(path: Path = RELATIONS_FILE) -> tuple[Relation, ...]:
    """The relation table (see the file's header); a malformed line is an error naming it."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(" | ")
        if len(parts) < 5 or parts[1] not in VALUES:
            raise ValueError(f"{path}:{number}: expected 'name | year/number/name | trigger | query | question'")
        name, value, *trigger, query, question = parts
        try:
            pattern = re.compile(f"(?:{' | '.join(trigger)})(?P<value>{VALUES[value]})")
        except re.error as err:
            raise ValueError(f"{path}:{number}: bad trigger: {err}") from None
        out.append(Relation(name.strip(), value, pattern, query.strip(), question.strip()))
    return tuple(out)


def _norm(name: str) -> str:
    """How a name is looked up among titles: lower case, no possessive, no final punctuation."""
    return _POSSESSIVE.sub("", name.strip().rstrip(".,;:")).lower()


@functools.cache
def index_titles(corpus: str | Path | None = None) -> frozenset[str]:
    """The article titles of the WikiSearch corpus (default: the embedded leads; or a dump, as
    --wiki-corpus takes it), as _norm gives them, without a disambiguation suffix
    ("Mercury (planet)" -> "mercury")."""
    return frozenset(_title_norm(title) for _, title, _ in iter_articles(Path(corpus or default_corpus())))


def _title_norm(title: str) -> str:
    return _norm(re.sub(r" \([^)]*\)$", "", title))


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence."""
    bounds, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        bounds.append((start, m.start()))
        start = m.end()
    return bounds + [(start, len(text))] if start < len(text) else bounds


def title_mentions(text: str, titles: frozenset[str]) -> list[tuple[int, str]]:
    """(offset, name as written) of each title named in `text`: in every capitalised phrase, the
    longest run of words that is a title, left to right ("During World War II" -> "World War II")."""
    found = []
    for phrase in _PHRASE.finditer(text):
        words = [(m.start() + phrase.start(), m.group()) for m in re.finditer(r"\S+", phrase.group())]
        i = 0
        while i < len(words):
            for j in range(len(words), i, -1):
                name = " ".join(w for _, w in words[i:j])
                if _norm(name) in titles:
                    found.append((words[i][0], _POSSESSIVE.sub("", name.rstrip(".,;:"))))
                    i = j
                    break
            else:
                i += 1
    return found


def _subject_before(text: str, subject: str | None, end: int) -> str | None:
    """The document's subject as the text before `end` writes it, if it does."""
    if not subject:
        return None
    m = re.search(re.escape(subject), text[:end], re.IGNORECASE)
    return m.group() if m else None


def _entity_before(text: str, sentence: tuple[int, int], at: int, mentions: list[tuple[int, str]],
                   subject: str | None) -> list[str]:
    """Who a fact at `at` (an offset in the sentence) is about, most likely first: in a sentence
    that opens with a pronoun, the document's subject (if the text before has named it); else the
    titles the sentence names before it, or the subject if the sentence names it (in lower case:
    "The tomato is ...")."""
    start, _ = sentence
    if _PRONOUN.match(text[start:]):
        own = _subject_before(text, subject, start + at)
        return [own] if own else []
    before = [name for o, name in mentions if o < at]
    own = _subject_before(text[start:], subject, at)
    return before or ([own] if own else [])


def fact_spans(text: str, titles: frozenset[str], subject: str | None = None,
               supports: Callable[[str, str, str], bool] | None = None) -> list[Fact]:
    """The facts of `text` a WikiSearch or QA call could have produced, in text order.

    A relation's value (facts.txt) is a fact about the entity before its trigger. With `supports`
    (query, entity, value) -> whether WikiSearch(query) returns a sentence that names both, a
    relation fact keeps only the queries that do (its QA question stays: QA reads other passages),
    and any other year, number or title the sentence names is a fact too where WikiSearch(an
    entity named before it) supports it ("generic": no question is templated for it, so it has no
    QA call). A result that holds the value but is about another entity (Busan's lead left out,
    WikiSearch(Busan) returns Daegu's "a city in southeastern South Korea") supports nothing."""
    facts, seen = [], set()
    lower_words = set(re.findall(r"\b[a-z]+\b", text))  # "river" in the text: "River" is a common noun
    for bounds in sentences(text):
        s_start, s_end = bounds
        sentence = text[s_start:s_end]
        # a one-word title the text also writes in lower case is a common noun ("State" and "state",
        # "Government"), never an entity nor a value: SOTU passages made "Where is State?" of them
        mentions = [(o, name) for o, name in title_mentions(sentence, titles)
                    if " " in name or name.lower() not in lower_words]
        for rel in relations():
            for m in rel.pattern.finditer(sentence):
                position = s_start + m.start("value")
                groups = m.groupdict()
                entities = [groups["subject"]] if groups.get("subject") else \
                    _entity_before(text, bounds, m.start(), mentions, subject)
                if not entities or position in seen:
                    continue
                seen.add(position)
                entity = entities[0]
                fill = {"entity": entity, "verb": groups.get("verb") or ""}
                queries = tuple(dict.fromkeys((entity, " ".join(rel.query.format(**fill).split()))))
                if supports is not None:
                    queries = tuple(q for q in queries if supports(q, entity, m.group("value")))
                facts.append(Fact(position, m.group("value"), rel.name, entity, queries,
                                  " ".join(rel.question.format(**fill).split())))
        if supports is None:
            continue
        # other years and numbers, and the titles named
        values = [(m.start(), m.group()) for m in _GENERIC.finditer(sentence)] + mentions
        for at, value in sorted(values):
            if s_start + at in seen:
                continue
            entity = next((e for e in _entity_before(text, bounds, at, mentions, subject)
                           if e.lower() != value.lower() and supports(e, e, value)), None)
            if entity is not None:
                seen.add(s_start + at)
                facts.append(Fact(s_start + at, value, GENERIC, entity, (entity,), ""))
    return sorted(facts, key=lambda f: f.position)


def date_mentions(text: str, meta: Mapping | None) -> list[tuple[int, str]]:
    """(offset, mention) of what Calendar() would tell for this document: its year, and with a
    full date its month and weekday. One mention per date phrase ("April 19, 2013" is one, at
    "April"). [] for a document without a date."""
    year = document_year(meta)
    if year is None:
        return []
    patterns = [rf"(?<![\w$£€.,]){year}(?![\w]|[.,]\d)"]
    day = document_date(meta)
    if day is not None:
        month = MONTHS[day.month - 1]
        # "May" and "March" are words too: only before a day or a year
        patterns += [rf"\b{WEEKDAYS[day.weekday()]}\b",
                     rf"\b{month}\b" + (r"(?= \d)" if month in ("May", "March") else "")]
    found = sorted((m.start(), m.group()) for p in patterns for m in re.finditer(p, text))
    out, end = [], None
    for start, mention in found:
        # the rest of a date phrase ("April" and "2013" of "Friday, April 19, 2013") is not another mention
        if end is None or not re.fullmatch(r"[\s,]*(?:\d{1,2}(?:st|nd|rd|th)?)?[\s,]*", text[end:start]):
            out.append((start, mention))
        end = start + len(mention)
    return out


def fact_annotations(doc: Document, titles: frozenset[str],
                     supports: Callable[[str, str, str, Mapping], bool] | None = None) -> list[Annotation]:
    """The candidates of one document for Calendar, WikiSearch and QA, at canonical positions.
    `supports(query, entity, value, meta)`: whether WikiSearch(query) returns a sentence naming
    both for this document (its own article left out); None: relation facts, unchecked."""
    if supports is not None:
        supports = functools.partial(supports, meta=doc.meta)
    out = [Annotation(canonical_position(doc.text, p), CALENDAR, "", None)
           for p, _ in date_mentions(doc.text, doc.meta)]
    asked = QUESTION_DOCUMENT.fullmatch(doc.text) if QUERIES_KEY in doc.meta else None
    if asked:  # a question document: its answer is the fact, its meta the entity's queries
        queries = [q for q in doc.meta[QUERIES_KEY]
                   if supports is None or supports(q, doc.meta[ENTITY_KEY], asked["answer"])]
        p = canonical_position(doc.text, asked.start("answer"))
        return out + [Annotation(p, WIKISEARCH, q, None) for q in queries] + [
            Annotation(p, QA, asked["question"], None)]
    for fact in fact_spans(doc.text, titles, doc.meta.get(EXCLUDE_KEY), supports):
        p = canonical_position(doc.text, fact.position)
        out += [Annotation(p, WIKISEARCH, q, None) for q in fact.queries]
        if fact.question:
            out.append(Annotation(p, QA, fact.question, None))
    return sorted(out, key=lambda a: a.position)


def undated(docs: Iterable[Document]) -> int:
    """Documents that get no Calendar candidate for want of a date."""
    return sum(document_year(d.meta) is None for d in docs)


@functools.cache
def _wikisearch(corpus: str | None):
    tool = get_tool("wikisearch")
    return tool, tool.executor(**tool.corpus_options(corpus))


def _names(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w.,]){re.escape(name)}(?![\w]|[.,]\d)", text, re.IGNORECASE) is not None


def wikisearch_supports(query: str, entity: str, value: str, meta: Mapping, corpus: str | None = None) -> bool:
    """Whether the WikiSearch call the execute stage will make (default options on `corpus`, this
    document's own article left out) returns `value` about `entity`: from the entity's own article,
    or in a sentence that names the entity too."""
    tool, executor = _wikisearch(corpus)
    result = run_call(tool, executor, query, meta).result
    if result is None or not _names(result, value):
        return False
    (title, _, _), = load_index(corpus).search(query, 1, meta.get(EXCLUDE_KEY))
    return _title_norm(title) == _norm(entity) or any(_names(result[a:b], entity) and _names(result[a:b], value)
                                                for a, b in sentences(result))


def _facts_row(row: dict, doc_id: str, where: Where, wiki_corpus: str | None = None) -> tuple[Document, list[Annotation]]:
    doc = document_from_row(row, where, doc_id)  # the plain reader's rules: top-level fields become meta
    return doc, fact_annotations(doc, index_titles(wiki_corpus),
                                 functools.partial(wikisearch_supports, corpus=wiki_corpus))


FORMATS.register("facts", _facts_row)


# ---------------------------------------------------------------------------- measuring

def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def copies_next_words(result: str | None, text: str, position: int, n: int = 8) -> bool:
    """Whether `result` holds the n words of `text` after `position` verbatim (case and
    punctuation aside): a call that "predicts" by copying, not by knowing (DESIGN §9). Fewer than n
    words left: never a copy."""
    following = _words(text[position:])[:n]
    if result is None or len(following) < n:
        return False
    return f" {' '.join(following)} " in f" {' '.join(_words(result))} "


def wikipedia_lead_documents(corpus: Path | None = None) -> list[Document]:
    """The leads of the WikiSearch corpus (default: the embedded 10,033; CC BY-SA 4.0) as documents
    "wiki:<title>" that name their own article (meta wiki_title), so curation leaves it out."""
    return [Document(f"wiki:{title}", text, {EXCLUDE_KEY: title})
            for _, title, text in iter_articles(Path(corpus or default_corpus())) if text.strip()]


def question_rows(doc: Document, titles: frozenset[str]) -> list[dict]:
    """The relation facts of a lead asked as questions ("Question: What is the capital of Liberia?
    Answer: Monrovia"): one document each whose WikiSearch queries find the fact elsewhere (its own
    article left out). The question comes from the relation's template, the answer is the lead's
    own text; meta keeps the article (left out while curated), the entity and its queries."""
    supports = functools.partial(wikisearch_supports, meta=doc.meta)
    rows = []
    for fact in fact_spans(doc.text, titles, doc.meta.get(EXCLUDE_KEY), supports):
        if fact.question and fact.queries and _norm(fact.value) != _norm(fact.entity):  # not "Where is India? India"
            rows.append({"id": f"{doc.id}#q{len(rows) + 1}", "text": f"Question: {fact.question}\nAnswer: {fact.value}",
                         "meta": {**doc.meta, ENTITY_KEY: fact.entity, QUERIES_KEY: list(fact.queries)}})
    return rows


def facts_corpus(sotu: Path | None, n_sotu: int, n_asked: int, n_leads: int, n_questions: int,
                 seed: int = 0) -> list[dict]:
    """Rows of a seeded facts corpus: State of the Union passages (`sotu`, JSONL with id, text, year)
    that mention their own year; passages that do not, followed by the question of their year
    (where only Calendar can tell it); Wikipedia leads with a fact WikiSearch supports (their own
    article left out); and relation facts of leads as question documents. `--from-annotations
    facts` turns them into candidates of all three tools, in prose and in the question-and-answer
    form the benchmarks ask in."""
    import json
    import random
    rng = random.Random(seed)
    speeches = list(map(json.loads, sotu.open(encoding="utf-8"))) if sotu else []
    dated = [r for r in speeches if date_mentions(r["text"], {"year": r["year"]})]
    # asked only where the year is nowhere in the text (not even as "$1860"): nothing to copy it from
    undated = [{**r, "text": r["text"] + YEAR_QUESTION.format(year=r["year"])} for r in speeches
               if not re.search(rf"(?<!\d){r['year']}(?!\d)", r["text"])]
    titles = index_titles()
    leads = [d for d in wikipedia_lead_documents()
             if any(a.tool == WIKISEARCH for a in fact_annotations(d, titles, wikisearch_supports))]
    questions = [q for d in leads for q in question_rows(d, titles)]
    rows = (rng.sample(dated, min(n_sotu, len(dated))) + rng.sample(undated, min(n_asked, len(undated)))
            + [d.to_json() for d in rng.sample(leads, min(n_leads, len(leads)))]
            + rng.sample(questions, min(n_questions, len(questions))))
    rng.shuffle(rows)  # a first N of them holds every kind
    return rows
