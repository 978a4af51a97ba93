"""Training a retriever: InfoNCE over in-batch negatives plus hard negatives re-mined from the
current model at every epoch (ANCE), on HW3-style pairs or on the kept calls of curated runs."""
from __future__ import annotations

import dataclasses
import random
import time
from typing import TYPE_CHECKING, Sequence

from toolformer.errors import UserValueError
from toolformer.retrieval.data import (Pair, QueryStats, load_queries, load_tool_set, query_pairs, read_pairs,
                                       subsample)
from toolformer.retrieval.encoders import Encoder, LLMEncoder, load_encoder, save_retriever
from toolformer.retrieval.index import tool_embeddings, top_k
from toolformer.retrieval.synthesize import synthesize, synthetic_pairs

if TYPE_CHECKING:
    from toolformer.config import RetrieverTrainSettings, RetrieverTraining

DEFAULT_LR, LORA_LR = 2e-5, 1e-4  # LoRA adapters start at zero and need larger steps


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


def train(encoder: Encoder, pairs: list[Pair], pool: Sequence[str], s: RetrieverTraining, seed: int = 0,
          log=print) -> list[dict]:
    """InfoNCE with in-batch and hard negatives (re-mined each epoch); returns per-epoch figures."""
    import torch
    torch.manual_seed(seed)
    rng = random.Random(seed)
    params = [p for p in encoder.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.lr or DEFAULT_LR)
    history = []
    for epoch in range(1, s.epochs + 1):
        t0 = time.time()
        mined = mine_hard_negatives(encoder, pairs, pool, s.hard_negatives)
        order = list(range(len(pairs)))
        rng.shuffle(order)
        batches = [order[i:i + s.batch_size] for i in range(0, len(order), s.batch_size)]
        loss = _train_epoch(encoder, optimizer, [[pairs[i] for i in b] for b in batches],
                            [[mined[i] for i in b] for b in batches], s, log)
        history.append({"epoch": epoch, "loss": round(loss, 4), "steps": len(batches),
                        "seconds": round(time.time() - t0, 1)})
        log(f"epoch {epoch}: loss {history[-1]['loss']:.4f} ({history[-1]['seconds']} s)")
    return history


def _train_epoch(encoder: Encoder, optimizer, batches: list[list[Pair]], mined: list[list[tuple[str, ...]]],
                 s: RetrieverTraining, log=print) -> float:
    """One pass over the batches, stepping every grad_accum batches; returns the mean loss."""
    import torch
    encoder.model.train()
    total = 0.0
    for step, (batch, negatives) in enumerate(zip(batches, mined), 1):
        texts, labels, mask = batch_candidates(batch, negatives)
        q = encoder.embed([p.query for p in batch], is_query=True)
        d = encoder.embed(texts, is_query=False)
        loss = info_nce(q, d, torch.tensor(labels, device=q.device), torch.tensor(mask, device=q.device),
                        s.temperature)
        (loss / s.grad_accum).backward()
        if step % s.grad_accum == 0 or step == len(batches):
            optimizer.step()
            optimizer.zero_grad()
            encoder.fingerprint = None  # cached embeddings no longer match the weights
        total += loss.item()
        if step % 10 == 0:
            log(f"  step {step}/{len(batches)}: mean loss {total / step:.4f}")
    encoder.model.eval()
    return total / len(batches)


SYNTHETIC_INSTRUCTION = "Given a user request, retrieve the API that fulfils it"


def training_data(s: RetrieverTrainSettings, stats: QueryStats, log=print) -> tuple[list[Pair], list[str], dict]:
    """(pairs, the candidate texts hard negatives are mined from, what synthesis did) from exactly
    one of --pairs, --run, --queries and --synthesize; held-out queries stay out."""
    if bool(s.pairs) + bool(s.run) + bool(s.queries) + bool(s.synthesize) != 1:
        raise UserValueError("give exactly one of --pairs, --run, --queries, --synthesize")
    synthesis: dict = {}
    if s.pairs:
        pairs = subsample(read_pairs(s.pairs), s.limit, s.seed)
        pool = sorted({t for p in pairs for t in (p.positive, *p.negatives)})
    elif s.synthesize:
        if not s.tools:
            raise UserValueError("--synthesize writes queries from the documents of --tools FILE: give it")
        tools, _ = load_tool_set(s.tools)
        records = synthesize(tools, s.synthesize, s.out, s.writer, s.writer_model, s.seed, log=log)
        pairs, synthesis = synthetic_pairs(records, tools, s.round_trip, s.hard_negatives)
        log(f"synthetic queries: {synthesis['synthetic']} written, {synthesis['empty_generations']} empty, "
            f"{synthesis['ambiguous']} written for documents of several api_names, "
            f"{synthesis['removed_by_round_trip']} removed by the BM25 round trip (top {s.round_trip})")
        pool = list(tools.texts)
    else:
        tools, _ = load_tool_set(s.tools)
        pairs, pool = query_pairs(load_queries(s, tools, False, stats), tools), list(tools.texts)
    if not pairs:
        raise UserValueError("no training pairs (did the run keep no calls, or did the round trip remove every "
                             "synthetic query?)")
    return pairs, pool, synthesis


def train_retriever(s: RetrieverTrainSettings, log=print) -> dict:
    """Train the encoder `s.encoder` (optionally with LoRA) and save it to `s.out`; returns the
    figures that retriever.json records under "training"."""
    from toolformer.config import RetrieverTraining
    stats = QueryStats()
    t0 = time.time()
    pairs, pool, synthesis = training_data(s, stats, log)
    synthesis_seconds = round(time.time() - t0, 1)
    instruction = SYNTHETIC_INSTRUCTION if s.synthesize and s.instruction is None else s.instruction
    encoder = load_encoder(s.encoder, s.pooling, instruction, s.max_length)
    if s.lora:
        if not isinstance(encoder, LLMEncoder):
            raise UserValueError("--lora applies to an LLM embedder only")
        encoder.add_lora(s.lora, s.lora_layers)
    s = dataclasses.replace(s, lr=s.lr or (LORA_LR if s.lora else DEFAULT_LR))
    log(f"training {s.encoder} on {len(pairs)} pairs, {len(pool)} candidate texts")
    t1 = time.time()
    history = train(encoder, pairs, pool, s, s.seed, log=log)
    optimisation = {f.name: getattr(s, f.name) for f in dataclasses.fields(RetrieverTraining)}
    figures = {"pairs": len(pairs), "pool": len(pool), "encoder": s.encoder, "lora": s.lora,
               "lora_layers": s.lora_layers, **optimisation, "seed": s.seed,
               "history": history, "seconds": round(time.time() - t1, 1),
               "skipped_bad": stats.skipped_bad, "skipped_at_document_start": stats.skipped_empty}
    if s.synthesize:
        figures["synthesis"] = {**synthesis, "writer": s.writer, "writer_model": s.writer_model,
                                "seconds": synthesis_seconds}
    save_retriever(encoder, s.out, figures)
    log(f"saved to {s.out}")
    return {**figures, "out": s.out}
