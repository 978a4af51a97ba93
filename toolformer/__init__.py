"""toolformer: teach a language model to use tools (Schick et al., 2023), stage by stage.

The Python API mirrors the command line; every keyword is the flag's name with underscores and
has the flag's default (toolformer/config.py holds them all):

    import toolformer
    toolformer.curate("r1", corpus="docs.jsonl", tools="calculator", k=5, tau_f=0.5)
    toolformer.build("r1", heldout=0.1)
    toolformer.finetune("r1", max_steps=30)
    toolformer.evaluate(benchmark="svamp", adapter="runs/r1/model/adapter", limit=50)
    toolformer.generate(["The farm had 12 cows and bought 30 more, so"], adapter="runs/r1/model/adapter")
    toolformer.iterate("it", seed_corpus="gsm8k_seed.jsonl", seed_format="gsm8k", corpus="plain.jsonl", rounds=1)

Heavy libraries (torch, transformers) load on the first call, not on import.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
from pathlib import Path

__version__ = importlib.metadata.version(__name__)  # written once, in pyproject.toml


def _split_fields(fields: dict, *classes) -> list:
    """One settings object per class from keyword arguments; a name goes to the first class that
    has it (the sampler's `window` is the run's: filter takes it from the sample stage)."""
    left = dict(fields)
    objects = []
    for cls in classes:
        names = {f.name for f in dataclasses.fields(cls)}
        objects.append(cls(**{k: left.pop(k) for k in list(left) if k in names}))
    if left:
        known = sorted({f.name for cls in classes for f in dataclasses.fields(cls)})
        raise TypeError(f"unknown setting(s) {sorted(left)}; known: {', '.join(known)}")
    return objects


def curate(run: str, tools: str | list[str] | None = None, stages=("sample", "execute", "filter"),
           **fields) -> dict:
    """`toolformer curate`: sample, execute and filter calls for `tools` (default: all) in runs/<run>.
    Keywords are the fields of RunSettings, SampleSettings, ExecuteSettings and FilterSettings."""
    from toolformer.config import ExecuteSettings, FilterSettings, RunSettings, SampleSettings
    from toolformer.pipeline.curate import curate as run_curate
    run_s, sample, execute, filter_ = _split_fields({"run": run, **fields}, RunSettings, SampleSettings,
                                                    ExecuteSettings, FilterSettings)
    return run_curate(run_s, tools, sample, execute, filter_, stages=stages)


def build(run: str, runs_dir: str = "runs", **fields) -> dict:
    """`toolformer build`: the augmented corpus (or with no_calls=True the control corpus)."""
    from toolformer.corpus.build import build_augmented
    return build_augmented(Path(runs_dir) / run, **fields)


def finetune(run: str, runs_dir: str = "runs", **fields) -> dict:
    """`toolformer finetune` on the run's augmented corpus (FinetuneSettings fields as keywords)."""
    from toolformer.training.finetune import finetune as run_finetune
    return run_finetune(Path(runs_dir) / run, **fields)


def evaluate(**fields) -> dict:
    """`toolformer eval` (EvalSettings fields as keywords): accuracies with 95% CIs, paired test."""
    from toolformer.evaluation.evaluate import evaluate as run_evaluate
    return run_evaluate(**fields)


def generate(prompts: list[str], **fields) -> list:
    """`toolformer generate`: greedy decoding with live tool calls (GenerateSettings fields)."""
    from toolformer.inference.decoder import generate as run_generate
    return run_generate(prompts, **fields)


def iterate(run: str, **fields) -> dict:
    """`toolformer iterate`: a seed round on annotated data, then rounds sampled by the previous
    round's model. Keywords: RunSettings, IterateSettings, SampleSettings, FilterSettings and
    FinetuneSettings fields (model and seed are the run's and serve every round)."""
    from toolformer.config import FilterSettings, FinetuneSettings, IterateSettings, RunSettings, SampleSettings
    from toolformer.training.iterate import iterate as run_iterate
    return run_iterate(*_split_fields({"run": run, **fields}, RunSettings, IterateSettings, SampleSettings,
                                      FilterSettings, FinetuneSettings))
