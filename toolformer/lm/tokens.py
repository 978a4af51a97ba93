"""Token-level rules every stage must agree on, each written once.

  sequence_start    the token every sequence begins with, in finetuning, scoring and decoding
  start_marker_ids  the first token of a call's start marker (sampling positions, the decoding trigger)
  marker_token_ids  every token that begins the start marker (banned when tools are off)
  padded            token rows as one padded batch with its attention mask
  left_positions    position ids of left-padded rows that continue a sequence
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:
    from toolformer.lm.backend import LMBackend


def sequence_start(tokenizer) -> list[int]:
    """BOS, or EOS for models without one (SmolLM2): a fixed first token, so that the first real
    token is predicted from a context, as in pretraining."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return [start]


def start_marker_ids(lm: LMBackend, start: str) -> list[int]:
    """First token of the start marker (a call syntax's `start`) in both spellings, after a space
    and not (" [", "[")."""
    return list(dict.fromkeys(lm.encode(s)[0] for s in (" " + start, start)))


# per backend, weakly: a memo keyed on the backend itself (an lru_cache) kept up to 8 models alive,
# 540 MB each, in a process that evaluates several adapters (the demo)
_MARKER_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def marker_token_ids(lm: LMBackend, start: str) -> list[int]:
    """Every token that begins the start marker (" [", "[", "[[", ...): p(<API>) = 0 means all of them."""
    by_start = _MARKER_IDS.setdefault(lm, {})
    if start not in by_start:
        by_start[start] = [i for i, t in enumerate(lm.token_texts())
                           if (s := t.lstrip()) and (s.startswith(start) or start.startswith(s))]
    return by_start[start]


def padded(rows: Sequence[Sequence[int]], value: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask): the rows in one [len(rows), longest] long tensor, filled with `value` after
    (or, left=True, before) each row's tokens, and the 0/1 mask of the real tokens."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        cols = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, cols] = torch.tensor(row, dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask


def left_positions(mask: torch.Tensor, first: Sequence[int]) -> torch.Tensor:
    """Position ids of left-padded rows (mask from `padded(..., left=True)`) whose real tokens
    continue a sequence at position first[row]; pads get 0 (they are never attended to)."""
    start = torch.as_tensor(list(first), dtype=torch.long)[:, None]
    return (mask.cumsum(-1) - 1 + start) * mask
