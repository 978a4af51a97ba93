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
    calls = ", ".join(f"{k.removeprefix('calls_')} {n}" for k, n in figures.items()
                      if k.startswith("calls_") and not args.no_calls)
    dropped = ", ".join(f"{n} {k.removesuffix('_dropped').replace('_', ' ')}" for k, n in figures.items()
                        if k.endswith("_dropped") and n)
    if figures["skipped_bad"]:
        dropped += (", " if dropped else "") + f"{figures['skipped_bad']} bad records skipped"
    unscored = ", ".join(figures["unscored_tools"])
    print(f"{kind}: {figures['train']} train + {figures['validation']} validation documents in {figures['out']}"
          f"{f'; calls: {calls}' if calls else ''}{f'; left out: {dropped}' if dropped else ''}"
          f"{f'; no scored calls from {unscored} (run `toolformer filter` on them first)' if unscored else ''}")
    return figures


def add_commands(sub, command) -> None:
    p = command(sub, "build", cmd_build, "merge the kept calls into an augmented corpus (a datasets folder + JSONL)")
    p.add_argument("--run", required=True, help="run name: reads and writes RUNS_DIR/NAME/")
    p.add_argument("--runs-dir", default="runs", help="folder holding runs (default: runs)")
    add_flags(p, BuildSettings)
