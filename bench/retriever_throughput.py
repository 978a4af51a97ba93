"""Embedding throughput (texts/s): our Encoder.encode (texts sorted by length, batched) beside
sentence-transformers' own MiniLM `encode`, on the same real texts (Gorilla API documents and
queries), with the same vectors checked; optionally the SmolLM2 last-token embedder too.
Prints ONE JSON line.

    python bench/retriever_throughput.py                 # MiniLM: ours vs sentence-transformers
    python bench/retriever_throughput.py --llm           # plus smollm2-135m-instruct as embedder
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from toolformer.assets import DEFAULT_EMBEDDER, DEFAULT_LM  # noqa: E402
from toolformer.retrieval.data import read_queries, read_tool_set  # noqa: E402
from toolformer.retrieval.encoders import load_encoder  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tool_retrieval"))
    ap.add_argument("--texts", type=int, default=256, help="texts to embed (half documents, half queries)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    ap.add_argument("--llm", action="store_true", help=f"also time {DEFAULT_LM} as a last-token embedder")
    args = ap.parse_args()

    data = Path(args.data)
    tools, _ = read_tool_set(data / "gorilla_huggingface_api.jsonl")
    queries = [q.text for q in read_queries(data / "gorilla_huggingface_eval.json", tools)]
    texts = list(tools.texts[:args.texts // 2]) + queries[:args.texts - args.texts // 2]

    ours = load_encoder(DEFAULT_EMBEDDER)
    st_model = ours.model  # the same SentenceTransformer: only the batching differs
    ours_s, ours_vec = timed(lambda: ours.encode(texts, is_query=False, batch_size=args.batch_size), args.repeats)
    st_s, st_vec = timed(lambda: st_model.encode(texts, batch_size=args.batch_size, normalize_embeddings=True,
                                                  convert_to_numpy=True, show_progress_bar=False), args.repeats)
    def unsorted():  # the same batches in file order: each pads to its longest text
        import torch
        with torch.inference_mode():
            return np.concatenate([ours.embed(texts[i:i + args.batch_size], False).numpy()
                                   for i in range(0, len(texts), args.batch_size)])
    naive_s, _ = timed(unsorted, 1)
    figures = {"texts": len(texts), "batch_size": args.batch_size, "max_length": ours.max_length,
               "ours_texts_per_s": round(len(texts) / ours_s, 1),
               "sentence_transformers_texts_per_s": round(len(texts) / st_s, 1),
               "unsorted_texts_per_s": round(len(texts) / naive_s, 1),
               "ours_vs_sentence_transformers": round(st_s / ours_s, 2), "ours_vs_unsorted": round(naive_s / ours_s, 2),
               "max_abs_vector_difference": float(np.abs(ours_vec - st_vec).max())}
    if args.llm:
        llm = load_encoder(DEFAULT_LM)
        llm_s, _ = timed(lambda: llm.encode(texts, is_query=False, batch_size=args.batch_size), 1)
        figures["smollm2_embedder_texts_per_s"] = round(len(texts) / llm_s, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
