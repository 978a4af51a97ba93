"""QA tool calls per second: batched (executor.batch, as the execute stage runs them) against one
at a time, on the same real Natural Questions questions, in the same run.

    .venv/bin/python bench/qa_batch.py [--questions 32] [--batch-size 16] [--data ../shared/data]

Prints one JSON line: calls/s and CPU seconds of each way, their ratios, and how many of the
answers are identical (batched greedy decoding must give each question its answer alone).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATA, Timer  # noqa: E402
from toolformer.tools import ToolError, qa  # noqa: E402


def answers_alone(executor, questions: list[str]) -> list[str]:
    out = []
    for q in questions:
        try:
            out.append(executor(q, {}))
        except ToolError as err:
            out.append(f"error: {err}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--questions", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=qa.BATCH_SIZE)
    a = p.parse_args()
    rows = (a.data / "qa" / "nq_test.jsonl").read_text(encoding="utf-8").splitlines()[:a.questions]
    questions = [json.loads(line)["question"] for line in rows]
    t0 = time.perf_counter()
    executor = qa.make_executor(batch_size=a.batch_size)
    load_s = time.perf_counter() - t0
    executor(questions[0], {})  # warm-up: first-call allocations count for neither way
    alone, batched = Timer(), Timer()
    with alone:
        one = answers_alone(executor, questions)
    with batched:
        many = [f"error: {r}" if isinstance(r, ToolError) else r
                for r in executor.batch(questions, [{}] * len(questions))]
    n = len(questions)
    print(json.dumps({
        "questions": n, "batch_size": a.batch_size, "load_s": round(load_s, 2),
        "one_at_a_time_calls_per_s": round(n / alone.seconds, 3), "batched_calls_per_s": round(n / batched.seconds, 3),
        "speedup_wall": round(alone.seconds / batched.seconds, 2), "speedup_cpu": round(alone.cpu / batched.cpu, 2),
        "one_at_a_time_cpu_s": round(alone.cpu, 2), "batched_cpu_s": round(batched.cpu, 2),
        "identical_answers": sum(x == y for x, y in zip(one, many)),
        "differing": [{"question": q, "alone": x, "batched": y} for q, x, y in zip(questions, one, many) if x != y],
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
