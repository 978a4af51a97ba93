"""`toolformer demo`: a 135M model learns four tools from one corpus, and is measured for it.

    curate (math)       annotated math problems: Calculator candidates from their formulas
    curate (facts)      speeches, Wikipedia leads and lead facts asked as questions: Calendar,
                        WikiSearch and QA candidates before the spans a tool could have produced
                        (--from-annotations facts)
    report (twice)      what the filter kept and why, per tool
    build (four times)  each run's kept calls, and the same documents without calls (the control)
    finetune (twice)    LoRA on both runs' corpora together, and on their no-call twins
    eval, suite table   the multi-tool model with tools on and off and the control with tools off on a
                        math benchmark, Dateset and Natural Questions: 95% CIs, paired tests, calls per
                        tool, the right-tool rate and, for NQ, the index's reach ceiling

With a data folder (--data-dir or $TOOLFORMER_DATA holding math/asdiv.jsonl and math/svamp.jsonl)
math trains on ASDiv's train split and is evaluated on SVAMP, a test set never trained on;
without one it trains on a GSM8K slice shipped in the package and is evaluated on another. The
facts documents are a slice shipped in the package (toolformer/data/FACTS_LICENSE.md). Natural
Questions is evaluated where the data folder has qa/nq_test.jsonl. Each step is the command a
user would type, printed as it runs, so the demo doubles as a walk-through. Defaults are sized for
20 minutes on a 2-core CPU; the adapter is written to RUNS_DIR/RUN/model/adapter.
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
from toolformer.errors import UserError, UserFileNotFound
from toolformer.lm.loading import cpu_computes_bf16, release_models

PACKAGE_DATA = Path(__file__).resolve().parent / "data"
FACTS = PACKAGE_DATA / "facts_slice.jsonl"
HELDOUT = "0.05"  # validation documents: the finetune keeps its best checkpoint by their perplexity


@dataclass(frozen=True)
class DemoData:
    corpus: Path            # annotated math documents
    format: str             # their annotation format (--from-annotations)
    benchmarks: list[list[str]]  # eval flags of every benchmark, the math one first


def demo_data(data_dir: str | None) -> DemoData:
    """ASDiv -> SVAMP from a data folder that has them, else the shipped GSM8K slices; Dateset
    always (it is generated); NQ where the folder has it."""
    root = Path(data_dir) if data_dir else None
    if root and not root.is_dir():  # a typo would otherwise train and test on the GSM8K slices unnoticed
        raise UserFileNotFound(f"data folder {root} (--data-dir or $TOOLFORMER_DATA) is not a folder: give the folder "
                               f"holding math/asdiv.jsonl and math/svamp.jsonl, or leave it out for the shipped "
                               f"GSM8K slices")
    if root and (root / "math" / "asdiv.jsonl").exists() and (root / "math" / "svamp.jsonl").exists():
        corpus, fmt, math = root / "math" / "asdiv.jsonl", "asdiv", ["--benchmark", "svamp", "--data-dir", str(root)]
    else:
        corpus, fmt = PACKAGE_DATA / "gsm8k_train_slice.jsonl", "gsm8k"
        math = ["--benchmark", "gsm8k", "--data-file", str(PACKAGE_DATA / "gsm8k_heldout_slice.jsonl")]
    benchmarks = [math, ["--benchmark", "dateset"]]
    if root and (root / "qa" / "nq_test.jsonl").exists():
        benchmarks.append(["--benchmark", "nq", "--data-dir", str(root)])
    return DemoData(corpus, fmt, benchmarks)


def _step(command: Callable[[list[str]], int], argv: list[str]) -> None:
    print(f"\n$ toolformer {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    code = command(argv)
    release_models()
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
    from toolformer.evaluation.suite import suite_table

    data = demo_data(s.data_dir or os.environ.get("TOOLFORMER_DATA"))
    home = Path(s.runs_dir) / s.run          # the demo's two runs live in it: math/ and facts/
    quiet = [] if s.progress else ["--no-progress"]
    # curation only: finetuning under bf16 autocast ran no faster in the demo (121.5 against 117.7 tokens/s)
    bf16 = s.precision == "bfloat16" or (s.precision == "auto" and cpu_computes_bf16())
    print(f"precision: {'bfloat16' if bf16 else 'float32'} (--precision {s.precision})", flush=True)
    train = ["--max-steps", str(s.steps), "--eval-steps", str(s.steps), "--batch-size", str(s.batch_size),
             "--grad-accum", str(s.grad_accum), "--lr", str(s.lr), *quiet]
    step = partial(_step, command)
    t0 = time.perf_counter()
    runs = {"math": (data.corpus, data.format, "calculator", s.documents),
            "facts": (FACTS, "facts", "calendar,wikisearch,qa", s.facts_documents)}
    for run, (corpus, fmt, tools, limit) in runs.items():
        where = ["--run", run, "--runs-dir", str(home)]
        step(["curate", *where, "--corpus", str(corpus), "--from-annotations", fmt, "--tools", tools,
              "--limit", str(limit), "--skip-bad", f"--tau-f={s.tau_f}", "--lazy", "--model", s.model,
              *(["--dtype", "bfloat16"] if bf16 else []), *quiet])
        step(["report", *where])
    for run in runs:
        for control in ([], ["--no-calls"]):
            step(["build", "--run", run, "--runs-dir", str(home), "--heldout", HELDOUT, *control])
    models = {"multi": home / "model", "control": home / "control"}
    for name, folder in (("augmented", models["multi"]), ("augmented-no-calls", models["control"])):
        step(["finetune", "--data", ",".join(str(home / run / name) for run in runs), "--out", str(folder),
              "--model", s.model, *train])

    # the adapters were just retrained: evaluations of earlier ones are not continued
    evals = home / "eval"
    shutil.rmtree(evals, ignore_errors=True)
    for flags in data.benchmarks:
        for name, tools in (("multi", "both"), ("control", "off")):
            step(["eval", *flags, "--limit", str(s.limit), "--adapter", str(models[name] / "adapter"),
                  "--tools", tools, "--out", str(evals / name), *quiet])
    benchmarks = [flags[1] for flags in data.benchmarks]
    suite = suite_table(evals, list(models), "control", benchmarks)

    minutes = (time.perf_counter() - t0) / 60
    adapter = models["multi"] / "adapter"
    print(f"\nDone in {minutes:.1f} min. Everything is under {home}/ (math/ and facts/: the runs and their "
          f"report.html; model/, control/, eval/); the multi-tool model's adapter is {adapter}\n")
    print((evals / "suite.md").read_text(encoding="utf-8"))
    math = suite["figures"][benchmarks[0]]["multi"]
    print(f"On {benchmarks[0]}:")
    print(_verdict("tools off (same model)", math["on_vs_off"]))
    print(_verdict("the no-call control", math["on_vs_control"]))
    return {"run": s.run, "path": str(home), "adapter": str(adapter), "minutes": round(minutes, 2),
            "curation_dtype": "bfloat16" if bf16 else "float32",
            "suite": suite["figures"]}
