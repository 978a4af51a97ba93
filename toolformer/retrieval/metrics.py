"""How well a retriever ranks the right tools: Recall@k, MRR and NDCG@10 with 95% bootstrap CIs,
and paired tests against BM25 on the same queries (McNemar on R@1, paired bootstrap on NDCG@10).

With a Gorilla tool set, a hit may also be judged by api_name (Gorilla's own retrieval figures
do so): the ranking is read as a ranking of api_names, each kept at its first place.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from toolformer.errors import UserValueError
from toolformer.retrieval.bm25 import BM25
from toolformer.retrieval.data import Query, QueryStats, ToolSet, load_queries, load_tool_set
from toolformer.retrieval.index import Retriever, ToolIndex, load_retriever, reciprocal_rank_fusion

if TYPE_CHECKING:
    from toolformer.config import RetrieverEvalSettings

CI_METRICS = ("recall@1", "recall@5", "ndcg@10")  # the figures given with a bootstrap CI
HYBRID = "hybrid"


def per_query_metrics(ranked: list[list[str]], relevant: list[frozenset[str]], ks=(1, 5, 10)) -> dict[str, np.ndarray]:
    """Per query: Recall@k (share of the relevant tools in the top k), reciprocal rank of the
    first relevant (0 if not ranked), NDCG@10 with binary gains."""
    out = {f"recall@{k}": np.array([len(rel & set(r[:k])) / len(rel) for r, rel in zip(ranked, relevant)])
           for k in ks}
    out["mrr"] = np.array([next((1 / i for i, name in enumerate(r, 1) if name in rel), 0.0)
                           for r, rel in zip(ranked, relevant)])
    out["ndcg@10"] = np.array([
        sum(1 / math.log2(i + 1) for i, name in enumerate(r[:10], 1) if name in rel)
        / sum(1 / math.log2(i + 1) for i in range(1, min(len(rel), 10) + 1)) for r, rel in zip(ranked, relevant)])
    return out


def ranking_metrics(ranked: list[list[str]], relevant: list[frozenset[str]], ks=(1, 5, 10)) -> dict:
    """The per-query metrics averaged over queries."""
    if not ranked:
        return {}
    return {k: round(float(v.mean()), 4) for k, v in per_query_metrics(ranked, relevant, ks).items()}


def bootstrap_indices(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """resamples × n query indices drawn with replacement (the same draws for every retriever,
    so that their intervals and differences are paired)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_ci(values: np.ndarray, draws: np.ndarray) -> list[float]:
    """95% percentile interval of the mean of `values` over the bootstrap draws."""
    means = values[draws].mean(1)
    return [round(float(np.quantile(means, 0.025)), 4), round(float(np.quantile(means, 0.975)), 4)]


def paired_bootstrap(first: np.ndarray, second: np.ndarray, draws: np.ndarray) -> dict:
    """Mean(second - first) with its 95% interval and a two-sided p-value: twice the share of
    resamples on the far side of 0 (at least 1 / resamples, never 0)."""
    diff = second - first
    means = diff[draws].mean(1)
    tail = min((means <= 0).mean(), (means >= 0).mean())
    return {"difference": round(float(diff.mean()), 4),
            "ci": [round(float(np.quantile(means, 0.025)), 4), round(float(np.quantile(means, 0.975)), 4)],
            "p_value": round(float(min(1.0, max(2 * tail, 1 / len(draws)))), 4)}


def by_label(ranked: list[list[str]], relevant: list[frozenset[str]], labels: dict[str, str]):
    """Rankings and gold sets of tool names read as rankings of their labels (e.g. api_name):
    each label keeps its first place."""
    def relabel(row: list[str]) -> list[str]:
        return list(dict.fromkeys(labels[name] for name in row))
    return [relabel(r) for r in ranked], [frozenset(labels[n] for n in rel) for rel in relevant]


def rankings(retriever: Retriever, tools: ToolSet, queries: list[Query], depth: int = 100) -> list[list[str]]:
    return [[name for name, _ in row] for row in ToolIndex(retriever, tools).search([q.text for q in queries], depth)]


def scored(ranked: list[list[str]], queries: list[Query], draws: np.ndarray | None, by_tool: bool = False,
           labels: dict[str, str] | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(figures, per-query values) of one ranking per query: the means, with bootstrap CIs when
    `draws` are given, R@1 per relevant tool with by_tool, and the same judged by label."""
    relevant = [q.relevant for q in queries]
    values = per_query_metrics(ranked, relevant)
    figures = {k: round(float(v.mean()), 4) for k, v in values.items()}
    if draws is not None:
        figures["ci"] = {k: bootstrap_ci(values[k], draws) for k in CI_METRICS}
    if by_tool:
        figures["recall@1_by_tool"] = {
            name: ranking_metrics([r for r, q in zip(ranked, queries) if name in q.relevant],
                                  [q.relevant for q in queries if name in q.relevant], ks=(1,))["recall@1"]
            for name in sorted({n for q in queries for n in q.relevant})}
    if labels:
        label_ranked, label_relevant = by_label(ranked, relevant, labels)
        label_values = per_query_metrics(label_ranked, label_relevant)
        figures["by_api_name"] = {k: round(float(v.mean()), 4) for k, v in label_values.items()}
        if draws is not None:
            figures["by_api_name"]["ci"] = {k: bootstrap_ci(label_values[k], draws) for k in CI_METRICS}
        values = {**values, **{f"api_name/{k}": v for k, v in label_values.items()}}
    return figures, values


def evaluate(retriever: Retriever, tools: ToolSet, queries: list[Query], depth: int = 100,
             by_tool: bool = False) -> dict:
    """Metrics of one retriever on `queries`; rankings are cut at `depth` (MRR is MRR@depth).
    by_tool adds Recall@1 over the queries of each relevant tool (for small tool sets)."""
    t0 = time.time()
    figures, _ = scored(rankings(retriever, tools, queries, depth), queries, None, by_tool)
    return {**figures, "seconds": round(time.time() - t0, 1)}


def api_name_labels(tools: ToolSet) -> dict[str, str] | None:
    """name -> api_name when the tool set has api_names that differ from its names, else None."""
    labels = tools.api_names
    return labels if any(k != v for k, v in labels.items()) else None


def versus(base: dict[str, np.ndarray], other: dict[str, np.ndarray], draws: np.ndarray) -> dict:
    """`other` against `base` on the same queries: McNemar (exact) on the R@1 hits with Newcombe's
    interval, and paired bootstraps of R@1 and NDCG@10; the same by api_name when given."""
    from toolformer.stats import paired
    out = {}
    for prefix in ("", "api_name/"):
        if f"{prefix}recall@1" not in base:
            continue
        hits = paired(list(base[f"{prefix}recall@1"] > 0), list(other[f"{prefix}recall@1"] > 0))
        out[prefix + "mcnemar_recall@1"] = {k: hits[k] for k in ("difference", "ci", "p_value", "only_first",
                                                                  "only_second")}
        for k in ("recall@1", "ndcg@10"):
            out[prefix + "bootstrap_" + k] = paired_bootstrap(base[prefix + k], other[prefix + k], draws)
    return out


def evaluate_retriever(s: RetrieverEvalSettings) -> dict:
    """The retriever `s.retriever`, BM25 beside it (and their fusion with --hybrid), on the queries
    the settings name (the held-out part when --holdout is given), with bootstrap CIs and paired
    tests against BM25; with runs, Recall@1 per tool as well. The top-level recall_at_1,
    recall_at_5 and ndcg_at_10 are the retriever's (the hybrid's with --hybrid), and so is
    api_name_recall_at_1 (None where the tools have no api_names that differ from their names)."""
    if bool(s.run) == bool(s.queries):
        raise UserValueError("give one of --queries FILE or --run NAME")
    if s.bootstrap < 1:
        raise UserValueError(f"--bootstrap needs at least 1 resample, got {s.bootstrap}")
    tools, repeated = load_tool_set(s.tools)
    stats = QueryStats()
    queries = load_queries(s, tools, s.holdout > 0, stats)
    if not queries:
        raise UserValueError("no queries to evaluate" + (f" ({stats.gold_not_in_tools} have a gold tool that is "
                                                         "not in the tool set)" if stats.gold_not_in_tools else ""))
    by_tool, labels = bool(s.run), api_name_labels(tools)
    draws = bootstrap_indices(len(queries), s.bootstrap, s.seed)
    ranked = {BM25.name: rankings(BM25, tools, queries)}
    seconds = {}
    if s.retriever != BM25.name:
        t0 = time.time()
        ranked[s.retriever] = rankings(load_retriever(s.retriever), tools, queries)
        seconds[s.retriever] = round(time.time() - t0, 1)
        if s.hybrid:
            ranked[HYBRID] = reciprocal_rank_fusion([ranked[s.retriever], ranked[BM25.name]])
    results, values = {}, {}
    for name in (BM25.name, *(n for n in ranked if n != BM25.name)):  # BM25 first: the others face it
        results[name], values[name] = scored(ranked[name], queries, draws, by_tool, labels)
        if name != BM25.name:
            results[name]["vs_bm25"] = versus(values[BM25.name], values[name], draws)
        if name in seconds:
            results[name]["seconds"] = seconds[name]
    headline = results[HYBRID if HYBRID in results else s.retriever]
    per_tool = dict(sorted(Counter(n for q in queries for n in q.relevant).items())) if by_tool else {}
    return {"queries": len(queries), "queries_per_tool": per_tool, "tools": len(tools), "repeated_tool_names": repeated,
            "gold_not_in_tools": stats.gold_not_in_tools, "gold_not_in_tools_examples": stats.gold_not_in_tools_examples,
            "skipped_bad": stats.skipped_bad, "skipped_examples": stats.examples,
            "skipped_at_document_start": stats.skipped_empty, "bootstrap": s.bootstrap, "results": results,
            "headline": HYBRID if HYBRID in results else s.retriever,
            "recall_at_1": headline["recall@1"], "recall_at_5": headline["recall@5"],
            "ndcg_at_10": headline["ndcg@10"], "ci": headline["ci"], "vs_bm25": headline.get("vs_bm25"),
            # Gorilla judges a hit by api_name (vgg11 for vgg13 is right): the targets do too
            "api_name_recall_at_1": headline.get("by_api_name", {}).get("recall@1")}
