"""The reach ceiling of every knowledge benchmark: how often the WikiSearch index the tools read
holds a gold answer in its top passages for the example's question (toolformer/evaluation/reach.py).

    .venv/bin/python bench/knowledge_reach.py [--data-dir ../shared/data] [--limit N] [--corpus DUMP]

Prints one JSON line: per benchmark (LAMA-SQuAD, LAMA-Google-RE, NQ, WebQ; all examples unless
--limit) n, the ceiling at top-1 (the passage the tools return) and at top-5 with Wilson 95%
intervals, and the seconds its searches took; the index (default: the embedded 10,033 Wikipedia
leads) and its size. This bounds what any tool user can gain on these benchmarks with this index.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATA  # noqa: E402
from toolformer.benchmarks import load_examples  # noqa: E402
from toolformer.evaluation.reach import ceilings, index_info, reach_rank  # noqa: E402
from toolformer.tools import wikisearch  # noqa: E402

BENCHMARKS = ("lama-squad", "lama-google-re", "nq", "webq")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--limit", type=int, help="a seeded subset of N examples per benchmark")
    p.add_argument("--corpus", help="a Wikipedia dump (.jsonl/.parquet of title/text) instead of the embedded leads")
    a = p.parse_args()
    index = wikisearch.load_index(a.corpus, progress=True)
    figures = {}
    for name in BENCHMARKS:
        examples, info = load_examples(name, data_dir=a.data_dir, limit=a.limit)
        t0 = time.perf_counter()
        ranks = [reach_rank(index, e) for e in examples]
        figures[name] = {"n": len(examples), "left_out": info["left_out"], **ceilings(ranks),
                         "seconds": round(time.perf_counter() - t0, 2)}
    print(json.dumps({"index": index_info(index), "benchmarks": figures}))


if __name__ == "__main__":
    main()
