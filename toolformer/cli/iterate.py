"""`toolformer iterate`: seed round, then rounds sampled by the previous round's model
(toolformer/training/iterate.py); the rounds' figures side by side at the end.

    toolformer iterate --run NAME --seed-corpus gsm8k_seed.jsonl --seed-format gsm8k \\
                       --corpus gsm8k_plain.jsonl --rounds 1 --max-steps 250 --lr 1e-3 --eval svamp

It takes the flags of the stages it runs: the run's (--model is the base model of every round),
the sampler's, the filter's and the finetune's; iterate sets the sampler's adapter, its prompt and
the seed's annotation format itself.
"""
from __future__ import annotations

import sys

from toolformer.cli.flags import add_flags, from_args
from toolformer.config import FilterSettings, FinetuneSettings, IterateSettings, RunSettings, SampleSettings
from toolformer.training.iterate import PER_ROUND_SAMPLE

RETRIEVER_FLAGS = ("tool_retriever", "tools_per_doc")
FINETUNE_SET_BY_ITERATE = ("model", "data", "out_dir", "resume", "seed", "progress", "full")
COLUMNS = ("round", "sampler", "candidates", "kept calls", "train docs", "steps", "tools off", "tools on",
           "call rate", "on − off", "p")


def table_cells(record: dict) -> list[str]:
    from toolformer.evaluation.evaluate import difference_ci, p_value, percent_ci
    # the path of the previous round's adapter is in iterate.json; the table names the round
    sampler = f"round-{record['round'] - 1} adapter" if record["round"] else record.get("sampler", "")
    cells = [str(record["round"]), sampler, str(record.get("candidates", "")),
             str(record.get("kept_calls", "")), str(record.get("train_documents", "")), str(record.get("steps", ""))]
    ev = record.get("eval")
    if not ev:
        return cells + ["–"] * 5
    return cells + [percent_ci(ev["tools_off"]), percent_ci(ev["tools_on"]), f"{100 * ev['call_rate']:.1f}%",
                    difference_ci(ev["on_vs_off"]), p_value(ev["on_vs_off"]["p_value"])]


def cmd_iterate(args) -> dict:
    from rich.console import Console
    from rich.table import Table
    from toolformer.training.iterate import iterate
    run = from_args(RunSettings, args)
    state = iterate(run, from_args(IterateSettings, args), from_args(SampleSettings, args),
                    from_args(FilterSettings, args, window=None), from_args(FinetuneSettings, args))
    settings = state["settings"]["iterate"]
    title = f"iterate {run.run}" + (f": {settings['eval']}" if settings["eval"] else "")
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "sampler" else "right")
    for record in state["rounds"]:
        table.add_row(*table_cells(record))
    console = Console(file=sys.stderr, width=max(140, Console(file=sys.stderr).width))
    console.print(table)
    console.print(f"rounds in {state['path']}/ (iterate.json); adapters in round-R/model/adapter")
    return state


def add_commands(sub, command) -> None:
    p = command(sub, "iterate", cmd_iterate, "iterated Toolformer: finetune on annotated seed data, then let "
                                             "each round's model sample the next round's calls")
    add_flags(p, RunSettings)
    add_flags(p, IterateSettings)
    add_flags(p, SampleSettings, skip=PER_ROUND_SAMPLE + RETRIEVER_FLAGS)
    add_flags(p, FilterSettings, skip=("window",))
    add_flags(p, FinetuneSettings, skip=FINETUNE_SET_BY_ITERATE)
