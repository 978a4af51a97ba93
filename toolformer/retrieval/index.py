"""Searching a tool set: exact dot products over cached tool embeddings, an IVF index for large
tool sets, or BM25; and `rank_tools`, the one entry point the pipeline and the decoder use."""
from __future__ import annotations

import hashlib
import math
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import numpy as np

from toolformer.assets import cache_dir
from toolformer.lm.loading import ModelNotFound
from toolformer.retrieval.bm25 import BM25
from toolformer.retrieval.data import ToolSet
from toolformer.retrieval.encoders import Encoder, load_encoder

if TYPE_CHECKING:
    from toolformer.tools import Tool

ANN_MIN_TOOLS = 4096      # from this many tools on, search an IVF index instead of every vector

Retriever = Encoder | type[BM25]  # an embedder, or the BM25 class (it indexes per tool set)


@lru_cache(maxsize=4)
def load_retriever(ref: str) -> Retriever:
    """BM25 for "bm25", else the embedder `ref` names (see load_encoder)."""
    if ref == BM25.name:
        return BM25
    try:
        return load_encoder(ref)
    except ModelNotFound as err:  # say which flag named it: the message alone speaks of a model
        raise ModelNotFound(f"tool retriever {ref!r}: expected 'bm25', a folder `toolformer retriever train` "
                            f"wrote, or an embedder ({err})") from None


def tool_embeddings(encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
    """Embeddings of tool texts, cached on disk by encoder weights + texts."""
    if encoder.fingerprint is None:
        return encoder.encode(texts, is_query=False)
    key = hashlib.sha256((encoder.fingerprint + "\0" + "\0".join(texts)).encode()).hexdigest()[:24]
    path = cache_dir("retriever") / f"{key}.npy"
    if path.exists():
        return np.load(path)
    vectors = encoder.encode(texts, is_query=False)
    tmp = path.with_name(f"{key}.tmp{os.getpid()}.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k largest entries per row, best first."""
    k = min(k, scores.shape[1])
    idx = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part = np.take_along_axis(scores, idx, 1)
    order = np.argsort(-part, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(part, order, 1)


RRF_K = 60  # reciprocal rank fusion constant (Cormack et al. 2009)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Sequence[str]]], k: int = RRF_K) -> list[list[str]]:
    """Per query, the names of several rankings (retrievers × queries × names, best first) fused by
    the sum of 1 / (k + rank); a name absent from a ranking adds nothing from it. Ties keep the
    order of first appearance (the first retriever's order)."""
    fused = []
    for rows in zip(*rankings):
        score: dict[str, float] = {}
        for row in rows:
            for rank, name in enumerate(row, 1):
                score[name] = score.get(name, 0.0) + 1 / (k + rank)
        fused.append(sorted(score, key=lambda n: -score[n]))  # stable: ties keep first appearance
    return fused


class IVFIndex:
    """Approximate search for large tool sets: spherical k-means cells; a query scores only the
    vectors of its n_probe nearest cells."""

    def __init__(self, vectors: np.ndarray, n_lists: int | None = None, n_probe: int = 8,
                 iterations: int = 10, seed: int = 0):
        self.vectors, self.n_probe = vectors, n_probe
        n_lists = min(len(vectors), n_lists or int(math.sqrt(len(vectors))))
        rng = np.random.default_rng(seed)
        self.centroids = vectors[rng.choice(len(vectors), n_lists, replace=False)].copy()
        for _ in range(iterations):
            assign = np.argmax(vectors @ self.centroids.T, axis=1)
            for c in range(n_lists):
                members = vectors[assign == c]
                if len(members):  # an empty cell keeps its old centroid
                    mean = members.sum(0)
                    self.centroids[c] = mean / max(np.linalg.norm(mean), 1e-12)
        assign = np.argmax(vectors @ self.centroids.T, axis=1)
        self.lists = [np.flatnonzero(assign == c) for c in range(n_lists)]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        probes, _ = top_k(queries @ self.centroids.T, self.n_probe)
        ids = np.full((len(queries), k), -1)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for row, (q, cells) in enumerate(zip(queries, probes)):
            candidates = np.concatenate([self.lists[c] for c in cells])
            idx, s = top_k((self.vectors[candidates] @ q)[None], k)
            ids[row, :idx.shape[1]], scores[row, :idx.shape[1]] = candidates[idx[0]], s[0]
        return ids, scores


class ToolIndex:
    """A tool set prepared for one retriever: embedded (exact or IVF) or BM25-indexed."""

    def __init__(self, retriever: Retriever, tools: ToolSet, ann_min_tools: int = ANN_MIN_TOOLS):
        self.retriever, self.tools = retriever, tools
        if retriever is BM25:
            self.bm25 = BM25(tools.texts)
        else:
            self.vectors = tool_embeddings(retriever, tools.texts)
            self.ivf = IVFIndex(self.vectors) if len(tools) >= ann_min_tools else None

    def search(self, texts: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """The k best tools per text as (name, score), best first."""
        if self.retriever is BM25:
            ids, scores = top_k(self.bm25.scores(texts), k)
        else:
            queries = self.retriever.encode(texts, is_query=True)
            ids, scores = self.ivf.search(queries, k) if self.ivf else top_k(queries @ self.vectors.T, k)
        return [[(self.tools.names[i], float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
                for row_ids, row_scores in zip(ids, scores)]


@lru_cache(maxsize=8)
def _index(retriever_ref: str, names: tuple[str, ...], texts: tuple[str, ...]) -> ToolIndex:
    return ToolIndex(load_retriever(retriever_ref), ToolSet(names, texts))


def rank_tools(retriever_ref: str, texts: list[str], tools: list[Tool], k: int) -> list[list[str]]:
    """The names of the k best `tools` for each text; retriever and index load once per process."""
    index = _index(retriever_ref, tuple(t.name for t in tools), tuple(t.retrieval_text() for t in tools))
    return [[name for name, _ in row] for row in index.search(texts, k)]
