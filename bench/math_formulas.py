"""How many of the math sets' formulas does the calculator reproduce?

    .venv/bin/python bench/math_formulas.py [--data ../shared/data/math]    # one JSON line

ASDiv's `formula`, SVAMP's `Equation` and GSM8K's `<<expression=result>>` annotations are read by
toolformer.corpus.annotations, the reader training uses (units dropped, the last of chained steps).
Each expression runs on the calculator; it is reproduced when its result agrees with the stated one
(ASDiv's and GSM8K's result, SVAMP's answer) as the reader's `agrees` decides: equal to 2 decimals.

Per dataset: rows, the rows the reader refuses (per reason: unparseable, answer not a number,
formula result differs from the answer; none of them reaches the calculator), formulas read,
formulas reproduced, and the failed formulas per reason: each calculator error (digits written N)
and the disagreements, of which "data rounds to fewer decimals" are those whose exact value,
rounded to the decimals the data writes, is the stated result (16.29 written 16.3).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATA  # noqa: E402
from toolformer.corpus.annotations import CALCULATOR, FORMATS, agrees, parse_number  # noqa: E402
from toolformer.run.records import BadRecord, read_jsonl  # noqa: E402
from toolformer.tools import run_call  # noqa: E402
from toolformer.tools.calculator import evaluate, format_number  # noqa: E402

DATASETS = (("asdiv", "asdiv.jsonl", "asdiv"), ("svamp", "svamp.jsonl", "svamp"),
            ("gsm8k", "gsm8k_train.jsonl", "gsm8k"))
ROUNDED = "disagrees: data rounds to fewer decimals"
DISAGREES = "disagrees"


def rounded_in_data(expression: str, stated: str) -> bool:
    """The exact value, rounded to the decimals the stated result is written with, is that result."""
    decimals = len(stated.strip().partition(".")[2])
    return parse_number(format_number(evaluate(expression), decimals)) == parse_number(stated)


def measure(path: Path, format: str) -> dict:
    parse_row = FORMATS.get(format)
    calculate = CALCULATOR.make_executor(**CALCULATOR.options)
    rows, refused, failed, formulas, reproduced = 0, Counter(), Counter(), 0, 0
    for line, row in read_jsonl(path):
        rows += 1
        try:
            _, annotations = parse_row(row, f"{path.stem}:{line}", (path, line))
        except BadRecord as err:
            refused[getattr(err, "kind", "bad record")] += 1
            continue
        for annotation in annotations:
            formulas += 1
            out = run_call(CALCULATOR, calculate, annotation.input)
            if out.error is not None:
                failed["calculator: " + re.sub(r"\d+", "N", out.error)] += 1
            elif agrees(annotation.result, out.result):
                reproduced += 1
            else:
                failed[ROUNDED if rounded_in_data(annotation.input, annotation.result) else DISAGREES] += 1
    return {"rows": rows, "rows_refused": dict(refused.most_common()), "formulas": formulas,
            "reproduced": reproduced, "failed": dict(failed.most_common())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA / "math"), help="folder with asdiv, svamp and gsm8k_train .jsonl")
    args = parser.parse_args()
    print(json.dumps({name: measure(Path(args.data) / file, format) for name, file, format in DATASETS}))


if __name__ == "__main__":
    main()
