"""Tool selection in the loop (issue 21 §6): how often `--tool-retriever` offers the right tool,
top-1, among the tools the loop gives it, for (a) benchmark inputs and (b) held-out kept-call
contexts; BM25, MiniLM zero-shot, MiniLM trained and their BM25 fusion on the same inputs.

    python bench/tool_selection.py --out runs/toolsel --run demo --runs-dir runs
    python bench/tool_selection.py --out runs/toolsel --run facts --run asdiv --run gsm8k \\
        --runs-dir runs/multitool/runs        # a --run may also be the path of a run folder

(a) Each benchmark's eval examples (the test part where it has a split: ASDiv's held-out 30%), a
    seeded --limit of them, as evaluate.py prompts the model ("Question: ...\\nAnswer:", a LAMA
    sentence cut at its mask), judged against the benchmark's expected_tool. The retriever ranks
    the tools the evaluation allows there (the paper keeps WikiSearch from LAMA and QA from NQ,
    WebQ), with offer_tools' own call: what `toolformer eval --tool-retriever R` offers at
    --tools-per-input 1. The rate among all four tools is given beside it ("all four").
(b) The kept calls of the --run runs, each the text before the call (retriever data's
    kept_call_queries) -> its tool; the held-out side of the fixed hash split (--holdout), ranked
    among the four tools; a hit is a top-1 tool that was kept there.

Retrievers, each ranking the tools' retrieval_text (description, uses, examples) as the loop does:
bm25; MiniLM zero-shot; "synthetic": MiniLM trained with `retriever train --synthesize N` on queries
written from the four tools' documents alone (OUT/tools.jsonl: the uses join the description, which
the template writer draws spans from; OUT/synthetic-*/); "synthetic+kept" (with --run): MiniLM
trained on those synthetic pairs plus the kept-call contexts of the train side of the split
(OUT/pairs-*.jsonl, OUT/kept-*/); each trained one fused with BM25 (reciprocal rank fusion).
Benchmark inputs are eval data: no retriever here is trained on them. A trained folder holding
retriever.json is reused. The LM writer (--writer lm) is there, but SmolLM2-135M writes off-topic
requests for these four documents.

Prints ONE JSON line: per source and retriever the top-1 rate with its 95% Wilson interval and n,
McNemar's exact test (stats.paired) of each trained retriever against BM25 and against zero-shot
on the same inputs, pooled rates over the benchmarks and over the runs, and seconds; writes
OUT/table.md (the same as a markdown table) and OUT/selection.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from toolformer.assets import DEFAULT_EMBEDDER  # noqa: E402
from toolformer.benchmarks import get_benchmark, load_examples  # noqa: E402
from toolformer.errors import UserError  # noqa: E402
from toolformer.inference.toolbox import ToolBox, offer_tools  # noqa: E402
from toolformer.retrieval.data import (kept_call_queries, load_tool_set, query_pairs, registry_tools,  # noqa: E402
                                       split)
from toolformer.retrieval.synthesize import SYNTHETIC_FILE, synthetic_pairs  # noqa: E402
from toolformer.retrieval.train import SYNTHETIC_INSTRUCTION  # noqa: E402
from toolformer.retrieval.index import reciprocal_rank_fusion, rank_tools  # noqa: E402
from toolformer.stats import accuracy, paired  # noqa: E402
from toolformer.tools import all_tools  # noqa: E402

BENCHMARKS = "svamp,asdiv,lama-squad,lama-google-re,nq,webq,dateset"
RECIPE = dict(writer="templates", round_trip=0, epochs=2, lr=5e-5, batch_size=32, hard_negatives=2)


def benchmark_inputs(names: list[str], data_dir: str, limit: int, seed: int, log) -> dict[str, dict]:
    """Per benchmark: its prompts, the tools the evaluation allows there and the expected tool."""
    from toolformer.evaluation.evaluate import _allowed_tools
    out = {}
    for name in names:
        bench = get_benchmark(name)
        try:
            examples, info = load_examples(name, data_dir=data_dir, limit=limit, seed=seed)
        except UserError as err:  # a benchmark without local data: said, not scored
            log(f"{name}: skipped ({err})")
            continue
        out[name] = {"texts": [e.prompt for e in examples], "gold": [frozenset([bench.expected_tool])] * len(examples),
                     "allowed": _allowed_tools(bench, None), "split": info["split"]["part"],
                     "available": info.get("available", len(examples))}
    return out


def run_place(run: str, runs_dir: str) -> tuple[str, str]:
    """(name, runs folder) of a --run: a name under --runs-dir, or the path of a run folder."""
    return (Path(run).name, str(Path(run).parent)) if "/" in run else (run, runs_dir)


def kept_inputs(runs: list[str], runs_dir: str, holdout: float, held_out: bool) -> dict[str, dict]:
    """Per run: the kept-call contexts on one side of the hash split, ranked among the four tools."""
    tools, out = registry_tools(), {}
    for run in runs:
        queries = split(kept_call_queries(*run_place(run, runs_dir), tools), holdout, held_out)
        out[f"kept:{run_place(run, runs_dir)[0]}"] = {"texts": [q.text for q in queries],
                                                     "gold": [q.relevant for q in queries], "allowed": list(tools.names)}
    return out


def top1(ref: str, source: dict, allowed: list[str]) -> list[str]:
    """The one tool offer_tools gives each text: the loop's own call, at --tools-per-input 1."""
    return [min(names) if len(names) == 1 else "?" for names in
            offer_tools(ref, source["texts"], ToolBox(allowed), 1)]


def fused_top1(refs: list[str], source: dict, allowed: list[str]) -> list[str]:
    """Top-1 of the reciprocal rank fusion of full rankings (what `retriever eval --hybrid` ranks)."""
    tools = [t for t in all_tools() if t.name in allowed]
    rankings = [rank_tools(ref, source["texts"], tools, len(tools)) for ref in refs]
    return [row[0] for row in reciprocal_rank_fusion(rankings)]


def write_tools(path: Path) -> None:
    """The four tools as a tool-set file, what `retriever train --synthesize` writes queries from:
    the uses join the description, which the template writer draws its spans from."""
    with open(path, "w") as f:
        for t in all_tools():
            description = t.description + "".join(f"\n{u}" for u in t.uses)
            f.write(json.dumps({"name": t.name, "description": description, "examples": list(t.examples)}) + "\n")


def write_pairs(path: Path, synthetic: str, tools_file: Path, runs: list[str], runs_dir: str, holdout: float) -> Path:
    """One pairs file: the synthetic queries (as the synthetic retriever trained on them) and the
    kept-call contexts of the train side of the split, positives and negatives as tool texts."""
    tools, _ = load_tool_set(tools_file)
    records = [json.loads(line) for line in open(Path(synthetic) / SYNTHETIC_FILE)]
    pairs, _ = synthetic_pairs(records, tools, RECIPE["round_trip"], RECIPE["hard_negatives"])
    kept = [q for run in runs for q in split(kept_call_queries(*run_place(run, runs_dir), tools), holdout, False)]
    pairs += query_pairs(kept, tools)
    with open(path, "w") as f:
        for p in pairs:  # every other tool is a negative: four tools, no mining needed
            negatives = [t for t in tools.texts if t not in p.relevant]
            f.write(json.dumps({"query": p.query, "positive": p.positive, "negatives": negatives}) + "\n")
    return path


def train(out: Path, log, **fields) -> tuple[str, float]:
    """(folder, seconds) of a retriever trained with `fields`, reused if the folder holds one."""
    from toolformer.config import RetrieverTrainSettings
    from toolformer.retrieval.train import train_retriever
    if not (out / "retriever.json").is_file():
        train_retriever(RetrieverTrainSettings(out=str(out), seed=0, **fields), log=log)
    training = json.loads((out / "retriever.json").read_text())["training"]
    return str(out), round(training["seconds"] + training.get("synthesis", {}).get("seconds", 0), 1)


def figures(hits: dict[str, list[bool]], trained: list[str]) -> dict:
    """Top-1 rate with its Wilson interval per retriever; McNemar of each trained one vs BM25 and zero-shot."""
    out = {name: accuracy(h) for name, h in hits.items() if h}
    for name in trained:
        for base in ("bm25", "zero-shot"):
            if hits.get(name) and hits.get(base):
                test = paired(hits[base], hits[name])
                out[name][f"vs_{base}"] = {k: test[k] for k in ("difference", "ci", "p_value", "only_first",
                                                                 "only_second")}
    return out


def markdown(rows: dict[str, dict], names: list[str], headline: str) -> str:
    """Top-1 rate [95% CI] per source and retriever, and `headline` against BM25 and zero-shot."""
    def cell(m: dict | None) -> str:
        return "–" if m is None else f"{m['accuracy']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]"
    lines = ["| source | n | " + " | ".join(names) + f" | {headline} − BM25 (McNemar p) | − zero-shot (p) |",
             "|---|---:|" + "---:|" * len(names) + "---|---|"]
    for source, m in rows.items():
        n = next(iter(m.values()))["n"]
        test = m.get(headline)
        vs = lambda base: (f"{test[f'vs_{base}']['difference']:+.3f} ({test[f'vs_{base}']['p_value']:.2g})"
                           if test and f"vs_{base}" in test else "–")
        lines.append(f"| {source} | {n} | " + " | ".join(cell(m.get(x)) for x in names) + f" | {vs('bm25')} | {vs('zero-shot')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--benchmarks", default=BENCHMARKS)
    ap.add_argument("--limit", type=int, default=300, help="eval examples per benchmark (a seeded subset)")
    ap.add_argument("--run", action="append", default=[],
                    help="a curated run whose kept calls to test on: a name under --runs-dir or a run folder (repeatable)")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--holdout", type=float, default=0.3, help="share of kept-call documents held out (hash split)")
    ap.add_argument("--synthesize", type=int, default=400, help="synthetic queries from the four documents")
    ap.add_argument("--writer", default=RECIPE["writer"], choices=("templates", "lm", "mixed"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    def log(*a):
        print(*a, file=sys.stderr)

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sources = {**benchmark_inputs(args.benchmarks.split(","), args.data_dir, args.limit, args.seed, log),
               **kept_inputs(args.run, args.runs_dir, args.holdout, True)}
    write_tools(out / "tools.jsonl")
    seconds = {}
    recipe = {**RECIPE, "writer": args.writer}
    synth, seconds["train synthetic"] = train(out / f"synthetic-{args.writer}-{args.synthesize}", log,
                                              tools=str(out / "tools.jsonl"), synthesize=args.synthesize, **recipe)
    refs = {"bm25": "bm25", "zero-shot": DEFAULT_EMBEDDER, "synthetic": synth}
    if args.run:  # the synthetic pairs plus the kept-call contexts of the train side of the split
        run_label = "+".join(run_place(r, args.runs_dir)[0] for r in args.run)
        pairs = write_pairs(out / f"pairs-{args.synthesize}-{run_label}.jsonl", synth, out / "tools.jsonl",
                            args.run, args.runs_dir, args.holdout)
        refs["synthetic+kept"], seconds["train synthetic+kept"] = train(
            out / f"kept-{args.writer}-{args.synthesize}-{run_label}", log, pairs=str(pairs),
            instruction=SYNTHETIC_INSTRUCTION, **{k: v for k, v in recipe.items() if k not in ("writer", "round_trip")})
    trained = [n for n in refs if n not in ("bm25", "zero-shot")]
    rows, four, all_hits = {}, {}, {}
    t1 = time.time()
    for source, data in sources.items():
        if not data["texts"]:
            log(f"{source}: no inputs")
            continue
        picks = {name: top1(ref, data, data["allowed"]) for name, ref in refs.items()}
        for name in trained:
            picks[f"hybrid {name}"] = fused_top1([refs[name], "bm25"], data, data["allowed"])
        hits = all_hits[source] = {name: [p in g for p, g in zip(ps, data["gold"])] for name, ps in picks.items()}
        rows[source] = figures(hits, trained + [f"hybrid {n}" for n in trained])
        rows[source]["picked"] = {name: {t: ps.count(t) for t in sorted(set(ps))} for name, ps in picks.items()}
        if set(data["allowed"]) != {t.name for t in all_tools()}:  # the stricter choice among all four
            every = [t.name for t in all_tools()]
            four[source] = {name: accuracy([p in g for p, g in zip(top1(ref, data, every), data["gold"])])
                            for name, ref in refs.items()}
        log(f"{source}: " + ", ".join(f"{n} {m['accuracy']:.3f}" for n, m in rows[source].items() if "accuracy" in m))
    seconds["rank"] = round(time.time() - t1, 1)
    names = list(refs) + [f"hybrid {n}" for n in trained]
    pooled = {}
    for label, keys in (("benchmarks (pooled)", [s for s in all_hits if not s.startswith("kept:")]),
                        ("kept calls (pooled)", [s for s in all_hits if s.startswith("kept:")])):
        if keys:
            hits = {name: [h for s in keys for h in all_hits[s][name]] for name in names}
            pooled[label] = figures(hits, trained + [f"hybrid {n}" for n in trained])
    table_rows = {s: {k: v for k, v in m.items() if k != "picked"} for s, m in {**rows, **pooled}.items()}
    table = markdown(table_rows, names, trained[-1])
    if four:
        table += "\nAmong all four tools (the loop offers only the allowed ones):\n\n" + markdown(four, list(refs), trained[-1])
    seconds["total"] = round(time.time() - t0, 1)
    result = {"sources": rows, "pooled": pooled, "all_four": four,
              "n": {s: len(d["texts"]) for s, d in sources.items()},
              "available": {s: d.get("available") for s, d in sources.items()},
              "retrievers": refs, "recipe": {**recipe, "synthesize": args.synthesize}, "limit": args.limit,
              "holdout": args.holdout, "runs": args.run, "seconds": seconds}
    (out / "table.md").write_text(table)
    (out / "selection.json").write_text(json.dumps(result, indent=1) + "\n")
    print(table, file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
