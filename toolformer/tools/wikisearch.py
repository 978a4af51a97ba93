"""WikiSearch: BM25 over Wikipedia passages, returning a short snippet of the best passage.

The paper's WikiSearch is a BM25 retriever over the KILT Wikipedia dump (Schick et al. 2023,
§2). Here the default corpus is the embedded lead sections of 10,033 Wikipedia "vital articles"
(`wiki-leads-en`), cut into ~100-word passages on sentence boundaries; a user's own dump, a
.jsonl[.gz] or .parquet file of rows {"id"?, "title"?, "text"} (option corpus=FILE; skip_bad=true
skips and counts malformed rows), can replace it. Titles are indexed with every passage of their
article, so a query naming the subject finds its article.

The index is built once per corpus, streamed (memory bounded by one shard of passages and the
vocabulary, however large the dump), and cached on disk under cache_dir("wiki-index", key), key =
fingerprint of the corpus bytes, the passage and index settings and this file's code; a loaded
index memory-maps its scores and reads passages from disk, and is kept per process.

A document that is itself a Wikipedia article names it in meta["wiki_title"] (EXCLUDE_KEY): its
bm25 searches never return that article's passages, so a call made while curating it cannot
"predict" its next words by copying them (DESIGN §9). An optional live backend (`backend="live"`,
extra `toolformer[live]`) looks a query up as a Wikipedia page title through wikipedia-api,
caching every response on disk.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import bm25s
import numpy as np
import Stemmer
from tqdm import tqdm

from toolformer.assets import cache_dir, embedded_path, file_fingerprint
from toolformer.errors import UserFileNotFound, UserValueError
from toolformer.run.records import BadRecord, ReadStats, parquet_rows, read_jsonl
from toolformer.tools.base import Executor, Tool, ToolError, register

PASSAGE_WORDS = 100          # passages are cut to at most this many words, on sentence ends
DEFAULT_SNIPPET_CHARS = 250
MAX_QUERY_CHARS = 300        # calls are untrusted: bound the work one query can cause
EXCLUDE_KEY = "wiki_title"   # document meta: the article this document is, left out of its searches
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
    of entries {title, extract, ...}, as in the embedded wiki-leads-en (small: read whole)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserValueError(f"{path}:{err.lineno}: bad JSON: {err.msg}") from None
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


def _article(obj: dict, path: Path, number: int) -> tuple[str, str, str]:
    """(id, title, text) of one row {"id"?, "title"?, "text"} of a dump; the id defaults to the
    title, else the row number."""
    text, title = obj.get("text"), obj.get("title") or ""
    if "text" not in obj or text is None:
        raise BadRecord(path, number, "missing field 'text'")
    if not isinstance(text, str):
        raise BadRecord(path, number, f"field 'text' should be str, got {json.dumps(text)[:40]}")
    if not isinstance(title, str):
        raise BadRecord(path, number, f"field 'title' should be str, got {json.dumps(title)[:40]}")
    if not text.strip():
        raise BadRecord(path, number, "field 'text' is empty")
    doc_id = obj.get("id", title or number)
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise BadRecord(path, number, f"field 'id' should be str or int, got {json.dumps(doc_id)[:40]}")
    return str(doc_id), title, text


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """The id, title and text columns of a parquet dump, streamed."""
    import pyarrow.parquet as pq
    names = pq.ParquetFile(path).schema_arrow.names
    if "text" not in names:
        raise UserValueError(f"{path}: a parquet dump needs a 'text' column (it has {', '.join(names)})")
    return parquet_rows(path, [c for c in ("id", "title", "text") if c in names])


def iter_articles(path: Path, skip_bad: bool = False, stats: ReadStats | None = None) -> Iterator[tuple[str, str, str]]:
    """(id, title, text) of each article of a corpus file, streamed: .jsonl[.gz] or .parquet rows
    {"id"?, "title"?, "text"}, or a .json leads file. A bad row is a BadRecord naming file and
    row, or, with skip_bad, counted in `stats`."""
    if path.suffix == ".json":
        yield from _articles_from_json(path)
        return
    if not path.name.endswith((".jsonl", ".jsonl.gz", ".parquet")):
        raise UserValueError(f"{path}: a WikiSearch corpus is .jsonl, .jsonl.gz or .parquet rows of title/text "
                             f"(or a .json leads file)")
    stats = stats if stats is not None else ReadStats()
    rows = _parquet_rows(path) if path.suffix == ".parquet" else read_jsonl(path, skip_bad=skip_bad, stats=stats)
    for number, obj in rows:
        try:
            yield _article(obj, path, number)
        except BadRecord as err:
            if not skip_bad:
                raise
            stats.skip(err)


def iter_passages(path: Path, skip_bad: bool = False, stats: ReadStats | None = None) -> Iterator[dict]:
    """Passages {"id", "title", "text"} of a corpus file, streamed (see iter_articles)."""
    for doc_id, title, text in iter_articles(path, skip_bad, stats):
        for n, chunk in enumerate(split_passages(text)):
            yield {"id": f"{doc_id}#{n}", "title": title, "text": chunk}


def load_passages(path: Path) -> list[dict]:
    """Every passage of a corpus file, in memory (small corpora; the index streams them)."""
    return list(iter_passages(path))


# ---------------------------------------------------------------------------- index

# BM25 as bm25s scores it by default (Lucene's variant: idf = ln(1 + (N - df + .5) / (df + .5)),
# tf / (tf + k1 (1 - b + b |d| / avg |d|))), built from streamed counts so that memory stays
# bounded by one shard's counts and the vocabulary, not the corpus: pass 1 tokenises a few
# thousand passages at a time and writes their (passage, term, tf) counts, shard by shard, and
# their texts to disk while summing document frequencies; pass 2 turns each shard's counts into
# a term-major score matrix with the global idf and average length. A query sums the postings of its terms shard by shard, memory-mapped.
K1, B = 1.5, 0.75
SHARD_PASSAGES = 100_000   # passages per shard: what a build holds in memory at once
TOKENIZE_PASSAGES = 5_000  # passages tokenised together (their token lists are Python strings)
INDEX_FORMAT = 2           # 1: a whole bm25s index; 2: streamed shards

# stemming matches word variants ("prizes", "prize"): +9% answer recall@5 on 1,000 NQ questions;
# a PyStemmer object is not thread-safe and executors run in a thread pool
_stemmer = Stemmer.Stemmer("english")
_stemmer_lock = threading.Lock()


def _tokens(texts: list[str]) -> list[list[str]]:
    with _stemmer_lock:
        return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer, return_ids=False,
                              show_progress=False)


def _batched(items: Iterable, n: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class _Shard:
    start: int               # its first passage's row in the whole index
    size: int                # its passages
    data: np.ndarray         # BM25 score of each posting, term-major (CSC of passages × terms)
    indices: np.ndarray      # the posting's passage, relative to start
    indptr: np.ndarray       # postings of term t: indptr[t]:indptr[t + 1]

    def scores(self, term_ids: list[int]) -> np.ndarray:
        """The summed score of every passage of the shard, in query order (as bm25s sums)."""
        out = np.zeros(self.size, dtype=np.float32)
        for t in term_ids:
            s, e = self.indptr[t], self.indptr[t + 1]
            out[self.indices[s:e]] += self.data[s:e]  # a term's postings name each passage once
        return out


@dataclass
class WikiIndex:
    path: Path               # its cache folder
    meta: dict               # meta.json: sizes, skipped rows, settings
    vocab: dict[str, int]
    shards: list[_Shard]
    offsets: np.ndarray      # passage i is the JSON line at bytes offsets[i]:offsets[i + 1] of passages.jsonl
    key: str                 # the on-disk cache key
    built: bool              # True: built in this process; False: loaded from the disk cache
    seconds: float           # time to build or load

    def __post_init__(self):
        self._fd = os.open(self.path / "passages.jsonl", os.O_RDONLY)  # pread: thread-safe reads

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def passage(self, row: int) -> dict:
        """Passage {"id", "title", "text"} at an index row, read from disk."""
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        return json.loads(os.pread(self._fd, end - start, start))

    def ranked(self, query: str, k: int = 5, exclude_title: str | None = None) -> list[tuple[int, float]]:
        """(row, score) of the top-k passages with a positive BM25 score, best first (ties: lower
        row first); none of the article `exclude_title`."""
        tokens = _tokens([query[:MAX_QUERY_CHARS]])[0]
        ids = [self.vocab[t] for t in tokens if t in self.vocab]
        if not ids or k < 1:  # no indexed word in the query (e.g. only stopwords)
            return []
        scores = [shard.scores(ids) for shard in self.shards]
        want = k
        while True:
            hits, more = [], False
            for shard, s in zip(self.shards, scores):
                positive = np.flatnonzero(s > 0)
                if len(positive) > want:  # the best `want`, and every passage tied with the last of them
                    more = True
                    cut = np.partition(-s[positive], want - 1)[want - 1]
                    positive = positive[-s[positive] <= cut]
                hits += [(-float(s[i]), shard.start + int(i)) for i in positive]
            hits.sort()
            kept = [(row, -neg) for neg, row in hits
                    if exclude_title is None or self.passage(row)["title"] != exclude_title][:k]
            if len(kept) == k or not more:  # enough, or every positive passage was looked at
                return kept
            want *= 4  # the excluded article held some of the best: look deeper

    def search(self, query: str, k: int = 5, exclude_title: str | None = None) -> list[tuple[str, str, float]]:
        """(title, text, score) of the top-k passages with a positive BM25 score, best first;
        none of the article `exclude_title`."""
        return [(p["title"], p["text"], score)
                for row, score in self.ranked(query, k, exclude_title) for p in [self.passage(row)]]


def default_corpus() -> Path:
    return embedded_path("wiki-leads-en")


def index_key(corpus: Path) -> str:
    """Changes with the corpus bytes, the passage and index settings, this code and bm25s's
    tokeniser version."""
    code = file_fingerprint(Path(__file__))
    return file_fingerprint(corpus, f"words={PASSAGE_WORDS}|shard={SHARD_PASSAGES}|format={INDEX_FORMAT}"
                                    f"|code={code}|bm25s={bm25s.__version__}")


def _count_pass(corpus: Path, tmp: Path, skip_bad: bool, progress: bool) -> dict:
    """Pass 1: passages and offsets to disk, each shard's (passage, term, tf) counts to
    counts-<s>.npz, a few thousand passages in memory at a time; returns the vocabulary, document
    frequencies and sizes."""
    stats, vocab, shards = ReadStats(), {}, []
    df = np.zeros(1024, dtype=np.int64)
    total_length = offset = 0
    passages = iter_passages(corpus, skip_bad, stats)
    bar = tqdm(desc=f"indexing {corpus.name}", unit=" passages", disable=None if progress else True, file=sys.stderr)
    with open(tmp / "passages.jsonl", "wb") as texts, open(tmp / "offsets.bin", "wb") as offsets:
        offsets.write(np.int64(0).tobytes())
        while True:
            counts, lengths = [], []  # this shard's
            for part in _batched(itertools.islice(passages, SHARD_PASSAGES), TOKENIZE_PASSAGES):
                # the title is indexed with each passage so a query naming the subject finds its article
                tokens = _tokens([f"{p['title']} {p['text']}" for p in part])
                flat = list(itertools.chain.from_iterable(tokens))
                for t in dict.fromkeys(flat):  # new words get the next ids, in order of appearance
                    vocab.setdefault(t, len(vocab))
                sizes = [len(t) for t in tokens]
                docs = np.repeat(np.arange(len(lengths), len(lengths) + len(part), dtype=np.int64), sizes)
                # (passage, term) pairs with their counts: one key per pair, unique'd at once
                keys, tf = np.unique(docs << 32 | np.fromiter(map(vocab.__getitem__, flat), np.int64, len(flat)),
                                     return_counts=True)
                counts.append(((keys >> 32).astype(np.int32), (keys & 0xFFFFFFFF).astype(np.int32),
                               tf.astype(np.int32)))
                lengths += sizes
                lines = [json.dumps(p, ensure_ascii=False).encode("utf-8") + b"\n" for p in part]
                ends = offset + np.cumsum([len(line) for line in lines], dtype=np.int64)
                offset = int(ends[-1])
                texts.write(b"".join(lines))
                offsets.write(ends.tobytes())
                bar.update(len(part))
            if not lengths:
                break
            doc, term, tf = (np.concatenate(column) for column in zip(*counts))
            if len(vocab) > len(df):
                df = np.concatenate([df, np.zeros(max(len(vocab) - len(df), len(df)), dtype=np.int64)])
            df += np.bincount(term, minlength=len(df))
            np.savez(tmp / f"counts-{len(shards)}.npz", doc=doc, term=term, tf=tf,
                     lengths=np.asarray(lengths, dtype=np.int32))
            total_length += sum(lengths)
            shards.append(len(lengths))
    bar.close()
    return {"vocab": vocab, "df": df[:len(vocab)], "shards": shards, "total_length": total_length, "stats": stats}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _build(corpus: Path, target: Path, skip_bad: bool = False, progress: bool = False) -> None:
    for stale in target.parent.glob(f"{target.name}.tmp*"):  # left by a killed build
        pid = stale.name.rpartition(".tmp")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        counted = _count_pass(corpus, tmp, skip_bad, progress)
        n = sum(counted["shards"])
        if not n:
            raise UserValueError(f"{corpus}: no passages to index")
        df, vocab = counted["df"], counted["vocab"]
        avg_length = counted["total_length"] / n
        # computed as bm25s computes them: idf in float32, the rest in float64, the score in float32
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        for s in range(len(counted["shards"])):  # pass 2: each shard's scores, term-major
            with np.load(tmp / f"counts-{s}.npz") as c:
                doc, term, tf, lengths = c["doc"], c["term"], c["tf"], c["lengths"]
            score = np.empty(len(doc), dtype=np.float32)
            for i in range(0, len(doc), 1 << 20):  # float64 temporaries a million postings at a time
                d, t, f = doc[i:i + (1 << 20)], term[i:i + (1 << 20)], tf[i:i + (1 << 20)].astype(np.float64)
                norm = K1 * ((1 - B) + B * lengths[d] / avg_length)
                score[i:i + len(d)] = idf[t].astype(np.float64) * (f / (norm + f))
            order = np.argsort(term, kind="stable")  # postings are in passage order: term-major, then passage
            np.save(tmp / f"data-{s}.npy", score[order])
            np.save(tmp / f"indices-{s}.npy", doc[order])
            np.save(tmp / f"indptr-{s}.npy", np.concatenate([[0], np.cumsum(np.bincount(term, minlength=len(vocab)))]))
            (tmp / f"counts-{s}.npz").unlink()
        (tmp / "vocab.json").write_text(json.dumps(list(vocab), ensure_ascii=False), encoding="utf-8")
        stats = counted["stats"]
        meta = {"format": INDEX_FORMAT, "corpus": corpus.name, "passages": n, "shards": counted["shards"],
                "vocabulary": len(vocab), "avg_length": avg_length, "k1": K1, "b": B,
                "skipped_bad": stats.skipped_bad, "skipped_examples": stats.examples}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        # then rename: a killed build never leaves a half-written cache entry
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open(target: Path, key: str, built: bool, t0: float) -> WikiIndex:
    meta = json.loads((target / "meta.json").read_text(encoding="utf-8"))
    vocab = {t: i for i, t in enumerate(json.loads((target / "vocab.json").read_text(encoding="utf-8")))}
    shards, start = [], 0
    for s, size in enumerate(meta["shards"]):
        shards.append(_Shard(start, size, *(np.load(target / f"{name}-{s}.npy", mmap_mode="r")
                                            for name in ("data", "indices", "indptr"))))
        start += size
    offsets = np.memmap(target / "offsets.bin", dtype=np.int64, mode="r")
    return WikiIndex(target, meta, vocab, shards, offsets, key, built, time.perf_counter() - t0)


_loaded: dict[tuple, WikiIndex] = {}


def load_index(corpus: str | Path | None = None, skip_bad: bool = False, progress: bool = False) -> WikiIndex:
    """The index of `corpus` (default: the embedded Wikipedia leads): from memory, else from the
    disk cache, else built (streamed) and cached. A corpus with bad rows raises the first one's
    file:line error unless skip_bad (then they are skipped, and counted in index.meta)."""
    path = Path(corpus).expanduser() if corpus else default_corpus()
    if not path.is_file():
        raise UserFileNotFound(f"WikiSearch corpus not found: {path}")
    st = path.stat()
    # in memory, trust path, size and mtime; hash the bytes only once per process
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _loaded:
        t0 = time.perf_counter()
        key = index_key(path)
        target = cache_dir("wiki-index") / key
        built = not (target / "meta.json").exists()
        if built:
            _build(path, target, skip_bad, progress)
        _loaded[memo] = _open(target, key, built, t0)
    index = _loaded[memo]
    skipped = index.meta["skipped_bad"]
    if skipped and not skip_bad:  # built by a run that skipped them: this one did not ask to
        raise UserValueError(f"{index.meta['skipped_examples'][0]} ({skipped} bad rows in all; "
                             f"skip them with the option skip_bad=true)")
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
                  top: int = 1, backend: str = "bm25", language: str = "en", skip_bad: bool = False) -> Executor:
    """executor(query, meta) -> snippet of the best passage (the `top` best, joined by " | ").

    The bm25 index is loaded (or built) here, not in the first call, so that call's timeout
    covers the search only. skip_bad: skip a dump's malformed rows (counted in the index's meta).
    """
    if backend not in ("bm25", "live"):
        raise UserValueError(f"unknown WikiSearch backend {backend!r}; choose 'bm25' or 'live'")
    if snippet_chars < 1 or top < 1:
        raise UserValueError("snippet_chars and top must be positive")
    index = load_index(corpus, skip_bad, progress=True) if backend == "bm25" else None

    def wikisearch(query: str, meta: Mapping) -> str:
        query = " ".join(query.split())
        if not query:
            raise ToolError("empty query")
        if len(query) > MAX_QUERY_CHARS:  # no search term is this long: say so rather than search a part
            raise ToolError(f"query too long ({len(query)} characters; at most {MAX_QUERY_CHARS})")
        if index is None:
            texts = [t for t in [_live_lookup(query, language)] if t]
        else:
            texts = [text for _, text, _ in index.search(query, top, meta.get(EXCLUDE_KEY))]
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
    uses=("Question: who discovered penicillin?", "Question: what currency does japan use?",
          "Question: where was the battle of hastings fought?", "The river rises in the mountains of",
          "Question: when was the telephone invented?", "Question: when did the last season of the show air?"),
    tau_s=0.05, k=5, m=5, tau_f=1.0,   # paper defaults (Appendix A)
    make_executor=make_executor,
    heuristic=None,
    timeout_s=5.0,
    max_result_chars=1000,  # a safety bound; snippet_chars sets the real length
    meta_keys=(EXCLUDE_KEY,),  # a document's own article is left out: results depend on it
))
