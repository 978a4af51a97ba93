"""How many GSM8K calculator annotations do the kept calls recover?

    python bench/gsm8k_recovery.py corpus OUT.jsonl --docs 300    # the corpus, annotations removed
    toolformer curate --corpus OUT.jsonl --run gsm --tools calculator
    python bench/gsm8k_recovery.py score --run gsm                  # one JSON line

A gold annotation `<<48/2=24>>` is recovered by a scored call at the same place (±1 token) with
the same numeric result. Precision and recall are given at the run's τ_f and at 0.25, 0.5 and 1.0
(the scored records hold the usefulness, so other thresholds need no re-run).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATA, gsm8k_documents  # noqa: E402
from toolformer.lm.loading import load_tokenizer  # noqa: E402


def number(text: str | None) -> float | None:
    try:
        return round(float(str(text).replace(",", "").strip()), 2)
    except (TypeError, ValueError):
        return None


def write_corpus(out: str, docs: int, data: str) -> None:
    with open(out, "w") as f:
        for i, (text, calls) in enumerate(gsm8k_documents(data, docs)):
            f.write(json.dumps({"id": f"gsm8k-{i}", "text": text, "meta": {"gold": calls}}) + "\n")


def score(run_dir: Path, model: str) -> dict:
    tok = load_tokenizer(model)
    gold = {}  # doc -> [(token index, value)]
    for line in open(run_dir / "documents.jsonl"):
        doc = json.loads(line)
        offsets = tok(" " + doc["text"], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        starts = [max(0, a - 1) for a, _ in offsets]
        gold[doc["id"]] = [(min(range(len(starts)), key=lambda t: abs(starts[t] - pos)), number(res))
                           for pos, _, res in doc["meta"]["gold"]]
    scored = [json.loads(line) for line in open(run_dir / "calculator" / "scored.jsonl")]
    total_gold = sum(map(len, gold.values()))
    out = {"documents": len(gold), "gold_annotations": total_gold, "scored": len(scored)}
    for tau in (0.25, 0.5, 1.0):
        kept = [r for r in scored if r["usefulness"] is not None and r["usefulness"] >= tau]
        hits, found = 0, set()
        for r in kept:
            match = [(r["doc_id"], g) for g, (t, v) in enumerate(gold[r["doc_id"]])
                     if abs(t - r["token_index"]) <= 1 and v is not None and number(r["result"]) == v]
            hits += bool(match)
            found.update(match)
        out[f"tau_f={tau}"] = {"kept": len(kept), "precision": round(hits / len(kept), 3) if kept else None,
                               "recall": round(len(found) / total_gold, 3), "recovered": len(found)}
    # where the funnel loses them, before filtering: gold annotations with a candidate at their place
    # (any call), with a candidate of their result (anywhere in the document), and with both at once
    place, value, both = set(), set(), set()
    for r in scored:
        for g, (t, v) in enumerate(gold[r["doc_id"]]):
            near, same = abs(t - r["token_index"]) <= 1, v is not None and number(r["result"]) == v
            place.update([(r["doc_id"], g)] if near else [])
            value.update([(r["doc_id"], g)] if same else [])
            both.update([(r["doc_id"], g)] if near and same else [])
    out |= {"gold_places_proposed": len(place), "gold_results_proposed": len(value),
            "recoverable_by_candidates": len(both)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("out")
    c.add_argument("--docs", type=int, default=300)
    c.add_argument("--data", default=str(DATA / "math" / "gsm8k_train.jsonl"))
    s = sub.add_parser("score")
    s.add_argument("--run", required=True)
    s.add_argument("--runs-dir", default="runs")
    s.add_argument("--model", default="smollm2-135m-instruct")
    a = p.parse_args()
    if a.cmd == "corpus":
        write_corpus(a.out, a.docs, a.data)
    else:
        print(json.dumps(score(Path(a.runs_dir) / a.run, a.model)))


if __name__ == "__main__":
    main()
