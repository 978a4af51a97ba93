"""WikiSearch: BM25 over Wikipedia passages, returning a short snippet of the best passage.

The paper's WikiSearch is a BM25 retriever over the KILT Wikipedia dump (Schick et al. 2023,
§2). Here the default corpus is the embedded lead sections of 10,033 Wikipedia "vital articles"
(`wiki-leads-en`), cut into ~100-word passages on sentence boundaries; any JSONL passage file
(`{"id", "title"?, "text"}` per line) can replace it. Titles are indexed with every passage of
their article, so a query naming the subject finds its article.

The index is built once per corpus and cached on disk under cache_dir("wiki-index", key), key =
fingerprint of the corpus bytes, the passage settings and this file's code; in a process, loaded
indices are kept in memory. An optional live backend (`backend="live"`, extra `toolformer[live]`)
looks a query up as a Wikipedia page title through wikipedia-api, caching every response on disk.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import bm25s
import numpy as np
import Stemmer

from toolformer.assets import cache_dir, embedded_path, file_fingerprint
from toolformer.errors import UserFileNotFound, UserValueError
from toolformer.run.records import BadRecord, read_jsonl
from toolformer.tools.base import Executor, Tool, ToolError, register

PASSAGE_WORDS = 100          # passages are cut to at most this many words, on sentence ends
DEFAULT_SNIPPET_CHARS = 250
MAX_QUERY_CHARS = 300        # calls are untrusted: bound the work one query can cause
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

# ---------------------------------------------------------------------------- passages


def split_passages(text: str, max_words: int = PASSAGE_WORDS) -> list[str]:
    """Whitespace-normalised chunks of at most `max_words` words, cut after whole sentences.

    A sentence longer than `max_words` is cut by words (a passage file may hold unpunctuated text).
    """
    chunks: list[list[str]] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        words = sentence.split()
        while len(words) > max_words:  # an overlong sentence: cut it, then continue normally
            if current:
                chunks.append(current)
                current = []
            chunks.append(words[:max_words])
            words = words[max_words:]
        if current and len(current) + len(words) > max_words:
            chunks.append(current)
            current = []
        current += words
    if current:
        chunks.append(current)
    return [" ".join(chunk) for chunk in chunks]


def _articles_from_json(path: Path) -> list[tuple[str, str, str]]:
    """(id, title, text) of each article in a leads file: a JSON object (title -> entry) or list
    of entries {title, extract, ...}, as in the embedded wiki-leads-en."""
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = list(data.values()) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise UserValueError(f"{path}: expected a JSON object or list of {{title, extract}} entries")
    articles = []
    for number, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("title"), str)
                and isinstance(entry.get("extract"), str)):
            raise UserValueError(f"{path}: entry {number} needs string fields 'title' and 'extract', "
                             f"got {json.dumps(entry)[:80]}")
        articles.append((entry["title"], entry["title"], entry["extract"]))
    return articles


def _articles_from_jsonl(path: Path) -> list[tuple[str, str, str]]:
    """(id, title, text) of each line of a passage file {"id", "title"?, "text"}."""
    articles = []
    for number, obj in read_jsonl(path, schema={"id": (str, int), "text": str}):
        title = obj.get("title", "")
        if not isinstance(title, str):
            raise BadRecord(path, number, f"field 'title' should be str, got {json.dumps(title)[:40]}")
        if not obj["text"].strip():
            raise BadRecord(path, number, "field 'text' is empty")
        articles.append((str(obj["id"]), title, obj["text"]))
    return articles


def load_passages(path: Path) -> list[dict]:
    """Passages {"id", "title", "text"} of a corpus file (.json leads or .jsonl[.gz] passages)."""
    jsonl = path.name.endswith((".jsonl", ".jsonl.gz"))
    articles = _articles_from_jsonl(path) if jsonl else _articles_from_json(path)
    return [{"id": f"{doc_id}#{n}", "title": title, "text": chunk}
            for doc_id, title, text in articles
            for n, chunk in enumerate(split_passages(text))]


# ---------------------------------------------------------------------------- index


# stemming matches word variants ("prizes", "prize"): +9% answer recall@5 on 1,000 NQ questions;
# a PyStemmer object is not thread-safe and executors run in a thread pool
_stemmer = Stemmer.Stemmer("english")
_stemmer_lock = threading.Lock()


def _tokens(texts: list[str]) -> list[list[str]]:
    with _stemmer_lock:
        return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer, return_ids=False,
                              show_progress=False)


@dataclass
class WikiIndex:
    retriever: bm25s.BM25
    passages: list[dict]     # aligned with the index rows
    key: str                 # the on-disk cache key
    built: bool              # True: built in this process; False: loaded from the disk cache
    seconds: float           # time to build or load

    def search(self, query: str, k: int = 5) -> list[tuple[str, str, float]]:
        """(title, text, score) of the top-k passages with a positive BM25 score, best first."""
        ids = self.retriever.get_tokens_ids(_tokens([query[:MAX_QUERY_CHARS]])[0])
        if not ids or k < 1:  # no indexed word in the query (e.g. only stopwords)
            return []
        scores = self.retriever.get_scores_from_ids(ids)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.passages[i]["title"], self.passages[i]["text"], float(scores[i]))
                for i in top if scores[i] > 0]


def default_corpus() -> Path:
    return embedded_path("wiki-leads-en")


def index_key(corpus: Path) -> str:
    """Changes with the corpus bytes, the passage settings, this code and the bm25s version."""
    code = file_fingerprint(Path(__file__))
    return file_fingerprint(corpus, f"words={PASSAGE_WORDS}|code={code}|bm25s={bm25s.__version__}")


def _build(corpus: Path, target: Path) -> None:
    passages = load_passages(corpus)
    if not passages:
        raise UserValueError(f"{corpus}: no passages to index")
    retriever = bm25s.BM25()
    # the title is indexed with each passage so a query naming the subject finds its article
    retriever.index(_tokens([f"{p['title']} {p['text']}" for p in passages]), show_progress=False)
    # write aside, then rename: a killed build never leaves a half-written cache entry
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    retriever.save(tmp, corpus=passages, show_progress=False)
    try:
        os.rename(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


_loaded: dict[tuple, WikiIndex] = {}


def load_index(corpus: str | Path | None = None) -> WikiIndex:
    """The index of `corpus` (default: the embedded Wikipedia leads): from memory, else from the
    disk cache, else built and cached."""
    path = Path(corpus).expanduser() if corpus else default_corpus()
    if not path.is_file():
        raise UserFileNotFound(f"WikiSearch corpus not found: {path}")
    st = path.stat()
    # in memory, trust path, size and mtime; hash the bytes only once per process
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo in _loaded:
        return _loaded[memo]
    t0 = time.perf_counter()
    key = index_key(path)
    target = cache_dir("wiki-index") / key
    built = not target.exists()
    if built:
        _build(path, target)
    retriever = bm25s.BM25.load(target, load_corpus=True)
    index = WikiIndex(retriever, retriever.corpus, key, built, time.perf_counter() - t0)
    _loaded[memo] = index
    return index


def search(query: str, k: int = 5, corpus: str | Path | None = None) -> list[tuple[str, str, float]]:
    """(passage title, passage text, BM25 score) of the top-k passages for `query`, best first."""
    return load_index(corpus).search(query, k)


# ---------------------------------------------------------------------------- executor


def snippet(text: str, chars: int) -> str:
    """The start of `text`, at most `chars` characters, cut at a word boundary."""
    text = " ".join(text.split())
    if len(text) <= chars:
        return text
    head = text[:chars + 1]  # one more: a space there means the word at the end is whole
    cut = head.rsplit(" ", 1)[0] if " " in head else text[:chars]
    return cut.rstrip(" ,;:")


def live_cache_path(query: str, language: str = "en") -> Path:
    """Where the live backend caches its response for `query`."""
    digest = hashlib.sha256(query.encode("utf-8")).hexdigest()[:32]
    return cache_dir("wiki-live", language) / f"{digest}.json"


def _live_lookup(query: str, language: str) -> str:
    """The summary of the Wikipedia page titled `query` ("" if none), cached on disk."""
    path = live_cache_path(query, language)
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))["summary"]
    try:
        import wikipediaapi
    except ImportError:
        raise ToolError("the live WikiSearch backend needs wikipedia-api: "
                        "pip install 'toolformer[live]' (or use backend='bm25')") from None
    wiki = wikipediaapi.Wikipedia(user_agent="toolformer/0.1 (Toolformer pipeline, WikiSearch tool)",
                                  language=language, timeout=10)
    page = wiki.page(query)
    summary = page.summary if page.exists() else ""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"query": query, "summary": summary}, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return summary


def make_executor(corpus: str | Path | None = None, snippet_chars: int = DEFAULT_SNIPPET_CHARS,
                  top: int = 1, backend: str = "bm25", language: str = "en") -> Executor:
    """executor(query, meta) -> snippet of the best passage (the `top` best, joined by " | ").

    The bm25 index is loaded here, not in the first call, so that call's timeout covers the
    search only.
    """
    if backend not in ("bm25", "live"):
        raise UserValueError(f"unknown WikiSearch backend {backend!r}; choose 'bm25' or 'live'")
    if snippet_chars < 1 or top < 1:
        raise UserValueError("snippet_chars and top must be positive")
    index = load_index(corpus) if backend == "bm25" else None

    def wikisearch(query: str, meta: Mapping) -> str:
        query = " ".join(query.split())
        if not query:
            raise ToolError("empty query")
        if len(query) > MAX_QUERY_CHARS:  # no search term is this long: say so rather than search a part
            raise ToolError(f"query too long ({len(query)} characters; at most {MAX_QUERY_CHARS})")
        if index is None:
            texts = [t for t in [_live_lookup(query, language)] if t]
        else:
            texts = [text for _, text, _ in index.search(query, top)]
        if not texts:
            raise ToolError("no results")
        return " | ".join(snippet(text, snippet_chars) for text in texts)

    return wikisearch


TOOL = register(Tool(
    name="WikiSearch",
    description="Searches Wikipedia and returns a short passage about the search term: "
                "facts about people, places, organisations, events and things.",
    examples=(
        "[WikiSearch(Albert Einstein) → Albert Einstein was a German-born theoretical physicist "
        "best known for developing the theory of relativity.]",
        "[WikiSearch(Rosetta Stone) → The Rosetta Stone is a stele of granodiorite inscribed with "
        "three versions of a decree issued in 196 BC.]",
        "[WikiSearch(Nile river length) → The Nile is a major north-flowing river in northeastern "
        "Africa. It is about 6,650 km long.]",
    ),
    tau_s=0.05, k=5, m=5, tau_f=1.0,   # paper defaults (Appendix A)
    make_executor=make_executor,
    heuristic=None,
    timeout_s=5.0,
    max_result_chars=1000,  # a safety bound; snippet_chars sets the real length
))
