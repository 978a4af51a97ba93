"""Tool retrieval: rank tools for a text by embedding similarity, trained on our own kept calls.

    data.py      tool sets, queries (files or the kept calls of runs), training pairs, the split
    encoders.py  sentence-transformers and causal-LM embedders; load and save a retriever
    bm25.py      the lexical baseline
    index.py     exact / IVF search over cached tool embeddings, reciprocal rank fusion; rank_tools
    metrics.py   Recall@k, MRR, NDCG@10 with bootstrap CIs; paired tests against BM25
    synthesize.py  synthetic queries from API documents alone (LM or templates), round-trip filter
    train.py     InfoNCE with in-batch and re-mined hard negatives; --synthesize training

Embeddings are L2-normalised and compared by dot product (= cosine).
"""
from toolformer.retrieval.index import rank_tools

__all__ = ["rank_tools"]
