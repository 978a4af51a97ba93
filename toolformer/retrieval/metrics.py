"""How well a retriever ranks the right tools: Recall@k, MRR and NDCG@10, against BM25."""
from __future__ import annotations

import math
import time
from collections import Counter
from typing import TYPE_CHECKING

from toolformer.errors import UserValueError
from toolformer.retrieval.bm25 import BM25
from toolformer.retrieval.data import Query, ToolSet, load_queries, load_tool_set
from toolformer.retrieval.index import Retriever, ToolIndex, load_retriever
from toolformer.run.records import ReadStats

if TYPE_CHECKING:
    from toolformer.config import RetrieverEvalSettings


def ranking_metrics(ranked: list[list[str]], relevant: list[frozenset[str]], ks=(1, 5, 10)) -> dict:
    """Recall@k (share of the relevant tools in the top k), MRR (first relevant; 0 if not ranked)
    and NDCG@10 with binary gains, averaged over queries."""
    n = len(ranked)
    if n == 0:
        return {}
    out = {f"recall@{k}": sum(len(rel & set(r[:k])) / len(rel) for r, rel in zip(ranked, relevant)) / n
           for k in ks}
    out["mrr"] = sum(next((1 / i for i, name in enumerate(r, 1) if name in rel), 0.0)
                     for r, rel in zip(ranked, relevant)) / n
    ndcg = 0.0
    for r, rel in zip(ranked, relevant):
        dcg = sum(1 / math.log2(i + 1) for i, name in enumerate(r[:10], 1) if name in rel)
        ndcg += dcg / sum(1 / math.log2(i + 1) for i in range(1, min(len(rel), 10) + 1))
    out["ndcg@10"] = ndcg / n
    return {k: round(v, 4) for k, v in out.items()}


def evaluate(retriever: Retriever, tools: ToolSet, queries: list[Query], depth: int = 100,
             by_tool: bool = False) -> dict:
    """Metrics of one retriever on `queries`; rankings are cut at `depth` (MRR is MRR@depth).
    by_tool adds Recall@1 over the queries of each relevant tool (for small tool sets)."""
    t0 = time.time()
    ranked = [[name for name, _ in row] for row in ToolIndex(retriever, tools).search([q.text for q in queries], depth)]
    figures = ranking_metrics(ranked, [q.relevant for q in queries])
    if by_tool:
        figures["recall@1_by_tool"] = {
            name: ranking_metrics([r for r, q in zip(ranked, queries) if name in q.relevant],
                                  [q.relevant for q in queries if name in q.relevant], ks=(1,))["recall@1"]
            for name in sorted({n for q in queries for n in q.relevant})}
    return {**figures, "seconds": round(time.time() - t0, 1)}


def evaluate_retriever(s: RetrieverEvalSettings) -> dict:
    """The retriever `s.retriever`, and BM25 beside it, on the queries the settings name (the
    held-out part when --holdout is given); with runs, Recall@1 per tool as well."""
    if bool(s.run) == bool(s.queries):
        raise UserValueError("give one of --queries FILE or --run NAME")
    tools, repeated = load_tool_set(s.tools)
    stats = ReadStats()
    queries = load_queries(s, tools, s.holdout > 0, stats)
    if not queries:
        raise UserValueError("no queries to evaluate")
    by_tool = bool(s.run)
    results = {s.retriever: evaluate(load_retriever(s.retriever), tools, queries, by_tool=by_tool)}
    if s.retriever != BM25.name:
        results[BM25.name] = evaluate(BM25, tools, queries, by_tool=by_tool)
    per_tool = dict(sorted(Counter(n for q in queries for n in q.relevant).items())) if by_tool else {}
    return {"queries": len(queries), "queries_per_tool": per_tool, "tools": len(tools), "repeated_tool_names": repeated,
            "skipped_bad": stats.skipped_bad, "skipped_examples": stats.examples,
            "skipped_at_document_start": stats.skipped_empty, "results": results}
