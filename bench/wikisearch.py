"""WikiSearch and QA figures on the real default corpus and real Natural Questions.

    .venv/bin/python bench/wikisearch.py [--queries 1000] [--qa 5] [--data ../shared/data]

Prints one JSON line: the cold index build (in a fresh temporary cache), the load from the disk
cache, BM25 query latency (median, p99) and gold-answer recall of the top passages over the
first --queries NQ test questions, and the QA tool's answers to the first --qa questions with
their gold answers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolformer.tools import qa, wikisearch as ws  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--qa", type=int, default=5, help="questions answered by the QA tool")
    args = parser.parse_args()
    nq = args.data / "qa" / "nq_test.jsonl"
    if not nq.exists():
        sys.exit(f"{nq} not found: pass --data (the folder with qa/nq_test.jsonl)")
    questions = [json.loads(line) for line in nq.read_text(encoding="utf-8").splitlines()[:args.queries]]

    with tempfile.TemporaryDirectory() as cache:
        os.environ["TOOLFORMER_CACHE"] = cache  # a cold build that leaves the user's cache alone
        cold = ws.load_index()
        assert cold.built
        ws._loaded.clear()
        warm = ws.load_index()
        assert not warm.built

    latencies, recall1, recall5 = [], 0, 0
    for q in questions:
        t0 = time.perf_counter()
        hits = warm.search(q["question"], 5)
        latencies.append((time.perf_counter() - t0) * 1000)
        found = [any(a.lower() in text.lower() for a in q["answers"]) for _, text, _ in hits]
        recall1 += bool(found[:1] and found[0])
        recall5 += any(found)

    del os.environ["TOOLFORMER_CACHE"]  # the QA tool uses the user's cache (model, index)
    t0 = time.perf_counter()
    answer = qa.make_executor()
    qa_load_s = time.perf_counter() - t0
    answers = []
    for q in questions[:args.qa]:
        t0 = time.perf_counter()
        try:
            result = answer(q["question"], {})
        except Exception as err:  # noqa: BLE001 - a failed answer is a figure too
            result = f"error: {err}"
        answers.append({"question": q["question"], "answer": result, "gold": q["answers"],
                        "correct": any(a.lower() in result.lower() for a in q["answers"]),
                        "seconds": round(time.perf_counter() - t0, 2)})

    print(json.dumps({
        "passages": len(warm.passages),
        "build_cold_s": round(cold.seconds, 3),
        "load_cached_s": round(warm.seconds, 3),
        "queries": len(latencies),
        "query_ms_median": round(float(np.median(latencies)), 3),
        "query_ms_p99": round(float(np.percentile(latencies, 99)), 3),
        "answer_recall_at_1": round(recall1 / len(questions), 4),
        "answer_recall_at_5": round(recall5 / len(questions), 4),
        "qa_load_s": round(qa_load_s, 2),
        "qa": answers,
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
