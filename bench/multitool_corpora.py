"""The multi-tool corpora of issue 20 §2: one mixed real corpus, curated for all four tools, as
three built folders a finetune reads (`toolformer finetune --data DIR --out ...`):

    OUT/augmented             kept calls of every tool merged per document (the paper's filter)
    OUT/augmented-no-calls    the same documents and split with no call (the fair control)
    OUT/augmented-unfiltered  every call that executed, whatever its usefulness: the filter ablation
                              (`build --min-usefulness=-inf` of the same curation)

    .venv/bin/python bench/multitool_corpora.py --out runs/multitool            # small (see below)
    .venv/bin/python bench/multitool_corpora.py --out runs/multitool --asdiv 1000 --gsm8k 2000 --sotu 3000 --leads 3000

Sources (each curated in its own run under OUT/runs, since a run reads one annotation format;
`toolformer build` merges the kept calls of all tools per document within each run):
  math     ASDiv's train split (format asdiv: the split `eval` holds out is never read) and GSM8K
           train solutions (format gsm8k), Calculator annotations;            CC BY-NC 4.0 / MIT
  facts    State of the Union passages that mention their own year or are asked it (public domain), Wikipedia
           leads with a relation fact and such facts asked as questions (CC BY-SA 4.0; each left out
           of the index while curated),
           format facts: Calendar, WikiSearch and QA candidates (toolformer/corpus/facts.py).
Measured: --asdiv 40 --gsm8k 40 --sotu 30 --leads 30 took 22.5 min wall, 1.5 GB peak, on 2 cores shared
with ~5 other jobs (load ~10); the defaults (40/20/25/25) are smaller for that reason, not re-timed.
Thresholds are each tool's own (paper: Calculator 0.5, others 1.0) unless --tau-f says otherwise
("calculator=0.25"). Resumable: a re-run continues every run where it stopped. Prints one JSON line:
per source and tool candidates, executed and kept, and per folder its documents and calls per tool.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from toolformer.config import FilterSettings, RunSettings, SampleSettings
from toolformer.corpus.build import build_augmented, write_corpus
from toolformer.corpus.facts import facts_corpus
from toolformer.pipeline.curate import curate
from toolformer.run.lock import exclusive
from toolformer.run.manifest import Run
from toolformer.run.records import read_jsonl

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FOLDERS = {"filtered": "augmented", "no-calls": "augmented-no-calls", "unfiltered": "augmented-unfiltered"}


def merge(builds: list[Path], out: Path, figures: dict) -> dict:
    """One built folder from several (their train and validation rows side by side)."""
    splits = {name: [r for b in builds for _, r in read_jsonl(b / f"{name}.jsonl")] for name in ("train", "validation")}
    calls = Counter(c["tool"] for rows in splits.values() for r in rows for c in r["calls"])
    summary = {"documents": {k: len(v) for k, v in splits.items()}, "calls": dict(sorted(calls.items()))}
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out, Run(out.name, out.parent), f"merge of {out.name}"):
        write_corpus(out, splits, {**figures, **summary, "parts": [str(b) for b in builds]})
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/multitool")
    p.add_argument("--data-dir", default=str(DATA))
    p.add_argument("--asdiv", type=int, default=40, help="ASDiv train problems")
    p.add_argument("--gsm8k", type=int, default=20, help="GSM8K train solutions")
    p.add_argument("--sotu", type=int, default=25, help="dated State of the Union passages")
    p.add_argument("--asked", type=int, default=25, help="State of the Union passages that never write their "
                                                          "year, asked it")
    p.add_argument("--leads", type=int, default=25, help="Wikipedia leads")
    p.add_argument("--questions", type=int, default=25, help="relation facts of leads asked as questions")
    p.add_argument("--tau-f", default=None, help="τ_f for every tool, or tool=value,... (default: each tool's own)")
    p.add_argument("--heldout", type=float, default=0.1)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    out, data = Path(a.out), Path(a.data_dir)
    runs = out / "runs"
    out.mkdir(parents=True, exist_ok=True)
    facts = out / "facts.corpus.jsonl"
    if not facts.exists():
        rows = facts_corpus(data / "corpus" / "sotu_passages.jsonl", a.sotu, a.asked, a.leads, a.questions, a.seed)
        facts.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    sources = {"facts": (facts, "facts", "calendar,wikisearch,qa", None),
               "asdiv": (data / "math" / "asdiv.jsonl", "asdiv", "calculator", a.asdiv),
               "gsm8k": (data / "math" / "gsm8k_train.jsonl", "gsm8k", "calculator", a.gsm8k)}
    t0 = time.perf_counter()
    report: dict = {"sources": {}, "folders": {}}
    built: dict[str, list[Path]] = {k: [] for k in FOLDERS}
    for name, (corpus, fmt, tools, limit) in sources.items():
        figures = curate(RunSettings(run=name, runs_dir=str(runs), corpus=str(corpus), limit=limit, model=a.model,
                                     no_progress=True, seed=a.seed, skip_bad=True),
                         tools, SampleSettings(from_annotations=fmt), filter=FilterSettings(tau_f=a.tau_f))
        stages = figures["stages"]
        ingest = {k: v for k, v in figures["ingest"].items() if k != "skipped_examples"}
        report["sources"][name] = {"ingest": ingest, **{
            tool: {"candidates": stages[f"sample/{tool}"]["candidates"],
                   "executed_ok": stages[f"execute/{tool}"]["executed_ok"],
                   "kept": stages[f"filter/{tool}"]["kept"]} for tool in tools.split(",")}}
        # the three corpora of one curation: the filter's calls, none, every executed call
        for variant, options in (("filtered", {}), ("no-calls", {"no_calls": True}),
                                 ("unfiltered", {"min_usefulness": float("-inf")})):
            built[variant].append(Path(build_augmented(runs / name, heldout=a.heldout, seed=a.seed, **options)["out"]))
    for variant, folder in FOLDERS.items():
        report["folders"][folder] = merge(built[variant], out / folder, {"variant": variant, "seed": a.seed})
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(main())
