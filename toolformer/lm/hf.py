"""The transformers backend: `HFBackend` implements lm.backend.LMBackend on CPU or GPU.

Speed, not shortcuts: sequences are sorted by length and packed into padded batches under a
token budget; the LM head (a fifth of a forward pass for a 135M model) runs only at the rows
whose logits are needed; the KV cache of a scoring pass is kept so that sampling at position i
reuses the computed prefix P(x) + x_{1:i-1} instead of encoding it again for every sample; a
long prefix that every sequence of a call shares (the tool's few-shot prompt) is encoded once and
its KV cache kept for the next calls, as vLLM's automatic prefix caching does.
"""
from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np
import torch

from toolformer.lm.backend import BACKENDS, DecodeSession, LMBackend, Sample
from toolformer.lm.tokens import left_positions, padded, sequence_start


def _length_batches(lengths: Sequence[int], max_tokens: int, max_rows: int = 256) -> list[list[int]]:
    """Indices grouped into batches, sorted by length, with rows × longest ≤ max_tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, current = [], []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > max_tokens or len(current) >= max_rows:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _common_prefix(seqs: Sequence[Sequence[int]], limit: int) -> int:
    """Length of the longest prefix all sequences share, at most `limit`."""
    n = min(limit, *(len(s) for s in seqs))
    first = np.asarray(seqs[0][:n])
    for s in seqs[1:]:
        differ = np.flatnonzero(np.asarray(s[:n]) != first[:n])
        n = int(differ[0]) if differ.size else n
    return n


def _cache_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer, each [batch, kv_heads, length, head_dim]."""
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


class HFBackend(LMBackend):
    def __init__(self, model, tokenizer, max_batch_tokens: int | None = None,
                 max_sample_tokens: int | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.device = next(self.model.parameters()).device
        cpu = self.device.type == "cpu"
        # token budgets per forward batch: small on CPU (cache-friendly), large on GPU
        self.max_batch_tokens = max_batch_tokens or (4096 if cpu else 65536)
        self.max_sample_tokens = max_sample_tokens or (65536 if cpu else 1 << 20)
        tok = self.tokenizer
        self.start_ids = sequence_start(tok)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = getattr(model.generation_config, "eos_token_id", None) or tok.eos_token_id
        self.eos_ids = frozenset(eos if isinstance(eos, list) else [eos])
        self._retained: list[tuple[np.ndarray, list[tuple[torch.Tensor, torch.Tensor]]]] = []
        # shared prefixes already encoded: token tuple -> KV layers of one row (weights are frozen)
        self._prefix_kv: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = {}

    @classmethod
    def from_ref(cls, model_ref: str | None, adapter: str | None = None, device: str | None = None,
                 **kwargs) -> "HFBackend":
        """The model (with a LoRA adapter merged in, if given) as loading.load_model resolves it."""
        from toolformer.lm.loading import load_model
        return cls(*load_model(model_ref, adapter, device), **kwargs)

    @cached_property
    def body(self):
        """The decoder without its LM head."""
        return getattr(self.model, self.model.base_model_prefix)

    @cached_property
    def head(self):
        return self.model.get_output_embeddings()

    # ---- text
    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode_with_offsets(self, text: str):
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special)

    @cached_property
    def _token_texts(self) -> list[str]:
        return self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])

    def token_texts(self) -> list[str]:
        return self._token_texts

    # ---- forward passes
    def _padded(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = padded(seqs, self.pad_id)  # right padding: positions 0.. are the defaults
        return ids.to(self.device), mask.to(self.device)

    def _head_logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        """log-softmax of the LM head at the given hidden rows only, in fp32."""
        return torch.log_softmax(self.head(hidden).float(), dim=-1)

    SHARED_MIN = 64      # tokens: a shorter shared prefix is not worth a pass of its own
    SHARED_KEEP = 4      # shared prefixes kept (one per tool prompt in use)

    def _shared_prefix(self, seqs: list[list[int]], limit: int):
        """(tokens, KV layers) of the longest prefix (≤ limit) all the call's sequences share, if it
        is ≥ SHARED_MIN tokens, else None. Encoded once and kept: the next call with the same
        prefix reuses it. It depends on the call's sequences only, so a resumed run computes
        exactly what an uninterrupted one does."""
        if len(seqs) < 2:
            return None
        n = _common_prefix(seqs, limit)
        if n < self.SHARED_MIN:
            return None
        key = tuple(seqs[0][:n])
        if key not in self._prefix_kv:
            out = self.body(input_ids=torch.tensor([key], device=self.device), use_cache=True)
            if len(self._prefix_kv) >= self.SHARED_KEEP:
                self._prefix_kv.pop(next(iter(self._prefix_kv)))
            self._prefix_kv[key] = _cache_layers(out.past_key_values)
        return key, self._prefix_kv[key]

    @staticmethod
    def _shared_len(shared) -> int:
        return len(shared[0]) if shared else 0

    def _forward(self, seqs: list[list[int]], shared, use_cache: bool):
        """The decoder over a right-padded batch -> (hidden states of positions P.., P, ids, cache
        layers or None), where the first P tokens of every row are the shared prefix's."""
        from transformers import DynamicCache

        ids, mask = self._padded(seqs)
        if shared is None:
            res = self.body(input_ids=ids, attention_mask=mask, use_cache=use_cache)
            return res.last_hidden_state, 0, ids, _cache_layers(res.past_key_values) if use_cache else None
        P, B = self._shared_len(shared), len(seqs)
        cache = DynamicCache()
        for layer, (k, v) in enumerate(shared[1]):
            cache.update(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1), layer)
        # positions continue after the prefix (right padding: every row's real tokens start at P)
        res = self.body(input_ids=ids[:, P:], attention_mask=mask, past_key_values=cache, use_cache=True)
        return res.last_hidden_state, P, ids, _cache_layers(res.past_key_values) if use_cache else None

    @torch.inference_mode()
    def next_token_logprobs(self, sequences, first, token_ids, retain_cache=False):
        out: list[np.ndarray | None] = [None] * len(sequences)
        if retain_cache:
            self._retained = []
        cols = torch.tensor(token_ids, device=self.device)
        shared = self._shared_prefix(sequences, min(first) - 1)  # rows first-1.. must be computed
        for batch in _length_batches([len(s) - self._shared_len(shared) for s in sequences], self.max_batch_tokens):
            hidden, P, _, layers = self._forward([sequences[i] for i in batch], shared, retain_cache)
            for r, i in enumerate(batch):
                n = len(sequences[i])
                # p(token | s[:t]) is read at hidden row t-1
                rows = hidden[r, first[i] - 1 - P:n - P]
                out[i] = self._head_logprobs(rows)[:, cols].cpu().numpy()
                if retain_cache:
                    self._retained.append((np.asarray(sequences[i]),
                                           [(k[r:r + 1, :, :n], v[r:r + 1, :, :n]) for k, v in layers]))
        return out

    @torch.inference_mode()
    def token_logprobs(self, sequences, targets):
        out: list[np.ndarray | None] = [None] * len(sequences)
        shared = self._shared_prefix(sequences, min((min(t) for t in targets if t), default=1) - 1)
        for batch in _length_batches([len(s) - self._shared_len(shared) for s in sequences], self.max_batch_tokens):
            hidden, P, ids, _ = self._forward([sequences[i] for i in batch], shared, False)
            # gather every needed row of the batch, one LM-head call for all of them
            rows, want = [], []
            for r, i in enumerate(batch):
                t = torch.tensor(targets[i], dtype=torch.long, device=self.device)
                rows.append(hidden[r, t - 1 - P])
                want.append(ids[r, t])
            logp = self._head_logprobs(torch.cat(rows))
            picked = logp.gather(1, torch.cat(want)[:, None])[:, 0].cpu().numpy()
            offset = 0
            for i in batch:
                out[i] = picked[offset:offset + len(targets[i])].astype(np.float64)
                offset += len(targets[i])
        return out

    # ---- sampling
    def release(self) -> None:
        self._retained = []

    def _reusable(self, prefix: list[int]) -> tuple[int, list | None]:
        """Longest retained KV cache that starts with this prefix: (length usable, layers)."""
        best, layers = 0, None
        p = np.asarray(prefix)
        for seq, kv in self._retained:
            n = min(len(seq), len(p) - 1)  # keep ≥ 1 token to feed: its logits start sampling
            same = np.flatnonzero(seq[:n] != p[:n])
            common = int(same[0]) if same.size else n
            if common > best:
                best, layers = common, kv
        return best, layers

    @torch.inference_mode()
    def sample(self, prefixes, seeds, stop, max_new_tokens=32, temperature=1.0):
        reuse = [self._reusable(p) for p in prefixes]
        results: list[Sample | None] = [None] * len(prefixes)
        for batch in _length_batches([len(p) for p in prefixes], self.max_sample_tokens, max_rows=512):
            self._sample_batch(batch, prefixes, reuse, seeds, stop, max_new_tokens, temperature, results)
        return results

    def _sample_batch(self, batch, prefixes, reuse, seeds, stop, max_new_tokens, temperature, results):
        from transformers import DynamicCache

        B = len(batch)
        cached = [reuse[i][0] for i in batch]
        C = max(cached)
        R = max(len(prefixes[i]) - c for i, c in zip(batch, cached))
        # layout per row: [left pad][cached prefix] | [left pad][rest of the prefix] | generated
        mask = torch.zeros((B, C + R + max_new_tokens), dtype=torch.long, device=self.device)
        ids, rest_mask = padded([prefixes[i][c:] for i, c in zip(batch, cached)], self.pad_id, left=True)
        pos = left_positions(rest_mask, cached).to(self.device)
        ids = ids.to(self.device)
        mask[:, C:C + R] = rest_mask.to(self.device)
        for r, c in enumerate(cached):
            mask[r, C - c:C] = 1
        cache = DynamicCache()
        layer_class = _reserved_layer_class()
        cache.layers = [layer_class(self._kv_shape(B, C + R + max_new_tokens), self.model.dtype, self.device, C)
                        for _ in range(self.model.config.num_hidden_layers)]
        for r, (i, c) in enumerate(zip(batch, cached)):
            for layer, (k, v) in zip(cache.layers, reuse[i][1] or []):
                layer.buf_k[r, :, C - c:C] = k[0, :, :c]
                layer.buf_v[r, :, C - c:C] = v[0, :, :c]

        rows = list(range(B))  # batch row -> position in `batch`, shrinks as samples finish
        gens = [torch.Generator().manual_seed(int(seeds[i]) & 0x7FFFFFFFFFFFFFFF) for i in batch]
        generated: list[list[int]] = [[] for _ in batch]
        done: list[Sample | None] = [None] * B
        next_pos = torch.tensor([len(prefixes[i]) for i in batch], device=self.device)
        width = C + R
        step_ids, step_pos = ids, pos
        for _ in range(max_new_tokens):
            out = self.model(input_ids=step_ids, attention_mask=mask[:, :width], position_ids=step_pos,
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            probs = torch.softmax(out.logits[:, -1].float() / max(temperature, 1e-6), dim=-1).cpu()
            # inverse-CDF sampling with one uniform per row and step from the row's own generator:
            # the draw depends on the seed only, never on the batch the row lands in
            u = torch.stack([torch.rand(1, generator=gens[r]) for r in rows])
            tokens = torch.searchsorted(probs.cumsum(-1), u).clamp_(max=probs.shape[-1] - 1)[:, 0]
            for row, r in enumerate(rows):
                generated[r].append(int(tokens[row]))
                done[r] = _check_stop(self.decode(generated[r]), stop)
            active = [row for row, r in enumerate(rows) if done[r] is None]
            if not active:
                break
            mask[:, width] = 1
            width += 1
            step_ids, step_pos = tokens[:, None].to(self.device), next_pos[:, None]
            next_pos = next_pos + 1
            if len(active) <= len(rows) // 2:  # drop finished rows once they are half the batch
                keep = torch.tensor(active, device=self.device)
                for layer in cache.layers:
                    layer.select(keep)
                mask, step_ids, step_pos, next_pos = mask[keep], step_ids[keep], step_pos[keep], next_pos[keep]
                rows = [rows[row] for row in active]
        for r, i in enumerate(batch):
            results[i] = done[r] or Sample(self.decode(generated[r]), None)

    def decode_session(self) -> "HFDecodeSession":
        return HFDecodeSession(self.model, self.device, self.pad_id)

    def _kv_shape(self, batch: int, length: int) -> tuple[int, int, int, int]:
        cfg = self.model.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return (batch, cfg.num_key_value_heads, length, head_dim)


class HFDecodeSession(DecodeSession):
    """One growing KV cache for the batch. Each step's pending tokens are left-padded to the
    longest, with explicit position ids per row and an attention mask over the whole cache, so
    pads anywhere in the cache are never attended to."""

    def __init__(self, model, device: torch.device, pad_id: int):
        self.model, self.device, self.pad_id = model, device, pad_id
        self.next_pos: list[int] = []  # per live row: position of its next token
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=device)
        self.cache = None

    @torch.inference_mode()
    def step(self, pending):
        ids, step_mask = padded(pending, self.pad_id, left=True)
        if self.cache is None:
            self.next_pos = [0] * len(pending)
            self.mask = self.mask.new_zeros((len(pending), 0))
        pos = left_positions(step_mask, self.next_pos)
        self.next_pos = [p + len(t) for p, t in zip(self.next_pos, pending)]
        self.mask = torch.cat([self.mask, step_mask.to(self.device)], dim=1)
        out = self.model(input_ids=ids.to(self.device), attention_mask=self.mask, position_ids=pos.to(self.device),
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values
        return out.logits[:, -1].float()

    def keep(self, rows):
        if len(rows) == len(self.next_pos):
            return
        if not rows:  # the batch is done: free the cache
            self.cache, self.next_pos = None, []
            return
        index = torch.tensor(list(rows), device=self.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.next_pos = [self.next_pos[r] for r in rows]


def _reserved_layer_class():
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        """A KV-cache layer with room reserved for every token to come. DynamicLayer appends with
        torch.cat, copying the whole cache at every decoding step; this writes in place."""

        def __init__(self, shape, dtype, device, length: int):
            super().__init__()
            self.dtype, self.device, self.is_initialized = dtype, device, True
            self.buf_k = torch.zeros(shape, dtype=dtype, device=device)
            self.buf_v = torch.zeros(shape, dtype=dtype, device=device)
            self.length = length

        def update(self, key_states, value_states, *args, **kwargs):
            n = key_states.shape[-2]
            self.buf_k[:, :, self.length:self.length + n] = key_states
            self.buf_v[:, :, self.length:self.length + n] = value_states
            self.length += n
            self.keys, self.values = self.buf_k[:, :, :self.length], self.buf_v[:, :, :self.length]
            return self.keys, self.values

        def select(self, rows: torch.Tensor) -> None:
            self.buf_k, self.buf_v = self.buf_k[rows], self.buf_v[rows]

        def get_seq_length(self) -> int:
            return self.length

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.length + query_length, 0

    return ReservedLayer


def _check_stop(text: str, stop: Sequence[str]) -> Sample | None:
    """A finished sample if `text` contains a stop string (or a newline: calls are one line)."""
    hits = [(text.find(s), s) for s in stop if s and s in text]
    if hits:
        at, s = min(hits)
        return Sample(text[:at], s)
    if "\n" in text:
        return Sample(text[:text.index("\n")], None)
    return None


BACKENDS.register("hf", HFBackend.from_ref)
