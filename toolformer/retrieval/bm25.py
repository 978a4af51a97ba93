"""The lexical baseline: BM25 (bm25s) over the whole tool set."""
from __future__ import annotations

from typing import Sequence

import numpy as np


class BM25:
    name = "bm25"  # the retriever reference that selects it

    def __init__(self, texts: Sequence[str]):
        import bm25s
        self.size = len(texts)
        self.index = bm25s.BM25()
        self.index.index(bm25s.tokenize(list(texts), stopwords="en", show_progress=False), show_progress=False)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        import bm25s
        tokens = bm25s.tokenize(list(queries), stopwords="en", return_ids=False, show_progress=False)
        # a query of stopwords or punctuation only ("is it?") has no terms: it scores 0 everywhere
        return np.stack([self.index.get_scores(t) if t else np.zeros(self.size) for t in tokens]).astype(np.float32)
