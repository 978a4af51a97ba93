"""Tool retriever: rank tools for a text by embedding similarity, trained on our own kept calls.

    toolformer retriever train  --run NAME | --queries FILE --tools FILE | --pairs FILE  --out DIR
    toolformer retriever eval   [--tools FILE] --queries FILE | --run NAME  [--retriever REF]
    toolformer retriever search "what is 23 times 19" [--tools FILE] [--retriever REF]

A retriever REF is "bm25", a sentence-transformers model (default: the embedded all-MiniLM-L6-v2),
a causal LM used as an embedder (e.g. the embedded "smollm2-135m-instruct"), or a folder written by
`train` (weights plus retriever.json saying encoder type, pooling and query instruction).
Embeddings are L2-normalised and compared by dot product (= cosine). The LLM embedder appends EOS
and pools the last token (E5, Wang et al. 2024) or the mean of all tokens; queries get the E5
instruction "Instruct: {task}\\nQuery: {q}". Training minimises InfoNCE over in-batch negatives
plus hard negatives re-mined from the current model at every epoch (ANCE).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from toolformer.assets import DEFAULT_EMBEDDER, cache_dir, embedded_path
from toolformer.run.records import BadRecord, ReadStats, SCORED, read_jsonl

if TYPE_CHECKING:
    from toolformer.tools import Tool

DEFAULT_INSTRUCTION = "Given a text, retrieve the tool that helps to continue or answer it"
ANN_MIN_TOOLS = 4096      # from this many tools on, search an IVF index instead of every vector
WINDOW_CHARS = 400        # text before a kept call that forms its query
POOLINGS = ("last", "mean")


# ---------------------------------------------------------------------------- tool sets, queries

@dataclass(frozen=True)
class ToolSet:
    names: tuple[str, ...]
    texts: tuple[str, ...]   # what the retriever embeds, one per name

    def __post_init__(self):
        if len(set(self.names)) != len(self.names):
            raise ValueError("tool names must be unique")

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def _position(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def text_of(self, name: str) -> str:
        return self.texts[self._position[name]]


@dataclass(frozen=True)
class Query:
    text: str
    relevant: frozenset[str]   # names of the right tools
    key: str                   # what the held-out split hashes (document id or query text)


@dataclass(frozen=True)
class Pair:
    """A training example: query, its positive text, given hard negatives, and every text relevant
    to the query (never used as one of its negatives)."""
    query: str
    positive: str
    negatives: tuple[str, ...] = ()
    relevant: frozenset[str] = frozenset()


def registry_tools() -> ToolSet:
    from toolformer.tools import all_tools
    tools = all_tools()
    return ToolSet(tuple(t.name for t in tools), tuple(t.retrieval_text() for t in tools))


def read_tool_set(path: str | Path) -> tuple[ToolSet, int]:
    """Tools from JSONL: `name` (or Gorilla's `api_call`) and `description`; `domain`,
    `functionality` and `examples` join the text when present. Returns (tools, repeated names):
    a name seen again (Gorilla TF Hub lists one API up to 220 times) keeps its first record."""
    names, texts, seen, repeated = [], [], set(), 0
    for number, rec in read_jsonl(path):
        name = rec.get("name", rec.get("api_call"))
        if not isinstance(name, str) or not name.strip():
            raise BadRecord(path, number, "needs a string 'name' (or 'api_call')")
        if not isinstance(rec.get("description"), str):
            raise BadRecord(path, number, "needs a string 'description'")
        if name in seen:
            repeated += 1
            continue
        seen.add(name)
        text = f"{name}: {rec['description']}"
        text += "".join(f"\n{f.capitalize()}: {rec[f]}" for f in ("domain", "functionality")
                        if isinstance(rec.get(f), str))
        if isinstance(rec.get("examples"), list):
            text += "\nExamples:\n" + "\n".join(map(str, rec["examples"]))
        names.append(name)
        texts.append(text)
    if not names:
        raise ValueError(f"{path}: no tools")
    return ToolSet(tuple(names), tuple(texts)), repeated


def gorilla_instruction(code: str) -> str:
    """The user request of an APIBench record: the text between ###Instruction: and ###Output."""
    return code.split("###Output", 1)[0].replace("###Instruction:", "").strip()


def read_queries(path: str | Path, tools: ToolSet, skip_bad: bool = False,
                 stats: ReadStats | None = None) -> list[Query]:
    """Queries from JSONL: {"query", "tool": name or [names]}, or APIBench {"code", "api_call"}."""
    stats = stats if stats is not None else ReadStats()
    known, queries = set(tools.names), []
    for number, rec in read_jsonl(path, skip_bad=skip_bad, stats=stats):
        try:
            if "query" in rec:
                text, gold = rec["query"], rec.get("tool")
                gold = [gold] if isinstance(gold, str) else gold
            else:
                text, gold = gorilla_instruction(str(rec.get("code", ""))), [rec.get("api_call")]
            if not isinstance(text, str) or not text.strip():
                raise BadRecord(path, number, "needs a non-empty 'query' (or APIBench 'code')")
            if not isinstance(gold, list) or not gold or not all(isinstance(g, str) for g in gold):
                raise BadRecord(path, number, "needs 'tool': a name or a list of names (or 'api_call')")
            unknown = [g for g in gold if g not in known]
            if unknown:
                raise BadRecord(path, number, f"tool {unknown[0][:80]!r} is not in the tool set")
        except BadRecord as err:
            if not skip_bad:
                raise
            stats.skip(err)
            continue
        queries.append(Query(text, frozenset(gold), text))
    return queries


def kept_call_queries(run_name: str, runs_dir: str | Path, tools: ToolSet, window_chars: int = WINDOW_CHARS,
                      min_usefulness: float | None = None, stats: ReadStats | None = None) -> list[Query]:
    """One query per (document, position) with a kept call: the text before it -> its tool(s).
    With min_usefulness, every scored call whose usefulness reaches it counts as kept instead (a
    run filtered at a high τ_f keeps too few calls to train on). A call at the very start of a
    document has no text before it to learn from: it is skipped and counted (stats.skipped_empty)."""
    from toolformer.run.manifest import Run
    run = Run(run_name, runs_dir)
    docs = {d.id: d.text for d in run.documents()}
    by_name = {n.lower(): n for n in tools.names}
    relevant: dict[tuple[str, int], set[str]] = {}
    for path in sorted(run.path.glob("*/scored.jsonl")):
        for number, rec in read_jsonl(path, SCORED):
            chosen = rec["kept"] if min_usefulness is None else (rec["usefulness"] is not None
                                                                 and rec["usefulness"] >= min_usefulness)
            if not chosen:
                continue
            if rec["doc_id"] not in docs:
                raise BadRecord(path, number, f"doc_id {rec['doc_id']!r} is not in {run.documents_path}")
            if not 0 <= rec["position"] <= len(docs[rec["doc_id"]]):
                raise BadRecord(path, number, f"position {rec['position']} is outside the document")
            if rec["tool"].lower() not in by_name:
                raise BadRecord(path, number, f"tool {rec['tool']!r} is not in the tool set")
            relevant.setdefault((rec["doc_id"], rec["position"]), set()).add(by_name[rec["tool"].lower()])
    queries = []
    for (doc_id, position), names in sorted(relevant.items()):
        text = docs[doc_id][max(0, position - window_chars):position].strip()
        if not text:
            if stats is not None:
                stats.skipped_empty += 1
            continue
        queries.append(Query(text, frozenset(names), f"{run_name}/{doc_id}"))
    return queries


def read_pairs(path: str | Path) -> list[Pair]:
    """Training pairs from JSONL {"query", "positive", "negatives": [...]} (HW3 style, texts)."""
    pairs = []
    for number, rec in read_jsonl(path):
        query, positive, negatives = rec.get("query"), rec.get("positive"), rec.get("negatives", [])
        if not isinstance(query, str) or not query.strip():
            raise BadRecord(path, number, "needs a non-empty string 'query'")
        if not isinstance(positive, str) or not positive.strip():
            raise BadRecord(path, number, "needs a non-empty string 'positive'")
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            raise BadRecord(path, number, "'negatives' should be a list of strings")
        if positive in negatives:
            raise BadRecord(path, number, "the positive is also listed as a negative")
        pairs.append(Pair(query, positive, tuple(negatives), frozenset([positive])))
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def query_pairs(queries: list[Query], tools: ToolSet) -> list[Pair]:
    """One pair per (query, relevant tool); the query's other relevant tools are never negatives."""
    pairs = []
    for q in queries:
        relevant = frozenset(tools.text_of(n) for n in q.relevant)
        pairs += [Pair(q.text, tools.text_of(n), (), relevant) for n in sorted(q.relevant)]
    return pairs


def split(queries: list[Query], holdout: float, held_out: bool) -> list[Query]:
    """A fixed split by hash of the key: the same document or query text always falls on one side."""
    if holdout <= 0:
        return queries if not held_out else []
    def bucket(key: str) -> float:
        return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 16 ** 8
    return [q for q in queries if (bucket(q.key) < holdout) == held_out]


def subsample(items: list, limit: int | None, seed: int) -> list:
    if limit is None or limit >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


# ---------------------------------------------------------------------------- encoders

def pool_hidden(hidden, mask, pooling: str):
    """(batch, seq, dim) hidden states -> (batch, dim): the last non-pad token, or the mean over
    non-pad tokens. The last index is found from the mask, so left and right padding both work."""
    import torch
    if pooling == "last":
        last = mask.shape[1] - 1 - mask.flip(1).argmax(1)
        return hidden[torch.arange(len(hidden), device=hidden.device), last]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def _fingerprint(folder: Path, extra: str) -> str:
    """Cache key of a model folder: its weight files' names, sizes and mtimes, plus `extra`."""
    digest = hashlib.sha256(f"{folder.resolve()}\0{extra}".encode())
    for f in sorted(folder.rglob("*")):
        if f.suffix in (".safetensors", ".bin", ".json"):
            st = f.stat()
            digest.update(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


class Encoder:
    """Texts -> L2-normalised vectors. `embed` keeps gradients (training); `encode` does not."""
    kind = ""

    def __init__(self, model, instruction: str | None, max_length: int):
        self.model, self.instruction, self.max_length = model, instruction, max_length
        self.fingerprint: str | None = None  # embedding-cache key; None once the weights change

    @property
    def device(self):
        return next(self.model.parameters()).device

    def embed(self, texts: Sequence[str], is_query: bool):
        import torch.nn.functional as F
        if is_query and self.instruction:
            texts = [f"Instruct: {self.instruction}\nQuery: {t}" for t in texts]
        return F.normalize(self._forward(list(texts)).float(), dim=-1)

    def encode(self, texts: Sequence[str], is_query: bool, batch_size: int = 32) -> np.ndarray:
        import torch
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        was_training = self.model.training
        self.model.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        chunks = []
        with torch.inference_mode():
            for i in range(0, len(order), batch_size):
                chunks.append(self.embed([texts[j] for j in order[i:i + batch_size]], is_query).cpu().numpy())
        self.model.train(was_training)
        out = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(chunks)
        return out

    def config(self) -> dict:
        return {"encoder": self.kind, "instruction": self.instruction, "max_length": self.max_length}


class SentenceEncoder(Encoder):
    kind = "sentence-transformers"

    def __init__(self, folder: str, instruction: str | None = None, max_length: int = 128):
        from sentence_transformers import SentenceTransformer
        from toolformer.lm.loading import default_device
        model = SentenceTransformer(folder, device=default_device())
        model.max_seq_length = max_length
        super().__init__(model, instruction, max_length)
        self.fingerprint = _fingerprint(Path(folder), json.dumps(self.config()))

    def _forward(self, texts: list[str]):
        from sentence_transformers.util import batch_to_device
        # `preprocess` replaced `tokenize` in sentence-transformers 5.2
        features = getattr(self.model, "preprocess", self.model.tokenize)(texts)
        return self.model(batch_to_device(features, self.device))["sentence_embedding"]

    def save(self, folder: Path) -> None:
        self.model.save(str(folder), create_model_card=False)


class LLMEncoder(Encoder):
    """A decoder LM as embedder: text + EOS, then last-token or mean pooling of the final layer."""
    kind = "llm"

    def __init__(self, model, tokenizer, pooling: str = "last", instruction: str | None = None,
                 max_length: int = 128):
        super().__init__(model, instruction, max_length)
        self.tokenizer, self.pooling = tokenizer, pooling
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}: use {' or '.join(POOLINGS)}")

    @classmethod
    def load(cls, ref: str, **kwargs) -> LLMEncoder:
        from transformers import AutoModel, AutoTokenizer
        from toolformer.lm.loading import default_device, default_dtype, local_folder
        folder = local_folder(ref)
        device = default_device()
        model = AutoModel.from_pretrained(folder, dtype=default_dtype(device)).to(device).eval()
        encoder = cls(model, AutoTokenizer.from_pretrained(folder), **kwargs)
        encoder.fingerprint = _fingerprint(Path(folder), json.dumps(encoder.config()))
        return encoder

    def add_lora(self, r: int, top_layers: int | None = None) -> None:
        """LoRA on every linear layer; with `top_layers`, only the adapters of the last blocks train,
        so the backward pass stops there (the main cost of training on a CPU)."""
        from peft import LoraConfig, get_peft_model
        self.model = get_peft_model(self.model, LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear"))
        if top_layers:
            first = self.model.config.num_hidden_layers - top_layers
            for name, param in self.model.named_parameters():
                block = re.search(r"\.(\d+)\.", name)  # layers.12.self_attn... / h.3.attn...
                if param.requires_grad and block and int(block.group(1)) < first:
                    param.requires_grad = False

    def _forward(self, texts: list[str]):
        import torch
        tok = self.tokenizer
        ids = tok(texts, add_special_tokens=False, truncation=True, max_length=self.max_length - 1)["input_ids"]
        ids = [x + [tok.eos_token_id] for x in ids]
        width = max(map(len, ids))
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        left = tok.padding_side == "left"
        rows = [([pad_id] * (width - len(x)) + x) if left else (x + [pad_id] * (width - len(x))) for x in ids]
        masks = [([0] * (width - len(x)) + [1] * len(x)) if left else ([1] * len(x) + [0] * (width - len(x)))
                 for x in ids]
        input_ids = torch.tensor(rows, device=self.device)
        mask = torch.tensor(masks, device=self.device)
        # positions count real tokens only, so a left-padded text embeds as it does alone (this
        # matters for absolute position embeddings; rotary ones are shift-invariant anyway)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        hidden = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions).last_hidden_state
        return pool_hidden(hidden, mask, self.pooling)

    def save(self, folder: Path) -> None:
        model = self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model
        model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def config(self) -> dict:
        return {**super().config(), "pooling": self.pooling}


class BM25:
    """The lexical baseline (bm25s), scored over the whole tool set."""
    name = "bm25"

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


def load_encoder(ref: str, pooling: str | None = None, instruction: str | None = None,
                 max_length: int | None = None) -> Encoder:
    """A trained retriever folder (retriever.json), a sentence-transformers model, or a causal LM.
    Arguments left None take the folder's recorded value, else the encoder's default."""
    folder = Path(ref) if ref != DEFAULT_EMBEDDER else embedded_path(DEFAULT_EMBEDDER)
    saved = json.loads((folder / "retriever.json").read_text()) if (folder / "retriever.json").is_file() else {}
    if saved and saved.get("encoder") not in (SentenceEncoder.kind, LLMEncoder.kind):
        raise ValueError(f"{folder}/retriever.json: unknown encoder {saved.get('encoder')!r}")
    sentence = saved.get("encoder") == SentenceEncoder.kind or (folder / "modules.json").is_file()
    if instruction is None:  # sentence-transformers models are not instruction-tuned: none by default
        instruction = saved.get("instruction") if saved else (None if sentence else DEFAULT_INSTRUCTION)
    max_length = max_length or saved.get("max_length", 128)
    if sentence:
        return SentenceEncoder(str(folder), instruction or None, max_length)
    return LLMEncoder.load(ref, pooling=pooling or saved.get("pooling", "last"),
                           instruction=instruction or None, max_length=max_length)


@lru_cache(maxsize=4)
def load_retriever(ref: str) -> Encoder | type[BM25]:
    return BM25 if ref == BM25.name else load_encoder(ref)


# ---------------------------------------------------------------------------- search

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

    def __init__(self, retriever: Encoder | type[BM25], tools: ToolSet, ann_min_tools: int = ANN_MIN_TOOLS):
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
    """The names of the k best `tools` (tools.Tool) for each text; retriever and index load once."""
    index = _index(retriever_ref, tuple(t.name for t in tools), tuple(t.retrieval_text() for t in tools))
    return [[name for name, _ in row] for row in index.search(texts, k)]


# ---------------------------------------------------------------------------- metrics

def ranking_metrics(ranked: list[list[str]], relevant: list[frozenset[str]], ks=(1, 5, 10)) -> dict:
    """Recall@k (share of the relevant tools in the top k), MRR (first relevant; 0 if not ranked)
    and NDCG@10 with binary gains, averaged over queries."""
    n = len(ranked)
    if n == 0:
        return {}
    out = {f"recall@{k}": sum(len(rel & set(r[:k])) / len(rel) for r, rel in zip(ranked, relevant)) / n
           for k in ks}
    out["mrr"] = sum(next((1 / i for i, name in enumerate(r, 1) if name in rel), 0.0)
                     for r, rel in zip(ranked, relevant)) / n
    ndcg = 0.0
    for r, rel in zip(ranked, relevant):
        dcg = sum(1 / math.log2(i + 1) for i, name in enumerate(r[:10], 1) if name in rel)
        ndcg += dcg / sum(1 / math.log2(i + 1) for i in range(1, min(len(rel), 10) + 1))
    out["ndcg@10"] = ndcg / n
    return {k: round(v, 4) for k, v in out.items()}


def evaluate(retriever: Encoder | type[BM25], tools: ToolSet, queries: list[Query], depth: int = 100,
             by_tool: bool = False) -> dict:
    """Metrics of one retriever on `queries`; rankings are cut at `depth` (MRR is MRR@depth).
    by_tool adds Recall@1 over the queries of each relevant tool (for small tool sets)."""
    t0 = time.time()
    ranked = [[name for name, _ in row] for row in ToolIndex(retriever, tools).search([q.text for q in queries], depth)]
    figures = ranking_metrics(ranked, [q.relevant for q in queries])
    if by_tool:
        figures["recall@1_by_tool"] = {
            name: ranking_metrics([r for r, q in zip(ranked, queries) if name in q.relevant],
                                  [q.relevant for q in queries if name in q.relevant], ks=(1,))["recall@1"]
            for name in sorted({n for q in queries for n in q.relevant})}
    return {**figures, "seconds": round(time.time() - t0, 1)}


# ---------------------------------------------------------------------------- training

def info_nce(queries, candidates, labels, mask, temperature: float):
    """InfoNCE: cross-entropy of query-candidate similarities / temperature against the positive
    column; masked cells (false negatives) are excluded."""
    import torch.nn.functional as F
    logits = queries @ candidates.T / temperature
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, labels)


def batch_candidates(pairs: Sequence[Pair], mined: Sequence[Sequence[str]]):
    """The candidate columns of a batch: the positives in batch order, then each pair's hard
    negatives; a text appears once. Returns (texts, labels, mask): mask[i][j] is True where column
    j is relevant to query i without being its positive, so it must not count as a negative."""
    texts: list[str] = []
    column: dict[str, int] = {}

    def col(text: str) -> int:
        if text not in column:
            column[text] = len(texts)
            texts.append(text)
        return column[text]

    labels = [col(p.positive) for p in pairs]
    for p, extra in zip(pairs, mined):
        for text in (*p.negatives, *extra):
            col(text)
    mask = [[t in p.relevant and j != labels[i] for j, t in enumerate(texts)] for i, p in enumerate(pairs)]
    return texts, labels, mask


def mine_hard_negatives(encoder: Encoder, pairs: Sequence[Pair], pool: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """For each pair, the n pool texts the current model ranks highest that are not relevant."""
    if n <= 0:
        return [()] * len(pairs)
    queries = encoder.encode([p.query for p in pairs], is_query=True)
    vectors = tool_embeddings(encoder, pool)
    depth = n + max(len(p.relevant) + len(p.negatives) for p in pairs)  # enough to find n wrong ones
    mined = []
    for start in range(0, len(pairs), 1024):  # bounds the score matrix for large pools
        ids, _ = top_k(queries[start:start + 1024] @ vectors.T, depth)
        for p, row in zip(pairs[start:start + 1024], ids):
            wrong = (pool[j] for j in row if pool[j] not in p.relevant and pool[j] not in p.negatives)
            mined.append(tuple(t for _, t in zip(range(n), wrong)))
    return mined


@dataclass
class TrainSettings:
    epochs: int = 2
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 2e-5
    temperature: float = 0.05
    hard_negatives: int = 3
    seed: int = 0


def train(encoder: Encoder, pairs: list[Pair], pool: Sequence[str], s: TrainSettings, log=print) -> list[dict]:
    """InfoNCE with in-batch and hard negatives (re-mined each epoch); returns per-epoch figures."""
    import torch
    torch.manual_seed(s.seed)
    rng = random.Random(s.seed)
    params = [p for p in encoder.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.lr)
    history = []
    for epoch in range(1, s.epochs + 1):
        t0 = time.time()
        mined = mine_hard_negatives(encoder, pairs, pool, s.hard_negatives)
        order = list(range(len(pairs)))
        rng.shuffle(order)
        batches = [order[i:i + s.batch_size] for i in range(0, len(order), s.batch_size)]
        encoder.model.train()
        total = 0.0
        for step, batch in enumerate(batches, 1):
            texts, labels, mask = batch_candidates([pairs[i] for i in batch], [mined[i] for i in batch])
            q = encoder.embed([pairs[i].query for i in batch], is_query=True)
            d = encoder.embed(texts, is_query=False)
            loss = info_nce(q, d, torch.tensor(labels, device=q.device),
                            torch.tensor(mask, device=q.device), s.temperature)
            (loss / s.grad_accum).backward()
            if step % s.grad_accum == 0 or step == len(batches):
                optimizer.step()
                optimizer.zero_grad()
                encoder.fingerprint = None  # cached embeddings no longer match the weights
            total += loss.item()
        encoder.model.eval()
        history.append({"epoch": epoch, "loss": round(total / len(batches), 4), "steps": len(batches),
                        "seconds": round(time.time() - t0, 1)})
        log(f"epoch {epoch}: loss {history[-1]['loss']:.4f} ({history[-1]['seconds']} s)")
    return history


def save_retriever(encoder: Encoder, folder: str | Path, training: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoder.save(folder)
    (folder / "retriever.json").write_text(json.dumps({**encoder.config(), "training": training}, indent=2) + "\n")


# ---------------------------------------------------------------------------- commands

def _eprint(*a) -> None:
    print(*a, file=sys.stderr)


def _tools(args) -> tuple[ToolSet, int]:
    return read_tool_set(args.tools) if args.tools else (registry_tools(), 0)


def _queries(args, tools: ToolSet, held_out: bool, stats: ReadStats) -> list[Query]:
    if args.run:
        queries = [q for run in args.run
                   for q in kept_call_queries(run, args.runs_dir, tools, args.window_chars, args.min_usefulness, stats)]
    else:
        queries = read_queries(args.queries, tools, args.skip_bad, stats)
    return subsample(split(queries, args.holdout, held_out), args.limit, args.seed)


def cmd_train(args) -> dict:
    if bool(args.pairs) + bool(args.run) + bool(args.queries) != 1:
        raise ValueError("give exactly one of --pairs, --run, --queries")
    stats = ReadStats()
    if args.pairs:
        pairs = subsample(read_pairs(args.pairs), args.limit, args.seed)
        pool = sorted({t for p in pairs for t in (p.positive, *p.negatives)})
    else:
        tools, _ = _tools(args)
        pairs, pool = query_pairs(_queries(args, tools, False, stats), tools), list(tools.texts)
    if not pairs:
        raise ValueError("no training pairs (is --holdout 1, or did the run keep no calls?)")
    encoder = load_encoder(args.encoder, args.pooling, args.instruction, args.max_length)
    if args.lora:
        if not isinstance(encoder, LLMEncoder):
            raise ValueError("--lora applies to an LLM embedder only")
        encoder.add_lora(args.lora, args.lora_layers)
    settings = TrainSettings(args.epochs, args.batch_size, args.grad_accum,
                             args.lr or (1e-4 if args.lora else 2e-5), args.temperature, args.hard_negatives, args.seed)
    _eprint(f"training {args.encoder} on {len(pairs)} pairs, {len(pool)} candidate texts")
    t0 = time.time()
    history = train(encoder, pairs, pool, settings, log=_eprint)
    figures = {"pairs": len(pairs), "pool": len(pool), "encoder": args.encoder, "lora": args.lora,
               "lora_layers": args.lora_layers,
               **vars(settings), "history": history, "seconds": round(time.time() - t0, 1),
               "skipped_bad": stats.skipped_bad, "skipped_at_document_start": stats.skipped_empty}
    save_retriever(encoder, args.out, figures)
    _eprint(f"saved to {args.out}")
    return {**figures, "out": args.out}


def cmd_eval(args) -> dict:
    if bool(args.run) == bool(args.queries):
        raise ValueError("give one of --queries FILE or --run NAME")
    tools, repeated = _tools(args)
    stats = ReadStats()
    queries = _queries(args, tools, args.holdout > 0, stats)
    if not queries:
        raise ValueError("no queries to evaluate")
    by_tool = bool(args.run)
    results = {args.retriever: evaluate(load_retriever(args.retriever), tools, queries, by_tool=by_tool)}
    if args.retriever != BM25.name:
        results[BM25.name] = evaluate(BM25, tools, queries, by_tool=by_tool)
    per_tool = dict(sorted(Counter(n for q in queries for n in q.relevant).items())) if args.run else {}
    cols = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10")
    print(f"{len(queries)} queries" + (f" ({', '.join(f'{n} {c}' for n, c in per_tool.items())})" if per_tool else "")
          + f", {len(tools)} tools" + (f" ({repeated} repeated names merged)" if repeated else "")
          + (f", {stats.skipped_bad} bad lines skipped" if stats.skipped_bad else "")
          + (f", {stats.skipped_empty} calls at a document start skipped (no text before them)"
             if stats.skipped_empty else ""))
    print(f"{'retriever':<40}" + "".join(f"{c:>10}" for c in cols))
    for name, m in results.items():
        print(f"{name[-40:]:<40}" + "".join(f"{m[c]:>10.4f}" for c in cols)
              + ("  R@1 by tool: " + ", ".join(f"{t} {v:.2f}" for t, v in m["recall@1_by_tool"].items())
                 if by_tool else ""))
    return {"queries": len(queries), "queries_per_tool": per_tool, "tools": len(tools), "repeated_tool_names": repeated,
            "skipped_bad": stats.skipped_bad, "skipped_examples": stats.examples,
            "skipped_at_document_start": stats.skipped_empty, "results": results}


def cmd_search(args) -> dict:
    tools, _ = _tools(args)
    ranked = ToolIndex(load_retriever(args.retriever), tools).search([args.text], args.k)[0]
    for rank, (name, score) in enumerate(ranked, 1):
        print(f"{rank:>3}  {score:8.4f}  {name}")
    return {"text": args.text, "ranked": [{"tool": n, "score": round(s, 4)} for n, s in ranked]}


def add_commands(sub, command) -> None:
    parser = sub.add_parser("retriever", help="embedding-based tool retriever: train, eval, search",
                            description=__doc__.splitlines()[0])
    rsub = parser.add_subparsers(dest="retriever_command", required=True, metavar="ACTION")
    tools_help = "tool set JSONL (name or api_call, description); default: the registered tools"

    def data_options(p, what: str) -> None:
        p.add_argument("--tools", help=tools_help)
        p.add_argument("--queries", help="JSONL {query, tool} or APIBench records {code, api_call}")
        p.add_argument("--run", action="append",
                       help="a curated run: its kept calls become (text before call -> tool); repeatable")
        p.add_argument("--min-usefulness", type=float,
                       help="with --run: take every scored call with usefulness ≥ this instead of the kept ones")
        p.add_argument("--runs-dir", default="runs", help="folder holding runs (default: runs)")
        p.add_argument("--window-chars", type=int, default=WINDOW_CHARS, help="characters before a call")
        p.add_argument("--holdout", type=float, default=0.0,
                       help=f"share of documents/queries held out by a fixed hash split; {what}")
        p.add_argument("--limit", type=int, help="use a random sample of N (seeded)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--skip-bad", action="store_true", help="skip bad query lines (counted and reported)")

    p = command(rsub, "train", cmd_train, "train a retriever with InfoNCE and save it to --out")
    data_options(p, "train uses the rest")
    p.add_argument("--pairs", help="JSONL {query, positive, negatives} of texts")
    p.add_argument("--out", required=True, help="folder to write the trained retriever to")
    p.add_argument("--encoder", default=DEFAULT_EMBEDDER,
                   help="start from: a sentence-transformers model, a causal LM (e.g. smollm2-135m-instruct) "
                        "or a retriever folder")
    p.add_argument("--pooling", choices=("last", "mean"), help="LLM embedder pooling (default last)")
    p.add_argument("--instruction", help="query instruction (E5); '' for none. Default: none for "
                                         "sentence-transformers, a generic one for an LLM")
    p.add_argument("--lora", type=int, default=0, help="LoRA rank for an LLM embedder (0: train all weights)")
    p.add_argument("--lora-layers", type=int, help="train the adapters of the last N blocks only (cheaper)")
    p.add_argument("--max-length", type=int, help="tokens per text (default 128)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, help="default 2e-5, or 1e-4 with --lora")
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--hard-negatives", type=int, default=3, help="mined per query each epoch")

    p = command(rsub, "eval", cmd_eval, "Recall@1/5/10, MRR, NDCG@10 of a retriever and of BM25")
    data_options(p, "eval uses the held-out part")
    p.add_argument("--retriever", default=DEFAULT_EMBEDDER, help="bm25, a model, or a trained retriever folder")

    p = command(rsub, "search", cmd_search, "rank the tools for one text")
    p.add_argument("text")
    p.add_argument("--tools", help=tools_help)
    p.add_argument("--retriever", default=DEFAULT_EMBEDDER, help="bm25, a model, or a trained retriever folder")
    p.add_argument("-k", type=int, default=10, help="how many tools to print")
