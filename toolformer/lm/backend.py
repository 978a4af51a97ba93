"""The LM backend interface: the only door to model internals (DESIGN.md §6).

Stages and the decoder speak token ids and ask four things:
  next_token_logprobs  position scoring: log p(token | seq[:t]) of a few given tokens at every t
                       of a range (the start marker at each position of x, one pass)
  token_logprobs       continuation log-probs: log p(seq[t] | seq[:t]) at chosen t (the filter's losses)
  sample               seeded sampling from many prefixes until a stop string
  decode_session       incremental batched decoding: feed tokens, read next-token logits (the
                       tool decoder, which pauses rows for tool results)

A backend is registered by name in BACKENDS (lm-evaluation-harness style) and built with
`get_backend(model_ref, backend="hf")`. `toolformer.lm.hf` registers "hf"; a vLLM backend fits the
same methods (prompt logprobs, batched sampling with prefix caching, a stepping engine).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Sequence

import numpy as np
import torch

from toolformer.registry import Registry


@dataclass(frozen=True)
class Sample:
    text: str              # generated text, cut before the stop string
    stop: str | None       # the stop string that ended it; None: never closed (length cap)


class DecodeSession:
    """Batched incremental decoding over rows that all stay in one cache.

    Each `step` feeds every live row its pending tokens (the prompt at the first step, then the
    chosen token, plus any tool result the decoder inserts) and returns the next-token logits of
    each live row. Rows may get different numbers of tokens at one step; the backend keeps their
    positions apart, so a row never sees another row's padding.
    """

    def step(self, pending: Sequence[Sequence[int]]) -> torch.Tensor:
        """Feed pending[r] (≥ 1 token) to live row r; return float32 logits [live rows, vocab]."""
        raise NotImplementedError

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only these live rows (indices into the current live rows, in order); the rest are
        finished and leave the batch."""
        raise NotImplementedError


class LMBackend:
    """What the stages may ask of a language model. Token ids in, numpy/text/logits out."""

    start_ids: list[int]     # prepended to every sequence (lm.tokens.sequence_start)
    eos_ids: frozenset[int]  # tokens that end a generation

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        raise NotImplementedError

    def token_texts(self) -> list[str]:
        """The text of every token id of the vocabulary, decoded alone."""
        raise NotImplementedError

    def next_token_logprobs(self, sequences: list[list[int]], first: list[int], token_ids: list[int],
                            retain_cache: bool = False) -> list[np.ndarray]:
        """For each sequence s, an array [len(s) + 1 - first[s], len(token_ids)] with
        log p(token | s[:t]) for t = first[s] .. len(s). retain_cache: keep the pass's KV caches
        for the next `sample` call (its prefixes extend these sequences)."""
        raise NotImplementedError

    def release(self) -> None:
        """Drop KV caches kept by next_token_logprobs(retain_cache=True)."""

    def token_logprobs(self, sequences: list[list[int]], targets: list[list[int]]) -> list[np.ndarray]:
        """For each sequence s, log p(s[t] | s[:t]) for each t in targets[s] (t ≥ 1)."""
        raise NotImplementedError

    def sample(self, prefixes: list[list[int]], seeds: list[int], stop: Sequence[str],
               max_new_tokens: int = 32, temperature: float = 1.0) -> list[Sample]:
        """One sample per prefix, each with its own seed (reproducible whatever the batch); a
        sample ends at the first stop string or newline."""
        raise NotImplementedError

    def decode_session(self) -> DecodeSession:
        """A fresh incremental-decoding session (its first step feeds the prompts)."""
        raise NotImplementedError


# name -> factory(model_ref, **kwargs) -> LMBackend
BACKENDS: Registry[Callable[..., LMBackend]] = Registry("LM backend")


class TokenizerText:
    """The text methods of a backend that holds a transformers tokenizer in self.tokenizer."""
    tokenizer: object

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode_with_offsets(self, text: str):
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special)

    def token_texts(self) -> list[str]:
        return self._token_texts

    @cached_property
    def _token_texts(self) -> list[str]:
        return self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])


class TokenizerOnly(TokenizerText):
    """A tokenizer's text methods without a model's weights: for a stage that only cuts windows."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer


def get_backend(model_ref: str, backend: str = "hf", **kwargs) -> LMBackend:
    """The registered backend `backend` serving `model_ref` (kwargs: adapter, device, batch budgets)."""
    return BACKENDS.get(backend)(model_ref, **kwargs)
