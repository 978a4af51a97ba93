"""Does a 135M model learn to use the calculator from annotated math problems? (issue 11's table)

    python bench/math_tools.py throughput --steps 6 [--bf16]        # tokens/s of the finetune, one JSON line
    python bench/math_tools.py run --out runs/math-tools --steps 250 --svamp-limit 300   # one JSON line

Training data: ASDiv's train split (the evaluation's own seeded split, so no test problem is trained
on), read by toolformer.corpus.annotations as "Question: ...\\nAnswer: <answer>" documents with their
formula as a Calculator call before the answer. The tool corpus writes each call back in (the build's
insertion rule and syntax); the control corpus is the same documents in the same splits with no
call: the same finetuning without tools (the paper's "GPT-J + CCNet" row).

Models: base (no finetuning), control (finetuned on the control corpus), tools (finetuned on the
tool corpus), each evaluated zero-shot with tools off and on, on SVAMP (test only) and ASDiv's
held-out split. Printed: accuracies with 95% Wilson intervals, call rates, on − off per model
(Newcombe interval, exact McNemar p), and tools-on of the tool model paired against the control and
the base model's best mode on the same examples. Everything resumes: finetuned adapters are reused
when their finetune.json records the same settings, evaluations continue from their records.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import DATA  # noqa: E402
from toolformer.benchmarks import get_benchmark  # noqa: E402
from toolformer.config import FinetuneSettings  # noqa: E402
from toolformer.corpus.annotations import AnnotationStats, read_annotated, split_rows  # noqa: E402
from toolformer.corpus.build import NO_CALLS_SUFFIX, heldout_split, write_corpus  # noqa: E402
from toolformer.corpus.calls import insert_calls  # noqa: E402
from toolformer.corpus.syntax import TOOLFORMER, Call  # noqa: E402
from toolformer.evaluation.evaluate import compare_records, evaluate  # noqa: E402
from toolformer.training.finetune import finetune  # noqa: E402

HELDOUT = 0.05  # documents kept for the finetune's validation perplexity (best checkpoint)


def corpus_rows(data_dir: Path, with_calls: bool, stats: AnnotationStats) -> list[dict]:
    """One row per ASDiv train problem, as `build` writes them: calls rendered in, or none."""
    split = get_benchmark("asdiv").split
    annotated = read_annotated(data_dir / "math" / "asdiv.jsonl", "asdiv", skip_bad=True, stats=stats)
    train, _ = split_rows(annotated, split.test_fraction, split.seed)
    rows = []
    for doc in train:
        calls = [{"tool": a.tool, "input": a.input, "result": a.result, "position": a.position,
                  "usefulness": None} for a in doc.annotations] if with_calls else []
        text = insert_calls(doc.document.text, [(c["position"], Call(c["tool"], c["input"], c["result"]))
                                               for c in calls], TOOLFORMER)
        rows.append({"id": doc.id, "text": text, "n_calls": len(calls), "calls": calls})
    return rows


def write_corpora(out: Path, data_dir: Path) -> dict[str, Path]:
    """The tool corpus and its control, the same documents in the same splits."""
    folders = {"tools": out / "augmented", "control": out / ("augmented" + NO_CALLS_SUFFIX)}
    for name, folder in folders.items():
        stats = AnnotationStats()
        splits = heldout_split(corpus_rows(data_dir, name == "tools", stats), HELDOUT, seed=0)
        write_corpus(folder, splits, {"syntax": TOOLFORMER.name, "source": "asdiv train split",
                                      "train": len(splits["train"]), "validation": len(splits["validation"]),
                                      "annotations": stats.as_dict()})
    return folders


def trained(name: str, data: Path, out: Path, s: FinetuneSettings) -> tuple[str, dict]:
    """(adapter folder, finetune figures), reusing an adapter trained with the same settings."""
    model_dir = out / "model" / name
    record = model_dir / "finetune.json"
    wanted = {**asdict(s), "data": str(data), "out_dir": str(model_dir)}
    if record.exists():
        done = json.loads(record.read_text())
        if {k: v for k, v in done["settings"].items() if k != "lr"} == wanted:
            return done["adapter"], done
    figures = finetune(out, s, data=str(data), out_dir=str(model_dir))
    return figures["adapter"], figures


def short(summary: dict) -> dict:
    """The figures of one evaluation that the table needs."""
    keep = {"n": summary["n"]}
    for mode in ("off", "on"):
        if f"tools_{mode}" in summary:
            m = summary[f"tools_{mode}"]
            keep[mode] = {"accuracy": m["accuracy"], "ci": m["ci"], "call_rate": m["call_rate"],
                          "seconds": round(m["seconds"], 1)}
    if "on_vs_off" in summary:
        pair = summary["on_vs_off"]
        keep["on_minus_off"] = {"difference": pair["difference"], "ci": pair["ci"], "p": pair["p_value"]}
    return keep


def paired_short(first: str, second: str) -> dict:
    pair = compare_records(first, second)
    return {"first": first, "second": second, "difference": pair["difference"], "ci": pair["ci"],
            "p": pair["p_value"]}


def run(args) -> dict:
    out, data_dir = Path(args.out), Path(args.data_dir)
    t0 = time.perf_counter()
    folders = write_corpora(out, data_dir)
    s = FinetuneSettings(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, max_length=args.max_length,
                         eval_steps=max(1, args.steps // 5), bf16=args.bf16, progress=False)
    adapters, training = {"base": None}, {}
    for name in ("tools", "control"):
        adapters[name], figures = trained(name, folders[name], out, s)
        training[name] = {k: figures[k] for k in ("train_documents", "steps", "train_seconds", "tokens_seen",
                                                  "tokens_per_second", "best_perplexity", "last_train_loss")}
    limits = {"svamp": args.svamp_limit, "asdiv": args.asdiv_limit}
    results, comparisons = {}, {}
    for bench, limit in limits.items():
        records = {}
        for name, adapter in adapters.items():
            where = out / "eval" / name
            summary = evaluate(benchmark=bench, adapter=adapter, data_dir=str(data_dir), limit=limit,
                               tools="both", out=str(where), batch_size=args.eval_batch, progress=False)
            results[f"{name}/{bench}"] = short(summary)
            records[name] = {m: summary[f"tools_{m}"]["records"] for m in ("off", "on")}
        comparisons[bench] = {
            "tools_on_vs_control_off": paired_short(records["control"]["off"], records["tools"]["on"]),
            "tools_on_vs_base_off": paired_short(records["base"]["off"], records["tools"]["on"]),
            "tools_on_vs_control_on": paired_short(records["control"]["on"], records["tools"]["on"]),
        }
    return {"settings": {k: v for k, v in vars(args).items() if k != "func"}, "training": training,
            "results": results, "paired": comparisons, "minutes": round((time.perf_counter() - t0) / 60, 1)}


def throughput(args) -> dict:
    """A short finetune on the tool corpus: tokens/s of the optimizer steps (no eval, no save counted)."""
    out = Path(args.out) / "throughput"
    folders = write_corpora(Path(args.out), Path(args.data_dir))
    s = FinetuneSettings(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, max_length=args.max_length,
                         eval_steps=10 ** 6, bf16=args.bf16, progress=False)
    t0 = time.perf_counter()
    figures = finetune(out, s, data=str(folders["tools"]), out_dir=str(out / "model"))
    return {"steps": figures["steps"], "batch_size": args.batch_size, "bf16": args.bf16,
            "tokens_seen": figures["tokens_seen"], "tokens_per_second": figures["tokens_per_second"],
            "train_seconds": figures["train_seconds"], "wall_seconds": round(time.perf_counter() - t0, 1),
            "last_train_loss": figures["last_train_loss"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, func in (("run", run), ("throughput", throughput)):
        q = sub.add_parser(name)
        q.set_defaults(func=func)
        q.add_argument("--out", default="runs/math-tools")
        q.add_argument("--data-dir", default=str(DATA))
        q.add_argument("--steps", type=int, default=250)
        q.add_argument("--batch-size", type=int, default=8)
        q.add_argument("--lr", type=float, default=1e-3)
        q.add_argument("--max-length", type=int, default=192)
        q.add_argument("--bf16", action="store_true", help="bf16 autocast (measure it: CPUs differ)")
        q.add_argument("--threads", type=int, help="torch CPU threads")
        if name == "run":
            q.add_argument("--svamp-limit", type=int, default=300, help="SVAMP examples (all 1000: --svamp-limit 1000)")
            q.add_argument("--asdiv-limit", type=int, default=None, help="ASDiv held-out examples (default: all)")
            q.add_argument("--eval-batch", type=int, default=16)
    args = p.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    print(json.dumps(args.func(args), default=str))


if __name__ == "__main__":
    main()
