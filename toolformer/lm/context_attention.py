"""Attention for decoding many rows that continue a few long contexts, each context held once.

Sampling draws m calls at each of k positions of a window, and every row continues the
window's scoring pass: P(x) + x_{1:i-1}. Copying that KV cache into each row makes every
decoding step read it once per row, which on a CPU costs more than the model's matmuls. Here a
context's keys and values stay where the scoring pass left them; its rows sit next to each other
in the batch, and a layer attends, per context, from all its rows' queries at once to the
context (each row masked to its own prefix length) and to each row's own tokens (the call
opening and what it generated), under one softmax. Exact: the same scores and the same softmax
as attention over each row's whole sequence, computed in another order.

The model runs with `attention(model)`, which registers this function with transformers and
selects it while decoding; the rows' layout travels as the forward pass's `contexts` argument.
"""
from __future__ import annotations

from contextlib import contextmanager
import torch

NAME = "toolformer_contexts"


class RowLayout:
    """Which context each row of a decoding batch continues, and how much of it, and how many own
    tokens (in its KV buffer) it has. Every step feeds one token per row."""

    def __init__(self, contexts: list[list[tuple[torch.Tensor, torch.Tensor]]], dtype: torch.dtype):
        self.contexts, self.dtype = contexts, dtype  # per context, per layer (keys, values) [1, kv, L, d]
        self.groups: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.own_bias = torch.zeros(0)

    def prepare(self, context: torch.Tensor, seen: torch.Tensor, own: torch.Tensor, heads_per_kv: int) -> None:
        """Masks of a step: row r continues context[r] (-1: none), sees its first seen[r] positions,
        and its own tokens so far, this step's included: own[r]. A context's mask has one line per
        row and query head sharing a kv head."""
        self.groups = []
        for index in context.unique().tolist():
            if index < 0 or not self.contexts[index][0][0].shape[-2]:
                continue  # rows that continue nothing
            rows = (context == index).nonzero()[:, 0]
            length = self.contexts[index][0][0].shape[-2]
            visible = torch.arange(length, device=seen.device)[None, :] < seen[rows, None]
            bias = _additive(visible.repeat_interleave(heads_per_kv, 0), self.dtype)[None, None]
            self.groups.append((index, rows, bias))
        visible = torch.arange(int(own.max()), device=own.device)[None, :] < own[:, None]
        self.own_bias = _additive(visible, torch.float32)[:, None, None, None]  # [rows, 1, 1, 1, T]


def _additive(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill_(~visible, float("-inf"))


def _attend(query, key, value, bias, scaling) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax(q·kᵀ·scaling + bias)·v, logsumexp of the scores) for [1, heads, n, d] queries."""
    if query.device.type == "cpu":  # the fused kernel: no [n, L] score matrix in memory
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, False, attn_mask=bias, scale=scaling)[:2]
        return out, lse
    scores = (query @ key.transpose(-1, -2)).float() * scaling + bias
    return scores.softmax(-1).to(value.dtype) @ value, scores.logsumexp(-1)


def contexts_attention(module, query, key, value, attention_mask, scaling, dropout=0.0,
                       contexts: RowLayout | None = None, **kwargs):
    """query [rows, heads, 1, d]; key, value: the rows' own tokens [rows, kv_heads, T, d].
    Returns [rows, 1, heads, d] as transformers' attention functions do.

    Per context, its rows' queries attend to the context's keys as one long query sequence (rows
    × heads sharing a kv head), giving an output and a log-sum-exp per query; each row's query
    attends to its own keys likewise; the two halves of one softmax are merged by their
    log-sum-exps."""
    rows, heads, _, d = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads  # query heads per kv head
    mine = query.reshape(rows, kv_heads, group, d)
    own_scores = (mine @ key.transpose(2, 3)).float() * scaling
    own_scores = (own_scores[:, :, :, None] + contexts.own_bias).view(rows, kv_heads, group, -1)
    own_lse = own_scores.logsumexp(-1)
    out = own_scores.softmax(-1).to(value.dtype) @ value
    for index, members, bias in contexts.groups:
        n = len(members)
        keys, values = contexts.contexts[index][module.layer_idx]
        stacked = mine[members].transpose(0, 1).reshape(1, kv_heads, n * group, d)
        ctx_out, ctx_lse = _attend(stacked, keys, values, bias, scaling)
        ctx_out = ctx_out.view(kv_heads, n, group, d).transpose(0, 1).float()
        ctx_lse = ctx_lse.view(kv_heads, n, group).transpose(0, 1).float()
        lse = torch.logaddexp(ctx_lse, own_lse[members])
        out[members] = (ctx_out * (ctx_lse - lse).exp()[..., None]
                        + out[members].float() * (own_lse[members] - lse).exp()[..., None]).to(out.dtype)
    return out.view(rows, heads, 1, d).transpose(1, 2), None


@contextmanager
def attention(model):
    """Run `model` with contexts_attention (its forward then needs `contexts=`)."""
    from transformers import AttentionInterface
    AttentionInterface.register(NAME, contexts_attention)
    before = model.config._attn_implementation
    model.config._attn_implementation = NAME
    try:
        yield
    finally:
        model.config._attn_implementation = before
