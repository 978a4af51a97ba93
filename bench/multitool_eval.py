"""The whole multi-tool evaluation table in one command (issue 20 §5).

    .venv/bin/python bench/multitool_eval.py --model multi=runs/m/model/adapter \\
        --model control=runs/m/control/adapter --model base= --control control \\
        [--benchmarks svamp,asdiv,lama-squad,lama-google-re,nq,webq,dateset] [--limit 100] \\
        [--data-dir ../shared/data] [--out runs/suite] [--batch-size 16] [--table-only]

Each --model NAME=ADAPTER (NAME= for the base model) is evaluated on every benchmark, tools off
and on (the --control model tools off), resumable, under OUT/NAME/; then OUT/suite.md and
OUT/suite.json are written from the per-example record files (toolformer/evaluation/suite.py) and
the markdown is printed, then one JSON line of the figures. --table-only rewrites the table from
what OUT holds, evaluating nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATA  # noqa: E402
from toolformer.evaluation.suite import SUITE, run_suite, suite_table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="NAME=ADAPTER",
                   help="a model to evaluate: its adapter folder, or nothing for the base model; repeatable")
    p.add_argument("--control", help="the NAME of the no-call control (evaluated tools off, paired against)")
    p.add_argument("--benchmarks", default=",".join(SUITE))
    p.add_argument("--limit", type=int, help="a seeded subset of N examples per benchmark")
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--out", default="runs/suite")
    p.add_argument("--base-model", help="base model of NAME= entries (default: smollm2-135m-instruct)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args()
    models = {}
    for spec in a.model:
        name, sep, adapter = spec.partition("=")
        if not sep or not name:
            p.error(f"--model expects NAME=ADAPTER (or NAME= for the base model), got {spec!r}")
        models[name] = adapter or None
    benchmarks = [b for b in a.benchmarks.split(",") if b]
    if a.table_only:
        result = suite_table(a.out, list(models), a.control, benchmarks)
    else:
        result = run_suite(models, a.control, benchmarks, a.out, data_dir=a.data_dir, limit=a.limit,
                           batch_size=a.batch_size, model=a.base_model, progress=False)
    print((Path(a.out) / "suite.md").read_text(encoding="utf-8"))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
