"""What a retriever reads: tool sets, queries with their right tools, and training pairs.

A tool set comes from the registry or a JSONL file (ours or Gorilla APIBench's); queries from a
JSONL file or from the kept calls of curated runs (the text before a call -> its tool); pairs
from an HW3-style JSONL file or from queries. A fixed hash split holds queries out for testing.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from toolformer.config import WINDOW_CHARS, RetrieverData
from toolformer.errors import UserValueError
from toolformer.run import layout
from toolformer.run.records import SCORED, BadRecord, ReadStats, read_jsonl


@dataclass(frozen=True)
class ToolSet:
    names: tuple[str, ...]
    texts: tuple[str, ...]   # what the retriever embeds, one per name
    # per tool, the record's short fields (api_name, domain, functionality, description, dataset):
    # what synthetic queries are written from, and Gorilla's api_name that a hit may be judged by
    fields: tuple[dict, ...] = field(default=(), compare=False)

    def __post_init__(self):
        if len(set(self.names)) != len(self.names):
            raise UserValueError(f"tool names must be unique: {sorted(n for n in set(self.names) if self.names.count(n) > 1)}")

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def _position(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def text_of(self, name: str) -> str:
        return self.texts[self._position[name]]

    @cached_property
    def api_names(self) -> dict[str, str]:
        """name -> Gorilla's api_name (the name itself where the record has none)."""
        return {name: (f.get("api_name") if f else None) or name
                for name, f in zip(self.names, self.fields or [None] * len(self.names))}


@dataclass(frozen=True)
class Query:
    text: str
    relevant: frozenset[str]   # names of the right tools
    key: str                   # what the held-out split hashes (document id or query text)


@dataclass(frozen=True)
class Pair:
    """A training example: query, its positive text, given hard negatives, and every text relevant
    to the query (never used as one of its negatives)."""
    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    relevant: frozenset[str] = frozenset()


# ---------------------------------------------------------------------------- tool sets

def registry_tools() -> ToolSet:
    from toolformer.tools import all_tools
    tools = all_tools()
    return ToolSet(tuple(t.name for t in tools), tuple(t.retrieval_text() for t in tools))


def read_tool_set(path: str | Path) -> tuple[ToolSet, int]:
    """Tools from JSONL: `name` (or Gorilla's `api_call`) and `description`; `domain`,
    `functionality` and `examples` join the text when present. Returns (tools, repeated names).
    A `name` seen twice is an error naming both lines; an `api_call` seen again (Gorilla TF Hub
    lists one API up to 220 times, with different descriptions) keeps its first record, counted."""
    names, texts, fields, first_line, repeated = [], [], [], {}, 0
    for number, rec in read_jsonl(path):
        key = "name" if "name" in rec else "api_call"
        name = rec.get(key)
        if not isinstance(name, str) or not name.strip():
            raise BadRecord(path, number, "needs a string 'name' (or 'api_call')")
        if not isinstance(rec.get("description"), str):
            raise BadRecord(path, number, "needs a string 'description'")
        if name in first_line:
            if key == "name":
                raise BadRecord(path, number, f"tool name {name[:80]!r} repeats line {first_line[name]}")
            repeated += 1
            continue
        first_line[name] = number
        names.append(name)
        texts.append(_tool_text(name, rec))
        fields.append(_short_fields(name, rec))
    if not names:
        raise UserValueError(f"{path}: no tools")
    return ToolSet(tuple(names), tuple(texts), tuple(fields)), repeated


def _short_fields(name: str, rec: dict) -> dict:
    """The fields synthetic queries are written from; api_name defaults to the tool name."""
    out = {f: rec[f].strip() for f in ("api_name", "domain", "functionality", "description")
           if isinstance(rec.get(f), str) and rec[f].strip()}
    out.setdefault("api_name", name)
    performance = rec.get("performance")
    if isinstance(performance, dict) and isinstance(performance.get("dataset"), str):
        out["dataset"] = performance["dataset"]
    return out


def _tool_text(name: str, rec: dict) -> str:
    """Name, then the short fields, then the description: an encoder truncates at max_length
    tokens, and Gorilla descriptions run long, so what says most comes first."""
    text = name + "".join(f"\n{label}: {rec[f]}" for f, label in (
        ("api_name", "API name"), ("domain", "Domain"), ("functionality", "Functionality"))
        if isinstance(rec.get(f), str) and rec[f].strip() and rec[f] != name)
    text += f"\n{rec['description']}"
    if isinstance(rec.get("examples"), list):
        text += "\nExamples:\n" + "\n".join(map(str, rec["examples"]))
    return text


def load_tool_set(path: str | Path | None) -> tuple[ToolSet, int]:
    """The tools of a JSONL file, or the registered tools when no file is given."""
    return read_tool_set(path) if path else (registry_tools(), 0)


# ---------------------------------------------------------------------------- queries

def gorilla_instruction(code: str) -> str:
    """The user request of an APIBench record: the text between ###Instruction: and ###Output."""
    return code.split("###Output", 1)[0].replace("###Instruction:", "").strip()


@dataclass
class QueryStats(ReadStats):
    """ReadStats plus the queries left out because a gold tool is not in the tool set: they are
    counted and reported, never scored (a retriever cannot rank a tool it is not given)."""
    gold_not_in_tools: int = 0
    gold_not_in_tools_examples: list[str] = field(default_factory=list)  # first few "file:line: tool"


def read_queries(path: str | Path, tools: ToolSet, skip_bad: bool = False,
                 stats: QueryStats | None = None) -> list[Query]:
    """Queries from JSONL: {"query", "tool": name or [names]}, or APIBench {"code", "api_call"}.
    A gold name matches a tool's in any case. A query whose gold tool is not in `tools` is left out
    and counted in stats.gold_not_in_tools; a file that leaves no query is an error."""
    stats = stats if stats is not None else QueryStats()
    known, queries = set(tools.names), []
    by_lower = {n.lower(): n for n in tools.names}  # "calculator" is Calculator, as in `toolformer tool`
    for number, rec in read_jsonl(path, skip_bad=skip_bad, stats=stats):
        try:
            query = _query(path, number, rec)
        except BadRecord as err:
            if not skip_bad:
                raise
            stats.skip(err)
            continue
        query = replace(query, relevant=frozenset(g if g in known else by_lower.get(g.lower(), g)
                                                  for g in query.relevant))
        unknown = sorted(query.relevant - known)
        if unknown:
            stats.gold_not_in_tools += 1
            if len(stats.gold_not_in_tools_examples) < 10:
                stats.gold_not_in_tools_examples.append(f"{path}:{number}: {unknown[0][:80]}")
            continue
        queries.append(query)
    if not queries:  # as read_pairs and read_tool_set: a file that gives nothing is an error naming it
        if stats.gold_not_in_tools:
            names = ", ".join(tools.names[:10]) + (", …" if len(tools) > 10 else "")
            raise UserValueError(f"{path}: no query has its gold tool in the tool set ({names}); "
                                 f"e.g. {stats.gold_not_in_tools_examples[0]}")
        raise UserValueError(f"{path}: no queries" + (f" ({stats.skipped_bad} bad lines skipped)"
                                                      if stats.skipped_bad else ""))
    return queries


def _query(path: str | Path, number: int, rec: dict) -> Query:
    if "query" in rec:
        text, gold = rec["query"], rec.get("tool")
        gold = [gold] if isinstance(gold, str) else gold
    else:
        text, gold = gorilla_instruction(str(rec.get("code", ""))), [rec.get("api_call")]
    if not isinstance(text, str) or not text.strip():
        raise BadRecord(path, number, "needs a non-empty 'query' (or APIBench 'code')")
    if not isinstance(gold, list) or not gold or not all(isinstance(g, str) for g in gold):
        raise BadRecord(path, number, "needs 'tool': a name or a list of names (or 'api_call')")
    return Query(text, frozenset(gold), text)


def kept_call_queries(run_name: str, runs_dir: str | Path, tools: ToolSet, window_chars: int = WINDOW_CHARS,
                      min_usefulness: float | None = None, stats: ReadStats | None = None) -> list[Query]:
    """One query per (document, position) with a kept call: the text before it -> its tool(s).
    With min_usefulness, every scored call whose usefulness reaches it counts as kept instead (a
    run filtered at a high τ_f keeps too few calls to train on). A call at the very start of a
    document has no text before it to learn from: it is skipped and counted (stats.skipped_empty)."""
    from toolformer.run.manifest import Run
    run = Run(run_name, runs_dir)
    docs = {d.id: d.text for d in run.documents()}
    queries = []
    for (doc_id, position), names in sorted(_kept_calls(run, docs, tools, min_usefulness).items()):
        text = docs[doc_id][max(0, position - window_chars):position].strip()
        if not text:
            if stats is not None:
                stats.skipped_empty += 1
            continue
        queries.append(Query(text, frozenset(names), f"{run_name}/{doc_id}"))
    return queries


def _kept_calls(run, docs: dict[str, str], tools: ToolSet,
                min_usefulness: float | None) -> dict[tuple[str, int], set[str]]:
    """(document id, position) -> the names of the tools called there and kept."""
    by_name = {n.lower(): n for n in tools.names}
    relevant: dict[tuple[str, int], set[str]] = {}
    for path in sorted(run.path.glob(f"*/{layout.SCORED}")):
        for number, rec in read_jsonl(path, SCORED):
            chosen = rec["kept"] if min_usefulness is None else (rec["usefulness"] is not None
                                                                 and rec["usefulness"] >= min_usefulness)
            if not chosen:
                continue
            if rec["doc_id"] not in docs:
                raise BadRecord(path, number, f"doc_id {rec['doc_id']!r} is not in {run.documents_path}")
            if not 0 <= rec["position"] <= len(docs[rec["doc_id"]]):
                raise BadRecord(path, number, f"position {rec['position']} is outside the document")
            if rec["tool"].lower() not in by_name:
                raise BadRecord(path, number, f"tool {rec['tool']!r} is not in the tool set")
            relevant.setdefault((rec["doc_id"], rec["position"]), set()).add(by_name[rec["tool"].lower()])
    return relevant


def load_queries(s: RetrieverData, tools: ToolSet, held_out: bool, stats: QueryStats) -> list[Query]:
    """The queries the settings name (the kept calls of --run runs, or a --queries file), on one
    side of the --holdout split, sampled down to --limit."""
    if s.run:
        queries = [q for run in s.run
                   for q in kept_call_queries(run, s.runs_dir, tools, s.window_chars, s.min_usefulness, stats)]
    else:
        queries = read_queries(s.queries, tools, s.skip_bad, stats)
    return subsample(split(queries, s.holdout, held_out), s.limit, s.seed)


def split(queries: list[Query], holdout: float, held_out: bool) -> list[Query]:
    """A fixed split by hash of the key: the same document or query text always falls on one side."""
    if holdout <= 0:
        return queries if not held_out else []
    def bucket(key: str) -> float:
        return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 16 ** 8
    return [q for q in queries if (bucket(q.key) < holdout) == held_out]


def subsample(items: list, limit: int | None, seed: int) -> list:
    if limit is None or limit >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


# ---------------------------------------------------------------------------- training pairs

def read_pairs(path: str | Path) -> list[Pair]:
    """Training pairs from JSONL {"query", "positive", "negatives": [...]} (HW3 style, texts)."""
    pairs = []
    for number, rec in read_jsonl(path):
        query, positive, negatives = rec.get("query"), rec.get("positive"), rec.get("negatives", [])
        if not isinstance(query, str) or not query.strip():
            raise BadRecord(path, number, "needs a non-empty string 'query'")
        if not isinstance(positive, str) or not positive.strip():
            raise BadRecord(path, number, "needs a non-empty string 'positive'")
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            raise BadRecord(path, number, "'negatives' should be a list of strings")
        if positive in negatives:
            raise BadRecord(path, number, "the positive is also listed as a negative")
        pairs.append(Pair(query, positive, tuple(negatives), frozenset([positive])))
    if not pairs:
        raise UserValueError(f"{path}: no pairs")
    return pairs


def query_pairs(queries: list[Query], tools: ToolSet) -> list[Pair]:
    """One pair per (query, relevant tool); the query's other relevant tools are never negatives."""
    pairs = []
    for q in queries:
        relevant = frozenset(tools.text_of(n) for n in q.relevant)
        pairs += [Pair(q.text, tools.text_of(n), (), relevant) for n in sorted(q.relevant)]
    return pairs
