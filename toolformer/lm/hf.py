"""The transformers backend: `HFBackend` implements lm.backend.LMBackend on CPU or GPU.

Speed, not shortcuts: sequences are sorted by length and packed into padded batches under a
token budget; the LM head (a fifth of a forward pass for a 135M model) runs only at the rows
whose logits are needed; the KV cache of a scoring pass is kept so that sampling at position i
reuses the computed prefix P(x) + x_{1:i-1} instead of encoding it again for every sample; a
long prefix that every sequence of a call shares (the tool's few-shot prompt) is encoded once and
its KV cache kept for the next calls, as vLLM's automatic prefix caching does.

Sampling holds each context (a window's scoring cache) once: its rows attend to it together
(lm/context_attention.py) instead of each copying it; every decoding step feeds each of
max_sample_rows slots one token, a finished sample leaves at once and the next queued one takes
its slot, and the text is searched for stop strings only after tokens that may end one.
"""
from __future__ import annotations

import copy
from functools import cached_property, lru_cache
from typing import Sequence

import numpy as np
import torch

from toolformer.lm.backend import BACKENDS, DecodeSession, LMBackend, Sample, TokenizerText
from toolformer.lm.context_attention import RowLayout, attention
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


@lru_cache(maxsize=1)
def cache_arg() -> str:
    """The name of the KV cache, as a model's keyword and its output's field: `cache` in newer
    transformers (where `past_key_values` still works but warns it is deprecated), else
    `past_key_values` (.venv-vllm pins an older transformers)."""
    from transformers.modeling_outputs import BaseModelOutputWithPast
    return "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def _cache_of(output):
    return getattr(output, cache_arg())


def _cache_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer, each [batch, kv_heads, length, head_dim]."""
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def _in_dtype(model, dtype: str | torch.dtype | None):
    """The model itself, or a copy in another dtype (bfloat16: matmuls on the CPU's bf16 units;
    the cached model other users share is left as it is)."""
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if dtype is None or dtype == next(model.parameters()).dtype:
        return model
    return copy.deepcopy(model).to(dtype)


class HFBackend(TokenizerText, LMBackend):
    SAMPLE_ROWS_CPU = 256
    def __init__(self, model, tokenizer, max_batch_tokens: int | None = None,
                 max_sample_tokens: int | None = None, max_sample_rows: int | None = None,
                 dtype: str | torch.dtype | None = None):
        self.model, self.tokenizer = _in_dtype(model, dtype), tokenizer
        self.device = next(self.model.parameters()).device
        self.dtype = next(self.model.parameters()).dtype  # of the weights (a wrapped model may not say)
        cpu = self.device.type == "cpu"
        # token budgets per forward batch: small on CPU (cache-friendly), large on GPU
        self.max_batch_tokens = max_batch_tokens or (4096 if cpu else 65536)
        # decoding: rows per step (SAMPLE_ROWS_CPU: bench/sample.py --rows), and a bound on the
        # rows' own KV buffers (rows × (longest feed + new tokens))
        self.max_sample_rows = max_sample_rows or (self.SAMPLE_ROWS_CPU if cpu else 1024)
        self.max_sample_tokens = max_sample_tokens or (65536 if cpu else 1 << 20)
        self._flags: dict[tuple[str, ...], torch.Tensor] = {}
        self.sampled = {"tokens": 0, "steps": 0, "rows": 0}  # work done by `sample`: drawn, forwards, rows fed
        from toolformer.lm.loading import dtype_setting
        self.dtype_setting = dtype_setting(self.dtype, self.device.type)  # recorded with a stage
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
            self._prefix_kv[key] = _cache_layers(_cache_of(out))
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
            return res.last_hidden_state, 0, ids, _cache_layers(_cache_of(res)) if use_cache else None
        P, B = self._shared_len(shared), len(seqs)
        cache = DynamicCache()
        for layer, (k, v) in enumerate(shared[1]):
            cache.update(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1), layer)
        # positions continue after the prefix (right padding: every row's real tokens start at P)
        res = self.body(input_ids=ids[:, P:], attention_mask=mask, use_cache=True, **{cache_arg(): cache})
        return res.last_hidden_state, P, ids, _cache_layers(_cache_of(res)) if use_cache else None

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

    TAIL_MAX = 16  # tokens a row may feed at its first step; a longer unencoded part is encoded first

    def _reusable(self, prefix: list[int]) -> tuple[int, int]:
        """The retained KV cache sharing the longest start with this prefix: (its index, the
        length usable), or (-1, 0)."""
        best, at = 0, -1
        p = np.asarray(prefix)
        for index, (seq, _) in enumerate(self._retained):
            n = min(len(seq), len(p) - 1)  # keep ≥ 1 token to feed: its logits start sampling
            same = np.flatnonzero(seq[:n] != p[:n])
            common = int(same[0]) if same.size else n
            if common > best:
                best, at = common, index
        return at, best

    def _encode(self, seqs: list[list[int]]) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """KV layers [1, kv_heads, len(s), head_dim] of each sequence."""
        shared = self._shared_prefix(seqs, min(map(len, seqs)) - 1)
        out = [None] * len(seqs)
        for batch in _length_batches([len(s) - self._shared_len(shared) for s in seqs], self.max_batch_tokens):
            *_, layers = self._forward([seqs[i] for i in batch], shared, True)
            for r, i in enumerate(batch):
                out[i] = [(k[r:r + 1, :, :len(seqs[i])], v[r:r + 1, :, :len(seqs[i])]) for k, v in layers]
        return out

    def _contexts(self, prefixes) -> tuple[list, list[tuple[int, int]]]:
        """(KV layers of every context, (context, tokens of it used) per prefix). A prefix continues
        a retained cache, or else a context encoded here once for all prefixes equal to it."""
        used = [self._reusable(p) for p in prefixes]
        contexts = [kv for _, kv in self._retained]
        fresh: dict[tuple[int, ...], int] = {}
        for n, p in enumerate(prefixes):
            if len(p) - used[n][1] > self.TAIL_MAX or used[n][0] < 0:
                used[n] = (len(contexts) + fresh.setdefault(tuple(p[:-1]), len(fresh)), len(p) - 1)
        if fresh:
            contexts += self._encode([list(p) for p in fresh])
        return contexts, used

    @torch.inference_mode()
    def sample(self, prefixes, seeds, stop, max_new_tokens=32, temperature=1.0):
        if not prefixes:
            return []
        contexts, used = self._contexts(prefixes)
        # a context's rows close together in the queue, so that a step reads it for many rows
        queue = sorted(range(len(prefixes)), key=lambda i: used[i][0])
        return _Decoder(self, prefixes, used, contexts, seeds, tuple(stop), max_new_tokens, temperature).run(queue)

    def _stop_flags(self, stop: tuple[str, ...]) -> torch.Tensor:
        """Per token id: may a sample have reached a stop right after it? Only if its text holds
        the last character of a stop string, a newline, or U+FFFD (part of a character split over
        tokens, which may complete one). Any other token appends text that ends no stop string, so
        the sample's text is decoded and searched only after flagged tokens."""
        if stop not in self._flags:
            ends = {s[-1] for s in stop if s} | {"\n", "\ufffd"}
            self._flags[stop] = torch.tensor([any(ch in t for ch in ends) for t in self.token_texts()])
        return self._flags[stop]

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
                         use_cache=True, logits_to_keep=1, **{cache_arg(): self.cache})
        self.cache = _cache_of(out)
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


class _Decoder:
    """Seeded sampling of many rows in one batch of max_sample_rows slots.

    What a row's context lacks (the call opening, the same for all m samples at a position) is
    fed once per distinct (context, opening): that pass leaves the opening's KV and the first
    token's distribution, which every row of the group then starts from. A decoding step feeds each
    slot the token it drew last. A finished sample leaves at once and the next queued one takes its
    slot; the batch shrinks only when the queue is empty. Per step the work is tensor-wide; Python
    touches only the rows that draw (one uniform each), the few whose token may end a stop string,
    and the rows that finish."""

    def __init__(self, lm: HFBackend, prefixes, used, contexts, seeds, stop, max_new_tokens, temperature):
        self.lm, self.used, self.seeds, self.stop = lm, used, seeds, stop
        self.max_new, self.temperature = max_new_tokens, max(temperature, 1e-6)
        feeds = [tuple(p[c:]) for p, (_, c) in zip(prefixes, used)]
        openings: dict[tuple, int] = {}
        self.group = [openings.setdefault((ctx, seen, feed), len(openings)) for (ctx, seen), feed in zip(used, feeds)]
        self.openings = list(openings)
        self.layout = RowLayout(contexts, lm.dtype)
        self.may_stop = lm._stop_flags(stop)
        self.heads_per_kv = lm.model.config.num_attention_heads // lm.model.config.num_key_value_heads
        self.results: list[Sample | None] = [None] * len(prefixes)

    def run(self, queue: list[int]) -> list[Sample]:
        with attention(self.lm.model):
            self._open()
            self._sample(queue)
        return self.results

    def _forward(self, ids, pos, cache, context, seen, own) -> torch.Tensor:
        """One token per row: the last hidden state of each."""
        self.layout.prepare(context, seen, own + 1, self.heads_per_kv)
        self.lm.sampled["steps"] += 1
        self.lm.sampled["rows"] += len(ids)
        return self.lm.body(input_ids=ids[:, None], position_ids=pos[:, None], use_cache=True,
                            contexts=self.layout, **{cache_arg(): cache}).last_hidden_state[:, -1]

    def _open(self) -> None:
        """Feed each distinct opening once: self.kv (per layer, keys and values [groups, kv_heads,
        width, d]) and self.cdf (the first token's cumulative distribution, per group)."""
        lm, dev = self.lm, self.lm.device
        width = max(len(feed) for _, _, feed in self.openings)
        kv, cdf = [], []
        step = max(MIN_STEP_ROWS, lm.max_sample_rows)
        for a in range(0, len(self.openings), step):
            chunk = self.openings[a:a + step]
            n = len(chunk)
            chunk = chunk + [chunk[0]] * max(0, MIN_STEP_ROWS - n)  # never a step of a few rows
            B = len(chunk)
            feed = torch.tensor([f + (f[-1],) * (width - len(f)) for _, _, f in chunk], device=dev)
            lengths = torch.tensor([len(f) for _, _, f in chunk], device=dev)
            context = torch.tensor([c for c, _, _ in chunk], device=dev)
            seen = torch.tensor([s for _, s, _ in chunk], device=dev)
            cache = self._cache(B, width)
            last = torch.zeros((B, lm.model.config.hidden_size), dtype=lm.dtype, device=dev)
            for t in range(width):
                self.own = torch.full((B,), t, dtype=torch.long, device=dev)
                hidden = self._forward(feed[:, t], seen + t, cache, context, seen, self.own)
                ends = (lengths == t + 1).nonzero()[:, 0]  # rows whose opening this token completes
                last[ends] = hidden[ends]
            kv.append([(layer.buf_k[:n], layer.buf_v[:n]) for layer in cache.layers])
            cdf.append(self._cdf(last)[:n])
        self.kv = [tuple(torch.cat([chunk[layer][i] for chunk in kv]) for i in range(2)) for layer in range(len(kv[0]))]
        self.cdf, self.opened = torch.cat(cdf), torch.tensor([len(f) for _, _, f in self.openings], device=dev)

    def _cdf(self, hidden: torch.Tensor) -> torch.Tensor:
        """The next token's cumulative distribution, summed in float64: summed in float32, a uniform
        draw can equal a boundary to the last bit (seen here), and the token then hangs on rounding."""
        probs = torch.softmax(self.lm.head(hidden).float() / self.temperature, dim=-1).cpu()
        return probs.double().cumsum(-1)

    def _cache(self, rows: int, width: int):
        from transformers import DynamicCache
        cache, own_layer = DynamicCache(), _own_layer_class()
        cache.layers = [own_layer(self.lm._kv_shape(rows, width), self.lm.dtype, self.lm.device, self)
                        for _ in range(self.lm.model.config.num_hidden_layers)]
        return cache

    def _sample(self, queue: list[int]) -> None:
        lm, dev = self.lm, self.lm.device
        width = self.kv[0][0].shape[2] + self.max_new
        B = min(len(queue), max(MIN_STEP_ROWS, min(lm.max_sample_rows, lm.max_sample_tokens // width)))
        zeros = lambda: torch.zeros(B, dtype=torch.long, device=dev)  # noqa: E731
        self.sample_of, self.context, self.seen, self.pos, self.own = zeros(), zeros(), zeros(), zeros(), zeros()
        self.drawn, self.last = zeros(), zeros()
        self.generated = torch.zeros((B, self.max_new), dtype=torch.long)
        self.gens: list[torch.Generator | None] = [None] * B
        self.cache = self._cache(B, width)
        self.queue = list(reversed(queue))
        self._drop(self._admit(list(range(B))))
        while len(self.sample_of):
            hidden = self._forward(self.last, self.pos, self.cache, self.context, self.seen, self.own)
            self.pos += 1
            self.own += 1
            rows = torch.arange(len(self.sample_of), device=dev)
            self._draw(rows, self._cdf(hidden))
            self._drop(self._admit(self._finish(rows)))

    def _admit(self, slots: list[int]) -> list[int]:
        """The next queued samples take these slots, each starting from its opening's KV and first
        draw; one that is done at once frees its slot again. Returns the slots left free."""
        while slots and self.queue:
            slots, taken = slots[len(self.queue):], slots[:len(self.queue)]
            samples = [self.queue.pop() for _ in taken]
            at = torch.tensor(taken, device=self.lm.device)
            groups = torch.tensor([self.group[i] for i in samples], device=self.lm.device)
            self.sample_of[at] = torch.tensor(samples, device=self.lm.device)
            self.context[at] = torch.tensor([self.used[i][0] for i in samples], device=self.lm.device)
            self.seen[at] = torch.tensor([self.used[i][1] for i in samples], device=self.lm.device)
            self.own[at] = self.opened[groups]
            self.pos[at] = self.seen[at] + self.own[at]
            self.drawn[at] = 0
            for layer, (keys, values) in zip(self.cache.layers, self.kv):
                layer.buf_k[at, :, :keys.shape[2]] = keys[groups]
                layer.buf_v[at, :, :keys.shape[2]] = values[groups]
            for slot, i in zip(taken, samples):
                self.gens[slot] = torch.Generator().manual_seed(int(self.seeds[i]) & 0x7FFFFFFFFFFFFFFF)
            self._draw(at, self.cdf[groups.cpu()])
            slots += self._finish(at)
        return slots

    def _draw(self, rows: torch.Tensor, cdf: torch.Tensor) -> None:
        # inverse-CDF sampling with one uniform per row and draw from the row's own generator: the
        # draw depends on the seed only, never on the batch the row lands in
        u = torch.stack([torch.rand(1, generator=self.gens[r]) for r in rows.tolist()])
        tokens = torch.searchsorted(cdf, u.double()).clamp_(max=cdf.shape[-1] - 1)[:, 0]
        self.generated[rows.cpu(), self.drawn[rows].cpu()] = tokens
        self.drawn[rows] += 1
        self.last[rows] = tokens.to(self.last.device)
        self.lm.sampled["tokens"] += len(rows)
        self.drew = tokens

    def _finish(self, rows: torch.Tensor) -> list[int]:
        """Record the rows that have just ended, at a stop string or at max_new_tokens; returns
        their slots, now free."""
        real = self.sample_of[rows] >= 0  # a twin (see _drop) records nothing
        rows, drew = rows[real], self.drew[real.cpu()]
        ended = {}
        for row in rows[self.may_stop[drew]].tolist():  # the text is read only here
            sample = _check_stop(self.lm.decode(self.generated[row, :int(self.drawn[row])].tolist()), self.stop)
            if sample is not None:
                ended[row] = sample
        for row in rows[self.drawn[rows] == self.max_new].tolist():
            ended.setdefault(row, Sample(self.lm.decode(self.generated[row].tolist()), None))
        for row, sample in ended.items():
            self.results[int(self.sample_of[row])] = sample
        return sorted(ended)

    def _drop(self, free: list[int]) -> None:
        """These slots found no queued sample: their rows leave the batch. Fewer than MIN_STEP_ROWS
        rows go on with twins of the first (copies in lockstep that record nothing): a step of a few
        rows runs other matrix kernels, whose rounding could change a draw."""
        if self.queue or (not free and len(self.sample_of) >= MIN_STEP_ROWS):
            return
        slots = [s for s in range(len(self.sample_of)) if s not in free and self.sample_of[s] >= 0]
        twins = max(0, MIN_STEP_ROWS - len(slots)) if slots else 0
        keep = torch.tensor(slots + slots[:1] * twins, dtype=torch.long, device=self.lm.device)
        for name in ("sample_of", "context", "seen", "pos", "own", "drawn", "last"):
            setattr(self, name, getattr(self, name)[keep])
        self.generated = self.generated[keep.cpu()]
        self.gens = [self.gens[s] for s in slots]
        if twins:
            self.sample_of[len(slots):] = -1
            self.gens += [torch.Generator().set_state(self.gens[0].get_state()) for _ in range(twins)]
        for layer in self.cache.layers:
            layer.select(keep, int(self.own.max()) if slots else 0)


# A sampling step never runs on fewer rows than this (copies that record nothing fill it): BLAS
# picks other kernels for a few rows (on one machine here, 1 to 3 rows rounded differently from 4 or
# more), and a sample must not depend on how many others share its batch.
MIN_STEP_ROWS = 8


def _own_layer_class():
    from transformers.cache_utils import DynamicLayer

    class OwnLayer(DynamicLayer):
        """The KV of each row's own tokens (what it fed after its context, and what it drew), room
        reserved for all of them; a step writes one token per row at the row's own column."""

        def __init__(self, shape, dtype, device, rows: _Decoder):
            super().__init__()
            self.dtype, self.device, self.is_initialized = dtype, device, True
            # zeros, not empty: masked columns must hold finite numbers (0 × NaN is NaN)
            self.buf_k = torch.zeros(shape, dtype=dtype, device=device)
            self.buf_v = torch.zeros(shape, dtype=dtype, device=device)
            self.rows = rows

        def update(self, key_states, value_states, *args, **kwargs):
            slots, at = torch.arange(len(key_states), device=key_states.device), self.rows.own
            self.buf_k[slots, :, at] = key_states[:, :, 0]
            self.buf_v[slots, :, at] = value_states[:, :, 0]
            width = int(at.max()) + 1
            return self.buf_k[:, :, :width], self.buf_v[:, :, :width]

        def select(self, rows: torch.Tensor, width: int) -> None:
            """Keep these rows, copying only the columns written so far."""
            for name in ("buf_k", "buf_v"):
                old = getattr(self, name)
                new = old.new_zeros((len(rows),) + old.shape[1:])
                new[:, :, :width] = old[:, :, :width].index_select(0, rows)
                setattr(self, name, new)

        def get_seq_length(self) -> int:
            return int(self.rows.own.max())

    return OwnLayer


def _check_stop(text: str, stop: Sequence[str]) -> Sample | None:
    """A finished sample if `text` contains a stop string or a newline (calls are one line),
    cut at whichever comes first; a newline ends it unclosed."""
    ends = [(text.find(s), s) for s in stop if s and s in text]
    if "\n" in text:
        ends.append((text.index("\n"), None))
    if not ends:
        return None
    at, s = min(ends, key=lambda end: end[0])
    return Sample(text[:at], s)


BACKENDS.register("hf", HFBackend.from_ref)
