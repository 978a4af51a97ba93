"""Calculator fuzz throughput and worst latency, on the same ≥10k cases as tests/test_calculator.py.

    .venv/bin/python bench/calculator_fuzz.py [--seed 1234] [--rounds 3]

Prints one JSON line: inputs/s through the raw executor and through tools.run_call (thread pool,
timeout, result cap), and the slowest single input (ms).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_calculator import fuzz_cases  # noqa: E402  (the test owns the case generator)
from toolformer.tools import ToolError, run_call  # noqa: E402
from toolformer.tools.calculator import TOOL, make_executor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the cases; best pass counts")
    args = parser.parse_args()
    calc = make_executor()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [text for text, _, _ in fuzz_cases(args.seed, Path(tmp))]
    best_pass, worst = float("inf"), 0.0
    for _ in range(args.rounds):
        t_pass = time.perf_counter()
        for text in inputs:
            t0 = time.perf_counter()
            try:
                calc(text, {})
            except ToolError:
                pass
            worst = max(worst, time.perf_counter() - t0)
        best_pass = min(best_pass, time.perf_counter() - t_pass)
    t0 = time.perf_counter()
    errors = sum(run_call(TOOL, calc, text).error is not None for text in inputs)
    run_call_s = time.perf_counter() - t0
    print(json.dumps({
        "inputs": len(inputs),
        "refused": errors,
        "executor_inputs_per_s": round(len(inputs) / best_pass),
        "run_call_inputs_per_s": round(len(inputs) / run_call_s),
        "worst_ms": round(worst * 1000, 3),
    }))


if __name__ == "__main__":
    main()
