"""`toolformer iterate`: Toolformer applied iteratively (the paper's Limitations): each round's
finetuned model samples the calls the next round trains on.

    toolformer iterate --run NAME --seed-corpus seed.jsonl --seed-format gsm8k --corpus plain.jsonl
                       [--rounds 1] [--filter-with base|sampler] [--eval svamp --eval-limit 300]

Every round is a run of its own, RUNS_DIR/NAME/round-R/, made by the single stages' library
functions, so `toolformer report --run round-R --runs-dir RUNS_DIR/NAME` works on it:
  round 0  the seed: candidates from the calls --seed-corpus carries (--seed-format), executed and
           filtered by τ_f as the paper filters every call (--seed-filter all keeps each call that
           executes, without scoring any), built, and a LoRA adapter finetuned from the base model --model;
  round R  --corpus sampled by round R-1's adapter without the few-shot prompt (it learnt to write
           calls), executed, filtered, built; then a fresh adapter is finetuned from the base model
           on seed + round-R documents (round-R/training/: both built corpora's splits, concatenated).
The sampled calls are scored by the base model M with the call as a prefix, as in the paper
(--filter-with base); --filter-with sampler scores them with the round's sampler instead. With
--eval each round's adapter is evaluated with tools off and on (round-R/eval/).

NAME/iterate.json, rewritten whole after every step, holds the settings and each round's status and
figures. Run the same command again after a kill to continue: each stage resumes, build is
deterministic, finetune continues from its last checkpoint, a finished round is skipped. Other
settings are refused, except --rounds, which may grow to add rounds.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

from toolformer.config import (ExecuteSettings, FilterSettings, FinetuneSettings, IterateSettings, RunSettings,
                               SampleSettings)
from toolformer.errors import UserFileNotFound, UserValueError
from toolformer.run.lock import exclusive
from toolformer.run import layout
from toolformer.run.manifest import Run
from toolformer.run.records import read_jsonl, writing

ITERATE_JSON = "iterate.json"
TRAINING = "training"   # round R >= 1: seed + round-R documents, what its adapter is trained on
# settings that do not change what a round writes: not compared on a re-run
UNRECORDED_RUN = ("run", "runs_dir", "no_progress", "ray", "workers")
UNRECORDED = {"iterate": ("rounds",), "finetune": ("progress",)}
# set per round by iterate itself
PER_ROUND_SAMPLE = ("from_annotations", "adapter", "no_prompt")


def write_json_atomic(path: Path, value: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with writing(path):
        tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def concatenate(parts: list[Path], out: Path) -> dict:
    """Write one corpus holding the train and validation splits of built corpora `parts`, in order
    (read from the JSONL files build writes beside the datasets folder: an empty split is one too)."""
    from toolformer.corpus.build import write_corpus
    built = [json.loads((part / "build.json").read_text()) for part in parts]
    syntaxes = {b["syntax"] for b in built}
    if len(syntaxes) > 1:
        raise UserValueError(f"{', '.join(map(str, parts))} are written in different call syntaxes {sorted(syntaxes)}")
    per_part = {name: [[row for _, row in read_jsonl(part / f"{name}.jsonl")] for part in parts]
                for name in ("train", "validation")}
    splits = {name: [row for rows in part_rows for row in rows] for name, part_rows in per_part.items()}
    figures = {"syntax": syntaxes.pop(), "parts": [str(p) for p in parts],
               **{name: len(rows) for name, rows in splits.items()},
               **{f"{name}_per_part": [len(rows) for rows in part_rows] for name, part_rows in per_part.items()}}
    write_corpus(out, splits, figures)
    return figures


class Iteration:
    """The rounds of one `toolformer iterate`, all under RUNS_DIR/NAME/."""

    def __init__(self, run: RunSettings, settings: IterateSettings, sample: SampleSettings = SampleSettings(),
                 filter: FilterSettings = FilterSettings(), finetune: FinetuneSettings = FinetuneSettings()):
        if finetune.full:
            raise UserValueError("iterate trains a LoRA adapter per round (each the next round's sampler): "
                                 "leave out --full")
        if settings.rounds < 0:
            raise UserValueError(f"--rounds must be at least 0, not {settings.rounds}")
        if settings.rounds and run.corpus is None:
            raise UserValueError(f"--corpus is needed: the unlabelled documents that rounds 1 to {settings.rounds} "
                                 f"sample calls in (or --rounds 0 for the seed round alone)")
        if settings.rounds and not Path(run.corpus).exists():  # found now, not after the seed round's hours
            raise UserFileNotFound(f"--corpus {run.corpus} does not exist")
        self.run, self.settings, self.sample, self.filter = run, settings, sample, filter
        # one base model for every round; the round's own folders for data and output
        self.finetune = replace(finetune, model=run.model, data=None, out_dir=None, resume=True,
                                progress=not run.no_progress)
        self.path = Path(run.runs_dir) / run.run
        self.state_path = self.path / ITERATE_JSON

    def recorded_settings(self) -> dict:
        """Everything a round's outputs depend on, as iterate.json stores it."""
        parts = {"run": {k: v for k, v in asdict(self.run).items() if k not in UNRECORDED_RUN},
                 "iterate": asdict(self.settings), "sample": asdict(self.sample), "filter": asdict(self.filter),
                 "finetune": asdict(self.finetune)}
        for part, names in UNRECORDED.items():
            parts[part] = {k: v for k, v in parts[part].items() if k not in names}
        return json.loads(json.dumps(parts))  # as stored: tuples become lists

    def load_state(self) -> dict:
        """iterate.json, after checking that it was made with these settings (a fresh one if none)."""
        settings = self.recorded_settings()
        if not self.state_path.exists():
            return {"settings": settings, "rounds": []}
        state = json.loads(self.state_path.read_text(encoding="utf-8"))
        # a setting recorded on one side only is not compared: another version may record more
        changed = [f"{part}.{k}: {old[k]!r} -> {v!r}" for part, values in settings.items()
                   for old in [state["settings"].get(part, {})] for k, v in values.items() if k in old and old[k] != v]
        if changed:
            raise UserValueError(f"{self.state_path} was made with other settings ({'; '.join(changed)}): "
                                 f"resume with the same ones (only --rounds may change), or use a new --run")
        return state

    # ---- one round
    def round_dir(self, r: int) -> Path:
        return self.path / f"round-{r}"

    def adapter(self, r: int) -> Path:
        return self.round_dir(r) / layout.MODEL / "adapter"

    def round_settings(self, r: int) -> tuple[RunSettings, SampleSettings, FilterSettings, str]:
        """(run, sample, filter settings, filter_with) of round r's curation."""
        s = self.settings
        run = replace(self.run, run=self.round_dir(r).name, runs_dir=str(self.path),
                      corpus=s.seed_corpus if r == 0 else self.run.corpus,
                      limit=s.seed_limit if r == 0 else self.run.limit)
        if r == 0:
            sample = replace(self.sample, from_annotations=s.seed_format, adapter=None, no_prompt=False)
            filter = replace(self.filter, tau_f=float("-inf")) if s.seed_filter == "all" else self.filter
            return run, sample, filter, "base"
        sample = replace(self.sample, from_annotations=None, adapter=str(self.adapter(r - 1)), no_prompt=True)
        return run, sample, self.filter, s.filter_with

    def curate(self, r: int) -> dict:
        """Sample (or read the seed's annotations), execute and filter; the calls it proposed and kept."""
        from toolformer.pipeline.curate import curate
        run, sample, filter, filter_with = self.round_settings(r)
        figures = curate(run, self.settings.tools, sample, ExecuteSettings(), filter, filter_with=filter_with)
        stages = figures["stages"]
        return {"sampler": sample.adapter or f"{self.settings.seed_format} annotations",
                "candidates": sum(v["candidates"] for k, v in stages.items() if k.startswith("sample/")),
                "kept_calls": sum(v["kept"] for k, v in stages.items() if k.startswith("filter/"))}

    def train(self, r: int) -> dict:
        """Build round r's corpus and finetune its adapter (skipped when it is already written)."""
        from toolformer.corpus.build import build_augmented
        from toolformer.training.finetune import finetune
        model_dir = self.round_dir(r) / layout.MODEL
        if not (self.adapter(r).is_dir() and (model_dir / "finetune.json").exists()):
            built = build_augmented(self.round_dir(r))
            data = Path(built["out"])
            if r > 0:
                data = self.round_dir(r) / TRAINING
                concatenate([self.round_dir(0) / layout.AUGMENTED, Path(built["out"])], data)
            finetune(self.round_dir(r), self.finetune, data=str(data))
        done = json.loads((model_dir / "finetune.json").read_text())
        return {"adapter": str(self.adapter(r)),
                **{k: done[k] for k in ("train_documents", "validation_documents", "steps", "best_eval_loss",
                                        "train_seconds", "train_tokens", "tokens_per_second")}}

    def evaluate(self, r: int) -> dict:
        """Round r's adapter on --eval, tools off and on, paired (resumes its own records)."""
        from toolformer.evaluation.evaluate import evaluate
        s = self.settings
        summary = evaluate(benchmark=s.eval, adapter=str(self.adapter(r)), data_dir=s.data_dir, limit=s.eval_limit,
                           out=str(self.round_dir(r) / layout.EVAL), progress=not self.run.no_progress)
        return {"benchmark": summary["benchmark"], "n": summary["n"], "call_rate": summary["call_rate"],
                **{mode: {k: summary[mode][k] for k in ("accuracy", "ci", "correct")}
                   for mode in ("tools_off", "tools_on")},
                "on_vs_off": {k: summary["on_vs_off"][k] for k in ("difference", "ci", "p_value")}}


def iterate(run: RunSettings, settings: IterateSettings, sample: SampleSettings = SampleSettings(),
            filter: FilterSettings = FilterSettings(), finetune: FinetuneSettings = FinetuneSettings()) -> dict:
    """Run (or resume) rounds 0..settings.rounds; return iterate.json's content plus its path."""
    it = Iteration(run, settings, sample, filter, finetune)
    for name in PER_ROUND_SAMPLE:
        if getattr(sample, name) != getattr(SampleSettings(), name):
            raise UserValueError(f"iterate sets {name} itself in each round: leave it out")
    it.path.mkdir(parents=True, exist_ok=True)
    with exclusive(it.state_path, Run(run.run, run.runs_dir), "iterate"):
        state = it.load_state()
        rounds = state["rounds"]

        def save(r: int, record: dict) -> None:
            rounds[r:r + 1] = [record]
            write_json_atomic(it.state_path, state)

        for r in range(settings.rounds + 1):
            record = rounds[r] if r < len(rounds) else {"round": r, "run": it.round_dir(r).name}
            if record.get("status") == "done":
                continue
            record.update(it.curate(r), status="curated")
            save(r, record)
            record.update(it.train(r), status="finetuned")
            save(r, record)
            if settings.eval:
                record["eval"] = it.evaluate(r)
            save(r, {**record, "status": "done"})
    return {**state, "path": str(it.path)}
