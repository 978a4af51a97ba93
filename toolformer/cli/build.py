"""`toolformer build`: the augmented corpus of a run (or, with --no-calls, its control corpus)."""
from __future__ import annotations

from toolformer.cli.flags import add_flags, from_args
from toolformer.config import BuildSettings


def cmd_build(args) -> dict:
    from toolformer.corpus.build import build_augmented
    from toolformer.run.manifest import Run
    figures = build_augmented(Run(args.run, args.runs_dir).path, from_args(BuildSettings, args))
    kind = ("control corpus (no calls)" if args.no_calls else "augmented corpus" +
            ("" if args.min_usefulness is None else f" (every call of usefulness ≥ {args.min_usefulness:g})"))
    print(f"{kind}: {figures['train']} train + {figures['validation']} validation documents in {figures['out']}")
    return figures


def add_commands(sub, command) -> None:
    p = command(sub, "build", cmd_build, "merge the kept calls into an augmented corpus (a datasets folder + JSONL)")
    p.add_argument("--run", required=True, help="run name: reads and writes RUNS_DIR/NAME/")
    p.add_argument("--runs-dir", default="runs", help="folder holding runs (default: runs)")
    add_flags(p, BuildSettings)
