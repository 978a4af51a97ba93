"""WikiSearch and QA figures on the real default corpus and real Natural Questions, and the
streamed index at scale on synthetic dumps.

    .venv/bin/python bench/wikisearch.py [--queries 1000] [--qa 5] [--data ../shared/data]
    .venv/bin/python bench/wikisearch.py --scale 100000,300000 [--naive]

Prints one JSON line. By default: the cold index build (in a fresh temporary cache), the load
from the disk cache, BM25 query latency (median, p99) and gold-answer recall of the top passages
over the first --queries NQ test questions, and the QA tool's answers to the first --qa questions
with their gold answers.

--scale: for each size, a synthetic dump of that many ~90-word passages (words drawn from a Zipf
law over a 200,000-word vocabulary, one passage per article) is indexed in a fresh process with a
fresh cache: build seconds (wall and CPU), the process's peak RSS (and its RSS after imports, the floor), query
latency over 200 three-word queries, each also per 100k passages. --naive builds the same dump
the way the index was built before (every passage and its tokens in memory, one bm25s index) in
another fresh process, for the ratio of peak memory in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolformer.tools import qa, wikisearch as ws  # noqa: E402


VOCABULARY = 200_000
PASSAGE_WORDS = 90


def synthetic_dump(path: Path, passages: int, seed: int = 0) -> None:
    """`passages` articles {"title", "text"} of PASSAGE_WORDS Zipf-distributed synthetic words."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, 3 + i % 6)) + "q" for i in range(VOCABULARY)]  # "q": never a stopword
    with path.open("w", encoding="utf-8") as f:
        for start in range(0, passages, 10_000):
            n = min(10_000, passages - start)
            ranks = np.minimum(rng.zipf(1.2, size=(n, PASSAGE_WORDS)) - 1, VOCABULARY - 1)
            for i, row in enumerate(ranks):
                text = " ".join(words[r] for r in row)
                f.write(json.dumps({"title": f"Article {start + i}", "text": text + "."}) + "\n")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(mode: str, dump: Path) -> None:
    """One build in this fresh process (its cache is TOOLFORMER_CACHE); prints its figures."""
    floor = peak_rss_mb()
    t0, c0 = time.perf_counter(), cpu_s()
    if mode == "streamed":
        index = ws.load_index(dump)
        build_s, build_cpu_s = time.perf_counter() - t0, cpu_s() - c0
        vocab = list(index.vocab)
        rng = np.random.default_rng(1)
        queries = [" ".join(vocab[i] for i in rng.integers(0, min(len(vocab), 20_000), 3)) for _ in range(200)]
        latencies = []
        for q in queries:
            t1 = time.perf_counter()
            index.search(q, 5)
            latencies.append((time.perf_counter() - t1) * 1000)
        figures = {"passages": len(index), "vocabulary": len(vocab), "shards": len(index.shards),
                   "query_ms_median": round(float(np.median(latencies)), 2),
                   "query_ms_p99": round(float(np.percentile(latencies, 99)), 2)}
    else:  # as before: the passages and their tokens in memory, one bm25s index
        import bm25s
        passages = ws.load_passages(dump)
        retriever = bm25s.BM25()
        retriever.index(ws._tokens([f"{p['title']} {p['text']}" for p in passages]), show_progress=False)
        build_s, build_cpu_s = time.perf_counter() - t0, cpu_s() - c0
        figures = {"passages": len(passages)}
    print(json.dumps({**figures, "build_s": round(build_s, 2), "build_cpu_s": round(build_cpu_s, 2),
                      "rss_floor_mb": round(floor, 1),
                      "peak_rss_mb": round(peak_rss_mb(), 1)}))


def scale(sizes: list[int], naive: bool) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            dump = Path(tmp) / f"dump-{n}.jsonl"
            synthetic_dump(dump, n)
            row = {"passages": n, "dump_mb": round(dump.stat().st_size / 2 ** 20, 1)}
            for mode in ("streamed", "naive") if naive else ("streamed",):
                env = {**os.environ, "TOOLFORMER_CACHE": str(Path(tmp) / f"cache-{mode}-{n}")}
                out = subprocess.run([sys.executable, __file__, "--child", mode, str(dump)], env=env,
                                     capture_output=True, text=True, check=True).stdout
                row[mode] = json.loads(out.strip().splitlines()[-1])
            per = n / 100_000
            s = row["streamed"]
            row["streamed"] |= {"build_cpu_s_per_100k": round(s["build_cpu_s"] / per, 2),
                                "query_ms_median_per_100k": round(s["query_ms_median"] / per, 3)}
            if naive:
                row["peak_rss_naive_over_streamed"] = round(row["naive"]["peak_rss_mb"] / s["peak_rss_mb"], 2)
                row["build_cpu_naive_over_streamed"] = round(row["naive"]["build_cpu_s"] / s["build_cpu_s"], 2)
            dump.unlink()
            rows.append(row)
    def above_floor(figures: dict) -> float:
        return max(figures["peak_rss_mb"] - figures["rss_floor_mb"], 0.1)  # MB the build added
    growth = {"passages": round(rows[-1]["passages"] / rows[0]["passages"], 2)}
    for mode in ("streamed", "naive") if naive else ("streamed",):
        growth[f"{mode}_peak_rss_above_floor"] = round(above_floor(rows[-1][mode]) / above_floor(rows[0][mode]), 2)
    print(json.dumps({"shard_passages": ws.SHARD_PASSAGES, "sizes": rows, "growth_first_to_last": growth}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--qa", type=int, default=5, help="questions answered by the QA tool")
    parser.add_argument("--scale", help="comma-separated synthetic dump sizes (passages), e.g. 100000,300000")
    parser.add_argument("--naive", action="store_true", help="with --scale: also the in-memory bm25s build")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "DUMP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], Path(args.child[1]))
    if args.scale:
        return scale([int(n) for n in args.scale.split(",")], args.naive)
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
        "passages": len(warm),
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
