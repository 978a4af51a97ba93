"""Shared set-up for the benchmarks: the default model and real GSM8K documents."""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--docs", type=int, default=8, help="GSM8K solutions to use")
    p.add_argument("--data", default=str(DATA / "math" / "gsm8k_train.jsonl"))
    return p


def gsm8k_documents(path: str, n: int) -> list[tuple[str, list[tuple[int, str, str]]]]:
    """(text without <<expr=result>> annotations, [(char position, expr, result)]) per solution."""
    docs = []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            solution = row["answer"].split("####")[0].strip()
            text, calls, last = "", [], 0
            for m in re.finditer(r"<<([^=>]*)=([^>]*)>>", solution):
                text += solution[last:m.start()]
                calls.append((len(text), m.group(1), m.group(2)))
                last = m.end()
            text += solution[last:]
            docs.append((row["question"] + "\n" + text, [(len(row["question"]) + 1 + p, e, r) for p, e, r in calls]))
            if len(docs) == n:
                break
    return docs


class Timer:
    """Seconds spent inside `with timer:`, summed over every use: wall-clock, and CPU time of this
    process (`cpu`), which other jobs on a shared machine barely change: compare ratios of it."""
    seconds = cpu = 0.0

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds += time.perf_counter() - self.t0
        self.cpu += time.process_time() - self.c0
