"""How many GSM8K calculator annotations do the kept calls recover?

    python bench/gsm8k_recovery.py corpus OUT.jsonl --docs 300 [--skip 500]   # annotations removed
    toolformer curate --corpus OUT.jsonl --run gsm --tools calculator
    python bench/gsm8k_recovery.py score --run gsm                  # one JSON line

An annotation-sourced run (`toolformer curate --from-annotations gsm8k`) is scored the same way,
its gold read from <run>/annotations.jsonl: every gold place must then be proposed (recall of the
candidates 100%), which checks that annotation positions line up with the sampler's.

The corpus is read by toolformer.corpus.annotations (format gsm8k): each solution without its
`<<48/2=24>>` annotations, the gold calls kept in meta["gold"] as [position, input, result].
--skip leaves out the first solutions (e.g. those a seed set was trained on), so the recovery is
measured on held-out ones. A gold annotation is recovered by a call at the same place (±1 token)
with the same numeric result. Precision and recall are given at τ_f = 0.25, 0.5 and 1.0 (the
scored records hold the usefulness, so other thresholds need no re-run).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATA  # noqa: E402
from toolformer.corpus.annotations import AnnotationStats, parse_number, read_annotated  # noqa: E402
from toolformer.corpus.build import read_kept_calls  # noqa: E402
from toolformer.lm.loading import load_tokenizer  # noqa: E402
from toolformer.run import layout  # noqa: E402
from toolformer.run.records import SCORED, read_jsonl  # noqa: E402


def value(text: str | None) -> float | None:
    number = parse_number(text) if text is not None else None
    return None if number is None else round(number, 2)


def write_corpus(out: str, docs: int, skip: int, data: str) -> dict:
    stats = AnnotationStats()
    annotated = itertools.islice(read_annotated(data, "gsm8k", skip_bad=True, stats=stats), skip, skip + docs)
    with open(out, "w") as f:
        for doc in annotated:
            gold = [[a.position, a.input, a.result] for a in doc.annotations]
            f.write(json.dumps({"id": doc.id, "text": doc.document.text, "meta": {"gold": gold}}) + "\n")
    return stats.as_dict()


def score(run_dir: Path, model: str) -> dict:
    tok = load_tokenizer(model)
    texts, token_of, gold = {}, {}, {}  # gold: doc -> [(token index, value)]
    annotated: dict[str, list] = {}  # an annotation-sourced run: its own annotations are the gold
    if (run_dir / layout.ANNOTATIONS).exists():
        for _, a in read_jsonl(run_dir / layout.ANNOTATIONS):
            annotated.setdefault(a["doc_id"], []).append([a["position"], a["input"], a["result"]])
    for _, doc in read_jsonl(run_dir / layout.DOCUMENTS):
        starts = [a for a, _ in tok(doc["text"], add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
        # the token that starts nearest a character position; calls and gold go through the same map
        token_of[doc["id"]] = lambda pos, starts=starts: min(range(len(starts)), key=lambda t: abs(starts[t] - pos))
        texts[doc["id"]] = doc["text"]
        calls = annotated.get(doc["id"], []) if annotated else doc["meta"]["gold"]
        gold[doc["id"]] = [(token_of[doc["id"]](pos), value(res)) for pos, _, res in calls]

    def matches(doc_id: str, position: int, result: str | None) -> tuple[set, set]:
        """(gold annotations near the position, those among them with the same value)."""
        t, v = token_of[doc_id](position), value(result)
        near = {(doc_id, g) for g, (gt, _) in enumerate(gold[doc_id]) if abs(gt - t) <= 1}
        return near, {(doc_id, g) for doc_id, g in near if v is not None and gold[doc_id][g][1] == v}

    total_gold = sum(map(len, gold.values()))
    out = {"documents": len(gold), "gold_annotations": total_gold}
    for tau in (0.25, 0.5, 1.0):
        kept = list(read_kept_calls(run_dir, texts, min_usefulness=tau))
        hits, found = 0, set()
        for call in kept:
            same = matches(call.doc_id, call.position, call.result)[1]
            hits += bool(same)
            found |= same
        out[f"tau_f={tau}"] = {"kept": len(kept), "precision": round(hits / len(kept), 3) if kept else None,
                               "recall": round(len(found) / total_gold, 3), "recovered": len(found)}
    # where the funnel loses them, before filtering: gold annotations with a candidate at their place
    # (any call), with a candidate of their result (anywhere in the document), and with both at once
    place, same_value, both, scored = set(), set(), set(), 0
    for _, rec in read_jsonl(run_dir / "calculator" / layout.SCORED, SCORED):
        scored += 1
        near, near_and_same = matches(rec["doc_id"], rec["position"], rec["result"])
        place |= near
        both |= near_and_same
        v = value(rec["result"])
        same_value |= {(rec["doc_id"], g) for g, (_, gv) in enumerate(gold[rec["doc_id"]]) if v is not None and gv == v}
    return out | {"scored": scored, "gold_places_proposed": len(place), "gold_results_proposed": len(same_value),
                  "recoverable_by_candidates": len(both)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("out")
    c.add_argument("--docs", type=int, default=300)
    c.add_argument("--skip", type=int, default=0, help="leave out the first N solutions (a seed set's)")
    c.add_argument("--data", default=str(DATA / "math" / "gsm8k_train.jsonl"))
    s = sub.add_parser("score")
    s.add_argument("--run", required=True)
    s.add_argument("--runs-dir", default="runs")
    s.add_argument("--model", default="smollm2-135m-instruct")
    a = p.parse_args()
    if a.cmd == "corpus":
        print(json.dumps(write_corpus(a.out, a.docs, a.skip, a.data)))
    else:
        print(json.dumps(score(Path(a.runs_dir) / a.run, a.model)))


if __name__ == "__main__":
    main()
