"""Fact candidates (toolformer/corpus/facts.py) judged by the real model: what the loss filter keeps.

    .venv/bin/python bench/fact_candidates.py --sotu 20 --leads 20 --run facts-bench

Curates dated State of the Union passages that mention their own year (public domain) and
Wikipedia leads with at least one relation fact (CC BY-SA 4.0), each lead left out of the index
while it is curated, with `--from-annotations facts` for calendar, wikisearch and qa at the paper's
τ_f = 1.0. Prints one JSON line: per tool the candidates, kept, kept rate, how many kept calls'
results hold the span (the answer), the copy rate (kept results holding the next 8 words of
the document verbatim), the kept count at lower thresholds, and 5 kept and 5 filtered examples.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from toolformer.config import RunSettings, SampleSettings
from toolformer.corpus.facts import (copies_next_words, date_mentions, fact_spans, index_titles,
                                     wikipedia_lead_documents, wikisearch_supports)
from toolformer.pipeline.curate import curate
from toolformer.run.manifest import Run
from toolformer.run.records import SCORED, read_jsonl
from toolformer.tools.wikisearch import EXCLUDE_KEY

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
THRESHOLDS = (1.0, 0.5, 0.25, 0.0)


def sotu_rows(path: Path, n: int, seed: int) -> list[dict]:
    """n passages that mention their own year (seeded choice among all such passages)."""
    rows = [r for r in map(json.loads, path.open()) if date_mentions(r["text"], {"year": r["year"]})]
    return random.Random(seed).sample(rows, min(n, len(rows)))


def lead_rows(n: int, seed: int) -> list[dict]:
    titles = index_titles()
    docs = [d for d in wikipedia_lead_documents() if fact_spans(d.text, titles, d.meta[EXCLUDE_KEY])]
    return [d.to_json() for d in random.Random(seed).sample(docs, min(n, len(docs)))]


def example(rec: dict, text: str) -> dict:
    p = rec["position"]
    return {"doc": rec["doc_id"], "before": text[max(0, p - 80):p], "call": rec["call"],
            "result": (rec["result"] or rec["error"] or "")[:160], "after": text[p:p + 40],
            "usefulness": None if rec["usefulness"] is None else round(rec["usefulness"], 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sotu", type=int, default=20)
    p.add_argument("--leads", type=int, default=20)
    p.add_argument("--run", default="facts-bench")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--tools", default="calendar,wikisearch,qa")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=str(DATA / "corpus" / "sotu_passages.jsonl"))
    a = p.parse_args()
    corpus = Path(a.runs_dir) / f"{a.run}.corpus.jsonl"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    rows = sotu_rows(Path(a.data), a.sotu, a.seed) + lead_rows(a.leads, a.seed)
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    figures = curate(RunSettings(run=a.run, runs_dir=a.runs_dir, corpus=str(corpus), model=a.model,
                                 no_progress=True), a.tools, SampleSettings(from_annotations="facts"))
    run = Run(a.run, a.runs_dir)
    texts = {d.id: d.text for d in run.documents()}
    spans = {}  # (doc, position) -> the span the call stands before
    titles = index_titles()
    for d in run.documents():
        for f in fact_spans(d.text, titles, d.meta.get(EXCLUDE_KEY),
                            lambda q, e, v, meta=d.meta: wikisearch_supports(q, e, v, meta)):
            spans[(d.id, f.position)] = f.value
        for pos, mention in date_mentions(d.text, d.meta):
            spans[(d.id, pos)] = mention
    out = {"documents": figures["ingest"]["documents"], "undated": figures["ingest"].get("undated"), "tools": {}}
    for tool in a.tools.split(","):
        recs = [r for _, r in read_jsonl(run.stage_output("filter", tool), SCORED)]
        kept = [r for r in recs if r["kept"]]
        filtered = [r for r in recs if not r["kept"] and r["error"] is None]

        def holds_span(r):  # positions are canonical: the span starts at p or p + 1
            span = spans.get((r["doc_id"], r["position"])) or spans.get((r["doc_id"], r["position"] + 1))
            return bool(span and r["result"] and span in r["result"])
        rng = random.Random(a.seed)
        out["tools"][tool] = {
            "candidates": len(recs), "failed": sum(r["error"] is not None for r in recs), "kept": len(kept),
            "kept_rate": round(len(kept) / len(recs), 3) if recs else None,
            "result_holds_span": {"candidates": sum(map(holds_span, recs)), "kept": sum(map(holds_span, kept))},
            "copies_next_8_words": {"candidates": sum(copies_next_words(r["result"], texts[r["doc_id"]], r["position"])
                                                      for r in recs),
                                    "kept": sum(copies_next_words(r["result"], texts[r["doc_id"]], r["position"])
                                                for r in kept)},
            "kept_at_tau_f": {str(t): sum(r["usefulness"] is not None and r["usefulness"] >= t for r in recs)
                              for t in THRESHOLDS},
            "kept_examples": [example(r, texts[r["doc_id"]]) for r in rng.sample(kept, min(5, len(kept)))],
            "filtered_examples": [example(r, texts[r["doc_id"]]) for r in rng.sample(filtered, min(5, len(filtered)))],
        }
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
