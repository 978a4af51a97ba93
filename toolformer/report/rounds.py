"""Reading a `toolformer iterate` folder for its report: the rounds side by side.

Every figure comes from a file a round wrote, none from a model: status and sampler from
iterate.json and the round's manifest; candidates, executed, kept and usefulness from the
manifest and <tool>/scored.jsonl (summary.summarize_run, as the run report reads them); training
from model/finetune.json; evaluation from eval/<benchmark>.summary.json; and each round against
the one before from both rounds' tools-on records (evaluate.compare_records). A round that is
still running, or was killed, shows its status and whatever it has written so far.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolformer.errors import UserError, UserFileNotFound, UserValueError
from toolformer.report.summary import RunSummary, stage_config, summarize_run
from toolformer.report.tables import Table, count_text, flatten, percent
from toolformer.run import layout
from toolformer.training.iterate import ITERATE_JSON

ROUND_FOLDER = re.compile(r"round-(\d+)")
# iterate.json's status of a round -> what it means; a round it does not list yet is being curated
STATUS_TEXT = {"done": "done", "finetuned": "finetuned, evaluation not finished",
               "curated": "curated, finetuning not finished", None: "curating, not yet in iterate.json"}
QUANTILES = (("min", 0), ("10 %", 10), ("median", 50), ("90 %", 90), ("max", 100))
# settings shown at the top besides iterate's own; iterate.json holds them all
SHOWN_SETTINGS = ("run.model", "run.corpus", "sample.k", "sample.m", "sample.tau_s", "filter.tau_f",
                  "finetune.max_steps", "finetune.batch_size", "finetune.lr")


@dataclass
class Round:
    number: int
    path: Path
    status: str | None           # as iterate.json records it
    record: dict                 # its iterate.json entry ({} when there is none yet)
    run: RunSummary | None       # its calls; None while it has none (or they cannot be read)
    finetune: dict | None        # model/finetune.json, once the finetune has finished
    evals: dict[str, dict] = field(default_factory=dict)   # benchmark -> eval/<benchmark>.summary.json
    report: Path | None = None   # its own report.html, once written

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status_text(self) -> str:
        return STATUS_TEXT.get(self.status, str(self.status))


@dataclass
class RoundsSummary:
    name: str
    path: Path
    settings: dict               # iterate.json's settings ({} before it is written)
    rounds: list[Round]
    warnings: list[str]


def round_folders(path: Path) -> dict[int, Path]:
    return {int(m[1]): p for p in path.iterdir() if p.is_dir() and (m := ROUND_FOLDER.fullmatch(p.name))}


def is_iterate_folder(path: Path) -> bool:
    """iterate.json, or round folders and no run of its own (round 0 is written before iterate.json)."""
    return path.is_dir() and ((path / ITERATE_JSON).exists()
                              or (not (path / layout.MANIFEST).exists() and bool(round_folders(path))))


def _read_json(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserValueError(f"{path}:{err.lineno}: bad JSON: {err.msg}") from None


def _read_round(number: int, path: Path, record: dict, warnings: list[str]) -> Round:
    status = record.get("status")
    run = None
    if path.is_dir():
        try:
            run = summarize_run(path)
        except UserError as err:
            # a round that has only just started has nothing to summarize yet: no warning for that
            if status is not None or not isinstance(err, UserFileNotFound):
                warnings.append(f"{path.name}: {err}")
        if run is not None and status is not None:  # a round still curating has partial files: no news
            warnings += [f"{path.name}, {t.name}: {w}" for t in run.tools for w in t.warnings]
    else:
        warnings.append(f"{path.name} is listed in {ITERATE_JSON} but its folder {path} is missing")
    evals = {}
    for summary_path in sorted((path / layout.EVAL).glob("*.summary.json")):
        summary = _read_json(summary_path)
        evals[summary.get("benchmark", summary_path.name.removesuffix(".summary.json"))] = summary
    return Round(number, path, status, record, run, _read_json(path / layout.MODEL / "finetune.json"), evals)


def summarize_rounds(path: Path) -> RoundsSummary:
    """The rounds iterate.json lists and those on disk it does not list yet, in order."""
    state = _read_json(path / ITERATE_JSON) or {}
    records = {}
    for record in state.get("rounds", []):
        if not isinstance(record, dict) or not isinstance(record.get("round"), int):
            raise UserValueError(f"{path / ITERATE_JSON}: each of 'rounds' needs a 'round' number, got {record!r:.80}")
        records[record["round"]] = record
    folders = round_folders(path)
    warnings: list[str] = []
    rounds = [_read_round(r, path / records[r].get("run", f"round-{r}") if r in records else folders[r],
                          records.get(r, {}), warnings) for r in sorted(set(records) | set(folders))]
    return RoundsSummary(path.name, path, state.get("settings", {}), rounds, warnings)


# ---------------------------------------------------------------------------- the tables

def relative(path: str, to: Path) -> str:
    """path as seen from the iterate folder when inside it (iterate.json stores absolute paths)."""
    try:
        return str(Path(path).resolve().relative_to(to.resolve()))
    except ValueError:
        return path


def sampler_of(rnd: Round, folder: Path) -> tuple[str, str]:
    """(sampler, prompt) of a round: calls read from annotations, or a model that sampled them,
    with the tool's few-shot prompt or none (a finetuned model writes calls unprompted)."""
    config = next((c for t in (rnd.run.tools if rnd.run else ())
                   if (c := stage_config(rnd.run.manifest, f"sample/{t.key}"))), {})
    if config.get("source") == "annotations":
        return f"{config.get('format')} annotations", "–"
    if not config:  # not sampled yet: what iterate.json says, if anything
        return relative(rnd.record["sampler"], folder) if "sampler" in rnd.record else "–", "–"
    model, adapter = str(config.get("model")), config.get("adapter")
    # the manifest names an adapter's model "BASE + ADAPTER"; the adapter is shown inside the folder
    sampler = f"{model.removesuffix(f' + {adapter}')} + adapter {relative(adapter, folder)}" if adapter else model
    prompt = "none" if config.get("no_prompt") else config.get("prompt") or "few-shot (the tool's)"
    return sampler, prompt


def documents_of(rnd: Round) -> str:
    count = rnd.run.manifest.get("stages", {}).get("ingest", {}).get("counts", {}).get("documents") if rnd.run else None
    return count_text(count)


def rounds_table(iteration: RoundsSummary, report_link) -> Table:
    """One row per round: status, sampler, documents and its own report (report_link(round) renders the link)."""
    rows = []
    for rnd in iteration.rounds:
        sampler, prompt = sampler_of(rnd, iteration.path)
        rows.append([rnd.name, rnd.status_text, sampler, prompt, documents_of(rnd),
                     report_link(rnd) if rnd.report else "–"])
    return ["round", "status", "sampler", "prompt", "documents", "report"], rows


def calls_table(iteration: RoundsSummary) -> Table:
    """Per round and tool, the calls at each step and the share of scored calls kept at τ_f (kept and
    scored from scored.jsonl, so the rate holds while the filter is still running)."""
    rows = []
    for rnd in iteration.rounds:
        if rnd.run is None:
            rows.append([rnd.name, *["–"] * 8])
            continue
        for t in rnd.run.tools:
            scored, kept = len(t.usefulness), t.counts["kept"]
            rows.append([rnd.name, t.name, "–" if t.tau_f is None else f"{t.tau_f:g}",
                         count_text(t.count("candidates")), count_text(t.count("executed ok")),
                         count_text(t.count("executed, failed")), count_text(scored), count_text(kept),
                         percent(kept, scored)])
    return ["round", "tool", "τ_f", "candidates", "executed ok", "failed", "scored", "kept", "kept / scored"], rows


def usefulness_table(iteration: RoundsSummary) -> Table:
    """Quantiles and mean of usefulness (L⁻ − L⁺) over each round's scored calls, per tool."""
    rows = []
    for rnd in iteration.rounds:
        for t in rnd.run.tools if rnd.run else ():
            u = t.usefulness
            figures = [f"{v:+.2f}" for v in np.percentile(u, [q for _, q in QUANTILES])] + [f"{u.mean():+.2f}"] \
                if u.size else ["–"] * (len(QUANTILES) + 1)
            rows.append([rnd.name, t.name, count_text(u.size), *figures])
    return ["round", "tool", "scored", *(label for label, _ in QUANTILES), "mean"], rows


def training_table(iteration: RoundsSummary) -> Table:
    def number(value, spec: str) -> str:
        return "–" if value is None else format(value, spec)
    rows = []
    for rnd in iteration.rounds:
        f = rnd.finetune
        if f is None:
            continue
        data = f.get("settings", {}).get("data")
        rows.append([rnd.name, relative(data, iteration.path) if data else "–", count_text(f.get("train_documents")),
                     count_text(f.get("validation_documents")), count_text(f.get("steps")),
                     number(f.get("train_seconds"), ",.1f"), count_text(f.get("train_tokens")),
                     number(f.get("tokens_per_second"), ",.1f"), number(f.get("best_eval_loss"), ".4f")])
    return ["round", "trained on", "train documents", "validation documents", "steps", "train seconds",
            "train tokens", "tokens / s", "best eval loss"], rows


def evaluation_table(iteration: RoundsSummary) -> Table:
    """Per round and benchmark: tools off and on with 95% CIs, call rate, on − off paired."""
    from toolformer.evaluation.evaluate import difference_ci, p_value, percent_ci
    rows = []
    for rnd in iteration.rounds:
        for benchmark, s in rnd.evals.items():
            pair = s.get("on_vs_off")
            rows.append([rnd.name, benchmark, s.get("split", {}).get("part", "–"), count_text(s.get("n")),
                         *(percent_ci(s[mode]) if mode in s else "–" for mode in ("tools_off", "tools_on")),
                         "–" if "call_rate" not in s else f"{100 * s['call_rate']:.1f} %",
                         difference_ci(pair) if pair else "–", p_value(pair["p_value"]) if pair else "–"])
    return ["round", "benchmark", "split", "n", "tools off % (95% CI)", "tools on % (95% CI)", "call rate",
            "on − off, points (95% CI)", "McNemar p"], rows


def tools_on_records(rnd: Round, benchmark: str) -> Path:
    return rnd.path / layout.EVAL / f"{benchmark}.tools-on.jsonl"


def previous_round_table(iteration: RoundsSummary) -> tuple[Table, list[str]]:
    """Each round's tools-on accuracy against the round before, paired on the same examples; and
    why a pair that both rounds evaluated could not be compared."""
    from toolformer.evaluation.evaluate import compare_records, difference_ci, p_value, percent_ci
    rows, notes = [], []
    for before, rnd in zip(iteration.rounds, iteration.rounds[1:]):
        for benchmark in (b for b in rnd.evals if b in before.evals):
            first, second = tools_on_records(before, benchmark), tools_on_records(rnd, benchmark)
            if not (first.exists() and second.exists()):
                notes.append(f"{rnd.name} against {before.name} on {benchmark}: no tools-on records in both")
                continue
            try:
                c = compare_records(first, second)
            except UserValueError as err:
                notes.append(f"{rnd.name} against {before.name} on {benchmark}: {err}")
                continue
            rows.append([rnd.name, before.name, benchmark, count_text(c["n"]), percent_ci(c["first"]),
                         percent_ci(c["second"]), difference_ci(c), p_value(c["p_value"]),
                         f"{c['only_second']:,} / {c['only_first']:,}"])
    header = ["round", "against", "benchmark", "n", "before % (95% CI)", "this round % (95% CI)",
              "difference, points (95% CI)", "McNemar p", "right only now / only before"]
    return (header, rows), notes


def settings_facts(iteration: RoundsSummary) -> list[tuple[str, str]]:
    flat = flatten(iteration.settings) if iteration.settings else {}
    keys = [k for k in flat if k.startswith("iterate.")] + [k for k in SHOWN_SETTINGS if k in flat]
    return [(key, flat[key]) for key in keys]
