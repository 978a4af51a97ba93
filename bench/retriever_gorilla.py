"""Tool retrieval on Gorilla APIBench: BM25, an embedder zero-shot, and the same embedder trained
on the other queries. Prints one JSON line.

    python bench/retriever_gorilla.py --set tf                       # MiniLM, all queries
    python bench/retriever_gorilla.py --set hf --hard-negatives 2
    # SmolLM2 on 2 CPU cores: LoRA on the top 8 of 30 blocks, 64 tokens, subsampled queries
    python bench/retriever_gorilla.py --set tf --encoder smollm2-135m-instruct --lora 16 --lora-layers 8 \
        --max-length 64 --epochs 2 --batch-size 16 --hard-negatives 1 --lr 1e-3 --limit-train 160 --limit-test 200
    (the same with --set hf --epochs 1: a second epoch would re-embed all 895 APIs to re-mine)

The queries (the `###Instruction` of each record; gold = its `api_call`) are split by a fixed hash
of their text: `--holdout` of them are the test set, the rest the training set; `--limit-train` and
`--limit-test` take seeded random samples of them (the JSON says how many were used). Queries whose
gold API is missing from the API file (77 of 911 on HF) are skipped and counted.
Data: ../shared/data/tool_retrieval (Apache-2.0, ShishirPatil/gorilla); set --data to move it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from toolformer.assets import DEFAULT_EMBEDDER  # noqa: E402
from toolformer.cli.flags import add_flags, from_args  # noqa: E402
from toolformer.config import DEFAULT_MAX_LENGTH, POOLINGS, RetrieverTraining  # noqa: E402
from toolformer.retrieval.bm25 import BM25  # noqa: E402
from toolformer.retrieval.data import QueryStats, query_pairs, read_queries, read_tool_set, split, subsample  # noqa: E402
from toolformer.retrieval.encoders import load_encoder  # noqa: E402
from toolformer.retrieval.metrics import evaluate  # noqa: E402
from toolformer.retrieval.train import DEFAULT_LR, LORA_LR, train  # noqa: E402

SETS = {"hf": ("gorilla_huggingface_api.jsonl", "gorilla_huggingface_eval.json"),
        "tf": ("gorilla_tensorflowhub_api.jsonl", "gorilla_tensorflow_eval.json")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=SETS, required=True)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tool_retrieval"))
    ap.add_argument("--encoder", default=DEFAULT_EMBEDDER)
    ap.add_argument("--pooling", choices=POOLINGS)
    ap.add_argument("--instruction")
    ap.add_argument("--lora", type=int, default=0)
    ap.add_argument("--lora-layers", type=int)
    ap.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    ap.add_argument("--holdout", type=float, default=0.5)
    ap.add_argument("--limit-train", type=int)
    ap.add_argument("--limit-test", type=int)
    add_flags(ap, RetrieverTraining)  # --epochs, --batch-size, --grad-accum, --lr, --temperature, --hard-negatives
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    data = Path(args.data)
    if not data.is_dir():
        sys.exit(f"Gorilla data not found at {data}: pass --data")
    api_file, eval_file = SETS[args.set]
    tools, repeated = read_tool_set(data / api_file)
    stats = QueryStats()
    queries = read_queries(data / eval_file, tools, stats=stats)
    test = subsample(split(queries, args.holdout, True), args.limit_test, args.seed)
    training_queries = subsample(split(queries, args.holdout, False), args.limit_train, args.seed)

    t0 = time.time()
    encoder = load_encoder(args.encoder, args.pooling, args.instruction, args.max_length)
    results = {"bm25": evaluate(BM25, tools, test), "zero_shot": evaluate(encoder, tools, test)}
    if args.lora:
        encoder.add_lora(args.lora, args.lora_layers)
    settings = from_args(RetrieverTraining, args, lr=args.lr or (LORA_LR if args.lora else DEFAULT_LR))
    history = train(encoder, query_pairs(training_queries, tools), list(tools.texts), settings, args.seed,
                    log=lambda *a: print(*a, file=sys.stderr))
    results["trained"] = evaluate(encoder, tools, test)
    print(json.dumps({
        "set": args.set, "encoder": args.encoder, "config": encoder.config(), "lora": args.lora, "lora_layers": args.lora_layers,
        "tools": len(tools), "repeated_tool_names": repeated, "queries": len(queries),
        "skipped_gold_not_in_api_file": stats.gold_not_in_tools, "train_queries": len(training_queries),
        "test_queries": len(test),
        "train": {**dataclasses.asdict(settings), "seed": args.seed, "history": history}, "results": results,
        "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
