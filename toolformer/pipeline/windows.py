"""Document windows: what a candidate's (window, token_index) refers to.

A window is a run of `size` tokens of " " + the document's text, cut by one tokenizer. Sampling
defines the windows of a run; filtering must rebuild exactly the same ones, so the sample stage
records its window size and a fingerprint of its tokenizer, and filtering takes both from that
record (WindowSpec.of_sampling) instead of from its own flags.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from toolformer.errors import UserValueError
from toolformer.lm.backend import TokenizerText
from toolformer.run.manifest import StageRecord
from toolformer.run.records import Document

DEFAULT_SIZE = 512


@dataclass
class Window:
    doc: Document
    index: int
    ids: list[int]              # tokens of x in this window
    char_starts: list[int]      # character offset in doc.text where each token's text begins
    text: str                   # the window's text (fills the prompt's Input slot)


def document_windows(lm: TokenizerText, doc: Document, size: int) -> list[Window]:
    """Tokenise " " + text once (so x reads naturally after "Output:") and cut it into windows."""
    ids, offsets = lm.encode_with_offsets(" " + doc.text)
    starts = [max(0, a - 1) for a, _ in offsets]
    ends = [max(0, b - 1) for _, b in offsets]
    windows = []
    for w, lo in enumerate(range(0, len(ids), size)):
        hi = min(lo + size, len(ids))
        text = doc.text[starts[lo]:ends[hi - 1]].strip()
        windows.append(Window(doc, w, ids[lo:hi], starts[lo:hi], text))
    return windows


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the tokenizer's vocabulary: equal fingerprints cut text into equal tokens.
    Stages take it from lm.loading.model_tokenizer, so that a driver whose chunks run on Ray
    workers records it without loading the model."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha1(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WindowSpec:
    size: int
    tokenizer: str | None  # None: sampled by a version that did not record it

    @classmethod
    def of_sampling(cls, sample: StageRecord | None) -> "WindowSpec | None":
        """The windows a sample stage cut (None when its record is gone)."""
        if sample is None or "window" not in sample.settings:
            return None
        return cls(sample.settings["window"], sample.settings.get("tokenizer"))

    def check_filter(self, run_name: str, window: int | None, tokenizer, model: str) -> None:
        """Refuse a --window or a model whose tokens would not line up with the sampled positions."""
        if window is not None and window != self.size:
            raise UserValueError(f"run {run_name} was sampled with --window {self.size}, and --window {window} "
                                 f"would misalign every call position: leave out --window (or give "
                                 f"{self.size}) to filter it")
        if self.tokenizer is not None and tokenizer_fingerprint(tokenizer) != self.tokenizer:
            raise UserValueError(f"model {model} has another tokenizer than the model that sampled run "
                                 f"{run_name}, so token positions would not line up: filter with a model "
                                 f"that shares the sampler's tokenizer")
