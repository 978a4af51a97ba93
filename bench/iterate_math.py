"""The corpora of issue 11's iterated run: a seed with calls, unlabelled GSM8K text, held-out gold.

    python bench/iterate_math.py corpora OUT_DIR [--gsm8k-seed 500] [--unlabelled 300] [--heldout 300]
    python bench/iterate_math.py table --benchmark svamp NAME=EVAL_DIR ...    # markdown, to stdout

`corpora` writes, from ../shared/data/math:
  seed.jsonl        ASDiv's train split ("Question: ...\\nAnswer: <call> <answer>", the eval's prompt)
                    and the first --gsm8k-seed GSM8K solutions with their calls, in our own syntax
                    (read with --seed-format toolformer);
  unlabelled.jsonl  the next --unlabelled GSM8K solutions without their calls, the gold ones kept in
                    meta["gold"]: round 1 samples these, so `bench/gsm8k_recovery.py score` on round 1
                    is the recovery of the seed model as a sampler (it never saw these solutions);
  heldout.jsonl     --heldout solutions from the end of the file, the same way, for other samplers;
  tools/, control/  the seed as finetuning corpora (`toolformer finetune --data`): with its calls (all
                    kept, as iterate's --seed-filter all keeps them) and the same documents without
                    them (the no-call control), both split as `build` splits (5% validation, seed 0).
GSM8K documents are "<question>\\n<solution>", without the Question:/Answer: frame: the seed teaches
that the frame asks for a short answer (SVAMP is scored on the first number of the output) while a
worked solution is free text with calls inside.

`table` reads the evaluations `toolformer eval --tools both --out EVAL_DIR` wrote (one per model,
in the order given): accuracy with its 95% Wilson interval tools off and on, the call rate, on - off
(Newcombe interval, exact McNemar p), then tools-on of each model paired against every earlier
model's tools off and on, on the examples both evaluated.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATA  # noqa: E402
from toolformer.benchmarks import get_benchmark  # noqa: E402
from toolformer.corpus.annotations import AnnotationStats, read_annotated, split_rows  # noqa: E402
from toolformer.corpus.build import heldout_split, write_corpus  # noqa: E402
from toolformer.corpus.calls import insert_calls, strip_calls  # noqa: E402
from toolformer.corpus.syntax import TOOLFORMER, Call  # noqa: E402
from toolformer.evaluation.evaluate import read_outcomes, difference_ci, p_value, percent_ci  # noqa: E402
from toolformer.stats import paired  # noqa: E402


def with_calls(doc) -> dict:
    text = insert_calls(doc.document.text, [(a.position, Call(a.tool, a.input, a.result))
                                            for a in doc.annotations], TOOLFORMER)
    return {"id": doc.id, "text": text}


def without_calls(doc) -> dict:
    return {"id": doc.id, "text": doc.document.text,
            "meta": {"gold": [[a.position, a.input, a.result] for a in doc.annotations]}}


def write(path: Path, rows: list[dict]) -> int:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


def corpora(a) -> None:
    out, math = Path(a.out), Path(a.data_dir) / "math"
    out.mkdir(parents=True, exist_ok=True)
    # GSM8K without the eval's frame: "<question>\n<solution>", its <<expr=result>> calls still in
    plain = out / "gsm8k_plain_annotated.jsonl"
    with (math / "gsm8k_train.jsonl").open(encoding="utf-8") as f, plain.open("w", encoding="utf-8") as g:
        for line, raw in enumerate(f, 1):
            row = json.loads(raw)
            g.write(json.dumps({"id": f"gsm8k_train:{line}", "text": f"{row['question'].strip()}\n"
                                f"{row['answer'].strip()}"}, ensure_ascii=False) + "\n")
    stats = {"asdiv": AnnotationStats(), "gsm8k": AnnotationStats()}
    split = get_benchmark("asdiv").split
    asdiv_train, _ = split_rows(read_annotated(math / "asdiv.jsonl", "asdiv", skip_bad=True, stats=stats["asdiv"]),
                                split.test_fraction, split.seed)
    gsm8k = list(read_annotated(plain, "gsm8k", skip_bad=True, stats=stats["gsm8k"]))
    seed_end, unlabelled_end = a.gsm8k_seed, a.gsm8k_seed + a.unlabelled
    if unlabelled_end > len(gsm8k) - a.heldout:
        raise SystemExit(f"{len(gsm8k)} GSM8K solutions are too few for these sizes")
    seed = [with_calls(d) for d in itertools.chain(asdiv_train, gsm8k[:seed_end])]
    counts = {
        "seed": write(out / "seed.jsonl", seed),
        "seed_asdiv": len(asdiv_train), "seed_gsm8k": seed_end,
        "unlabelled": write(out / "unlabelled.jsonl", [without_calls(d) for d in gsm8k[seed_end:unlabelled_end]]),
        "heldout": write(out / "heldout.jsonl", [without_calls(d) for d in gsm8k[len(gsm8k) - a.heldout:]]),
        "read": {name: s.as_dict() for name, s in stats.items()},
    }
    counts["corpora"] = seed_corpora(seed, out / "seed.jsonl", out)
    print(json.dumps(counts))


def seed_corpora(seed: list[dict], source: Path, out: Path, validation: float = 0.05) -> dict:
    rows = {"tools": [], "control": []}
    for doc in seed:
        plain, calls = strip_calls(doc["text"], TOOLFORMER)
        kept = [{"tool": c.tool, "input": c.input, "result": c.result, "position": p, "usefulness": None}
                for p, c in calls]
        rows["tools"].append({"id": doc["id"], "text": doc["text"], "n_calls": len(kept), "calls": kept})
        rows["control"].append({"id": doc["id"], "text": plain, "n_calls": 0, "calls": []})
    sizes = {}
    for name, corpus in rows.items():
        splits = heldout_split(corpus, validation, seed=0)
        sizes[name] = {part: len(split) for part, split in splits.items()}
        write_corpus(out / name, splits, {"syntax": TOOLFORMER.name, "source": str(source), **sizes[name]})
    return sizes


def table(a) -> None:
    models = dict(spec.split("=", 1) for spec in a.models)
    summaries = {name: json.loads((Path(d) / f"{a.benchmark}.summary.json").read_text()) for name, d in models.items()}
    print(f"| {a.benchmark} | n | tools off (95% CI) | tools on (95% CI) | calls | on - off (95% CI) | p |")
    print("|---|---|---|---|---|---|---|")
    for name, s in summaries.items():
        pair = s["on_vs_off"]
        print(f"| {name} | {s['n']} | {percent_ci(s['tools_off'])} | {percent_ci(s['tools_on'])} "
              f"| {100 * s['call_rate']:.1f}% | {difference_ci(pair)} | {p_value(pair['p_value'])} |")
    print(f"\n| {a.benchmark}: tools on of | against | n | difference (95% CI) | McNemar p |")
    print("|---|---|---|---|---|")
    names = list(models)
    for i, name in enumerate(names):
        on = read_outcomes(Path(models[name]) / f"{a.benchmark}.tools-on.jsonl")
        for other in names[:i]:
            for mode in ("off", "on"):
                them = read_outcomes(Path(models[other]) / f"{a.benchmark}.tools-{mode}.jsonl")
                ids = [k for k in on if k in them]
                pair = paired([them[k][0] for k in ids], [on[k][0] for k in ids])
                print(f"| {name} | {other}, tools {mode} | {pair['n']} | {difference_ci(pair)} "
                      f"| {p_value(pair['p_value'])} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("corpora")
    c.set_defaults(func=corpora)
    c.add_argument("out")
    c.add_argument("--data-dir", default=str(DATA))
    c.add_argument("--gsm8k-seed", type=int, default=500)
    c.add_argument("--unlabelled", type=int, default=300)
    c.add_argument("--heldout", type=int, default=300)
    t = sub.add_parser("table")
    t.set_defaults(func=table)
    t.add_argument("--benchmark", required=True)
    t.add_argument("models", nargs="+", metavar="NAME=EVAL_DIR")
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
