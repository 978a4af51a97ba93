"""`toolformer demo`: a 135M model learns to use the calculator, and is better for it.

    curate --from-annotations   annotated math problems become documents and candidate calls
    report                      what the filter kept, as for sampled calls
    build, build --no-calls     the tool corpus and its control: the same documents without calls
    finetune (twice)            LoRA on each corpus, the same settings
    eval, eval, compare         the tool model with tools on and off, the control with tools off,
                                paired on the same examples; the table is printed at the end

With a data folder (--data-dir or $TOOLFORMER_DATA holding math/asdiv.jsonl and math/svamp.jsonl)
it trains on ASDiv's train split (the evaluation's own seeded split) and evaluates on SVAMP, a test
set never trained on. Without one it trains on a GSM8K slice shipped in the package and evaluates
on another slice of GSM8K it was not trained on. Each step is the command a user would type,
printed as it runs, so the demo doubles as a walk-through. Defaults are sized for 20 minutes on a
2-core CPU; the adapter is written to RUNS_DIR/RUN/model/adapter.
"""
from __future__ import annotations

import os
import shlex
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from toolformer.config import DemoSettings
from toolformer.errors import UserError

PACKAGE_DATA = Path(__file__).resolve().parent / "data"
HELDOUT = "0.05"  # validation documents: the finetune keeps its best checkpoint by their perplexity


@dataclass(frozen=True)
class DemoData:
    corpus: Path            # annotated training documents
    format: str             # their annotation format (--from-annotations)
    benchmark: list[str]    # eval flags naming the test data


def demo_data(data_dir: str | None) -> DemoData:
    """ASDiv -> SVAMP from a data folder that has them, else the shipped GSM8K slices."""
    math = Path(data_dir) / "math" if data_dir else None
    if math and (math / "asdiv.jsonl").exists() and (math / "svamp.jsonl").exists():
        return DemoData(math / "asdiv.jsonl", "asdiv", ["--benchmark", "svamp", "--data-dir", str(data_dir)])
    return DemoData(PACKAGE_DATA / "gsm8k_train_slice.jsonl", "gsm8k",
                    ["--benchmark", "gsm8k", "--data-file", str(PACKAGE_DATA / "gsm8k_heldout_slice.jsonl")])


def _step(command: Callable[[list[str]], int], argv: list[str]) -> None:
    print(f"\n$ toolformer {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    code = command(argv)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if code:
        raise UserError(f"demo step failed (exit {code}): toolformer {shlex.join(argv)}")


def _verdict(name: str, comparison: dict) -> str:
    low, high = comparison["ci"]
    shown = f"{100 * comparison['difference']:+.1f} points (95% CI {100 * low:+.1f} to {100 * high:+.1f}, " \
            f"McNemar p {comparison['p_value']:.2g})"
    return f"  tools on vs {name}: {shown}: " + ("better" if low > 0 else "not shown better")


def demo(s: DemoSettings, command: Callable[[list[str]], int]) -> dict:
    """command: the CLI's entry point (toolformer.cli.main), handed in by the CLI, which sits above
    the demo: each step runs what a user would type."""
    from toolformer.evaluation.evaluate import compare_records

    data = demo_data(s.data_dir or os.environ.get("TOOLFORMER_DATA"))
    run_dir = Path(s.runs_dir) / s.run
    where = ["--run", s.run, "--runs-dir", s.runs_dir]
    quiet = [] if s.progress else ["--no-progress"]
    train = ["--max-steps", str(s.steps), "--eval-steps", str(s.steps), "--batch-size", str(s.batch_size),
             "--lr", str(s.lr), *([] if s.progress else ["--no-progress"])]
    step = partial(_step, command)
    t0 = time.perf_counter()
    step(["curate", *where, "--corpus", str(data.corpus), "--from-annotations", data.format, "--tools", "calculator",
          "--limit", str(s.documents), "--skip-bad", "--tau-f", str(s.tau_f), *quiet])
    step(["report", *where])
    step(["build", *where, "--heldout", HELDOUT])
    step(["build", *where, "--heldout", HELDOUT, "--no-calls"])
    adapter, control = run_dir / "model" / "adapter", run_dir / "control" / "adapter"
    step(["finetune", *where, *train])
    step(["finetune", *where, "--data", str(run_dir / "augmented-no-calls"), "--out", str(control.parent), *train])

    # the adapters were just retrained: evaluations of earlier ones are not continued
    evals, table = run_dir / "eval", run_dir / "results.md"
    shutil.rmtree(evals, ignore_errors=True)
    table.unlink(missing_ok=True)
    bench = data.benchmark[1]
    common = [*data.benchmark, "--limit", str(s.limit), "--table", str(table), *quiet]
    step(["eval", *common, "--adapter", str(adapter), "--tools", "both", "--out", str(evals / "tools")])
    step(["eval", *common, "--adapter", str(control), "--tools", "off", "--out", str(evals / "control")])
    tools_on, tools_off = (evals / "tools" / f"{bench}.tools-{m}.jsonl" for m in ("on", "off"))
    control_off = evals / "control" / f"{bench}.tools-off.jsonl"
    step(["compare", str(control_off), str(tools_on), "--table", str(table)])

    minutes = (time.perf_counter() - t0) / 60
    print(f"\nDone in {minutes:.1f} min. Everything is under {run_dir}/ (report.html, augmented/, model/, "
          f"control/, eval/); the tool model's adapter is {adapter}\n")
    print(table.read_text())
    against_off, against_control = compare_records(tools_off, tools_on), compare_records(control_off, tools_on)
    print(_verdict("tools off (same model)", against_off))
    print(_verdict("the no-call control", against_control))
    return {"run": s.run, "path": str(run_dir), "adapter": str(adapter), "minutes": round(minutes, 2),
            "tools_on_vs_off": against_off, "tools_on_vs_control": against_control}
