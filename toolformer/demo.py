"""`toolformer demo`: the main job end to end on the embedded defaults.

curate six short documents with all four tools -> report -> build -> a brief LoRA finetune ->
evaluate the base and the finetuned model with tools on and off on small slices (Dateset, which
the project generates, and SVAMP when the data folder is there). Each step is the same command a
user would type; the demo prints them, so it doubles as a walk-through. Sized for a 2-core CPU.
"""
from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from toolformer.assets import DEMO_CORPUS
from toolformer.errors import UserError


def _step(argv: list[str]) -> None:
    from toolformer.cli import main
    print(f"\n$ toolformer {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    code = main(argv)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if code:
        raise UserError(f"demo step failed (exit {code}): toolformer {shlex.join(argv)}")


def cmd_demo(args) -> dict:
    run, runs = args.run, args.runs_dir
    where = ["--run", run, "--runs-dir", runs]
    quiet = [] if args.progress else ["--no-progress"]
    t0 = time.perf_counter()
    # sampling is the costly stage on a CPU: fewer positions and samples than the paper's
    _step(["curate", "--corpus", str(args.corpus), *where, "--k", "calculator=6,calendar=2,wikisearch=2,qa=2",
           "--m", "calculator=4,calendar=2,wikisearch=2,qa=2", "--tau-f", str(args.tau_f), *quiet])
    _step(["report", *where])
    _step(["build", *where, "--keep-uncalled-rate", "1", "--heldout", "0.34"])
    adapter = str(Path(runs) / run / "model" / "adapter")
    _step(["finetune", *where, "--max-steps", str(args.steps), "--eval-steps", str(max(1, args.steps // 2)),
           "--batch-size", "2", *quiet])
    data_dir = args.data_dir or os.environ.get("TOOLFORMER_DATA")
    benchmarks = [["--benchmark", "dateset", "--limit", str(args.limit)]]
    if data_dir and (Path(data_dir) / "math" / "svamp.jsonl").exists():
        benchmarks.append(["--benchmark", "svamp", "--data-dir", data_dir, "--limit", str(args.limit)])
    table = str(Path(runs) / run / "results.md")
    Path(table).unlink(missing_ok=True)  # eval appends rows: start this demo's table afresh
    for bench in benchmarks:
        _step(["eval", *bench, "--tools", "both", "--table", table, "--out", str(Path(runs) / run / "eval" / "base"),
               *quiet])
        _step(["eval", *bench, "--adapter", adapter, "--tools", "both", "--table", table,
               "--out", str(Path(runs) / run / "eval" / "finetuned"), *quiet])
    print(f"\nDone in {(time.perf_counter() - t0) / 60:.1f} min. Everything is under {Path(runs) / run}/:")
    for name in ("manifest.json", "report.html", "augmented", "model", "eval", "results.md"):
        print(f"  {Path(runs) / run / name}")
    if Path(table).exists():
        print("\n" + Path(table).read_text())
    return {"run": run, "path": str(Path(runs) / run), "minutes": round((time.perf_counter() - t0) / 60, 2)}


def add_commands(sub, command) -> None:
    p = command(sub, "demo", cmd_demo, "run the whole pipeline on the embedded defaults")
    p.add_argument("--run", default="demo")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--corpus", default=DEMO_CORPUS, help="documents to curate (default: six embedded ones)")
    p.add_argument("--tau-f", default="0.5", help="filtering threshold (number or tool=value,...)")
    p.add_argument("--steps", type=int, default=20, help="finetuning steps")
    p.add_argument("--limit", type=int, default=20, help="examples per benchmark")
    p.add_argument("--data-dir", help="benchmark data folder (default $TOOLFORMER_DATA): adds SVAMP to the evaluation")
    p.add_argument("--progress", action="store_true", help="show progress bars")
