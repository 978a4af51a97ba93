"""Tool retriever: rank tools for a text by embedding similarity, trained on our own kept calls.

    toolformer retriever train  --run NAME | --queries FILE --tools FILE | --pairs FILE  --out DIR
    toolformer retriever train  --tools API.jsonl --synthesize N --out DIR   (from the documents alone)
    toolformer retriever eval   [--tools FILE] --queries FILE | --run NAME  [--retriever REF] [--hybrid]
    toolformer retriever search "what is 23 times 19" [--tools FILE] [--retriever REF]

A retriever REF is "bm25", a sentence-transformers model (default: the embedded all-MiniLM-L6-v2),
a causal LM used as an embedder (e.g. the embedded "smollm2-135m-instruct"), or a folder written by
`train` (weights plus retriever.json saying encoder type, pooling and query instruction).
"""
from __future__ import annotations

import sys

from toolformer.cli.flags import add_flags, from_args
from toolformer.config import RetrieverEvalSettings, RetrieverSearchSettings, RetrieverTrainSettings

METRIC_COLUMNS = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")


def _eprint(*a) -> None:
    print(*a, file=sys.stderr)


def cmd_train(args) -> dict:
    from toolformer.retrieval.train import train_retriever
    return train_retriever(from_args(RetrieverTrainSettings, args), log=_eprint)


def cmd_eval(args) -> dict:
    from toolformer.retrieval.metrics import evaluate_retriever
    figures = evaluate_retriever(from_args(RetrieverEvalSettings, args))
    print(_eval_summary(figures))
    print(f"{'retriever':<40}" + "".join(f"{c:>10}" for c in METRIC_COLUMNS) + "   R@1 95% CI     vs BM25 (McNemar p)")
    for name, m in figures["results"].items():
        by_tool = m.get("recall@1_by_tool")
        low, high = m["ci"]["recall@1"]
        test = (m.get("vs_bm25") or {}).get("mcnemar_recall@1")
        print(f"{name[-40:]:<40}" + "".join(f"{m[c]:>10.4f}" for c in METRIC_COLUMNS) + f"   [{low:.3f}, {high:.3f}]"
              + (f"   {test['difference']:+.3f} (p {test['p_value']:.2g})" if test else "")
              + (f"   by api_name R@1 {m['by_api_name']['recall@1']:.4f}" if "by_api_name" in m else "")
              + ("  R@1 by tool: " + ", ".join(f"{t} {v:.2f}" for t, v in by_tool.items()) if by_tool else ""))
    return figures


def _eval_summary(figures: dict) -> str:
    """One line: how many queries (per tool, for runs) and tools, and what was skipped."""
    per_tool, repeated = figures["queries_per_tool"], figures["repeated_tool_names"]
    skipped_bad, at_start = figures["skipped_bad"], figures["skipped_at_document_start"]
    missing = figures["gold_not_in_tools"]
    return (f"{figures['queries']} queries"
            + (f" ({', '.join(f'{n} {c}' for n, c in per_tool.items())})" if per_tool else "")
            + f", {figures['tools']} tools" + (f" ({repeated} repeated names merged)" if repeated else "")
            + (f", {missing} queries left out: their gold tool is not in the tool set" if missing else "")
            + (f", {skipped_bad} bad lines skipped" if skipped_bad else "")
            + (f", {at_start} calls at a document start skipped (no text before them)" if at_start else ""))


def cmd_search(args) -> dict:
    from toolformer.retrieval.data import load_tool_set
    from toolformer.retrieval.index import ToolIndex, load_retriever
    s = from_args(RetrieverSearchSettings, args)
    tools, _ = load_tool_set(s.tools)
    ranked = ToolIndex(load_retriever(s.retriever), tools).search([s.text], s.k)[0]
    for rank, (name, score) in enumerate(ranked, 1):
        print(f"{rank:>3}  {score:8.4f}  {name}")
    return {"text": s.text, "ranked": [{"tool": n, "score": round(score, 4)} for n, score in ranked]}


def add_commands(sub, command) -> None:
    parser = sub.add_parser("retriever", help="embedding-based tool retriever: train, eval, search",
                            description=__doc__.splitlines()[0])
    rsub = parser.add_subparsers(dest="retriever_command", required=True, metavar="ACTION")
    for name, func, settings, help_text in (
            ("train", cmd_train, RetrieverTrainSettings, "train a retriever with InfoNCE and save it to --out"),
            ("eval", cmd_eval, RetrieverEvalSettings, "Recall@1/5/10, MRR, NDCG@10 of a retriever and of BM25"),
            ("search", cmd_search, RetrieverSearchSettings, "rank the tools for one text")):
        p = command(rsub, name, func, help_text)
        add_flags(p, settings)
