"""Stage 4, build: merge the kept calls of every tool into one augmented text per document.

    toolformer build --run NAME [--syntax toolformer|hw3] [--max-per-tool 25000]
                     [--keep-uncalled-rate 0] [--heldout 0.1] [--seed 0] [--no-calls]

Reads <run>/documents.jsonl and <run>/<tool>/scored.jsonl (through `read_kept_calls`, the one
reader of kept calls); writes a `datasets` DatasetDict (splits "train" and "validation") plus one
JSONL per split and build.json (settings, counts) to <run>/augmented/ (<run>/augmented-<syntax>/
when --syntax differs from the run's own). With --no-calls it writes the control corpus to that
folder's name + "-no-calls": the same documents in the same splits, with no call in them, so a
model finetuned on it is the fair no-tool baseline (same finetuning, same text).

Calls go into the text by the insertion rule of toolformer/corpus/calls.py, the text between them
escaped (a document's own "[Calculator(" or "<<" is written "\\[Calculator(", "\\<<": text, not a
call). hw3 writes a call right before the number it computes, the text's own: "is <<8*2>>16 apples";
a call whose result the text does not go on with there is left out (result_not_in_text_dropped).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Mapping

from toolformer.config import BuildSettings
from toolformer.corpus.calls import canonical_position, inline_result, insert_calls, place
from toolformer.corpus.syntax import Call, CallSyntax, get_syntax
from toolformer.errors import UserFileNotFound, UserValueError
from toolformer.run.lock import exclusive
from toolformer.run import layout
from toolformer.run.manifest import DEFAULT_SYNTAX, Run
from toolformer.run.records import SCORED, BadRecord, ReadStats, read_documents, read_jsonl, write_jsonl_atomic
from toolformer.tools import get_tool

NO_CALLS_SUFFIX = "-no-calls"  # the control corpus sits beside the augmented one: augmented-no-calls/


@dataclass(frozen=True)
class KeptCall:
    doc_id: str
    position: int      # canonical character position in the document text
    tool: str          # name as written in calls
    input: str
    result: str
    usefulness: float | None  # None: kept unscored (τ_f = -inf)
    where: str = field(default="", compare=False)  # "scored.jsonl path:line", for error messages

    def rank(self) -> tuple:
        """Sort key, best first; ties broken by content so builds are deterministic. Unscored calls
        come last, ordered by a hash of their content: where several tools stand at one position (the
        unfiltered ablation), the winner is not always the tool whose name sorts first."""
        if self.usefulness is None:
            key = repr((self.doc_id, self.position, self.tool, self.input, self.result)).encode()
            return (1, hashlib.sha1(key).hexdigest())
        return (0, -self.usefulness, self.tool, self.input, self.result)

    @property
    def call(self) -> Call:
        return Call(self.tool, self.input, self.result)


def _renders_back(syntax: CallSyntax, call: KeptCall) -> bool:
    """The rendered call parses back to exactly this call (a "]" inside a result would not)."""
    rendered = syntax.render(call.tool, call.input, call.result)
    parsed = syntax.parse(rendered)
    return (len(parsed) == 1 and parsed[0].span == (0, len(rendered))
            and (parsed[0].tool, parsed[0].input, parsed[0].result) == (call.tool, call.input, call.result))


def recorded_syntax(run_dir: Path) -> str:
    """The call syntax the run was curated in (toolformer when it records none)."""
    run = Run(run_dir.name, run_dir.parent)
    if not run.manifest_path.exists():
        raise UserFileNotFound(f"{run.manifest_path} does not exist: curate the run first")
    return run.syntax() or DEFAULT_SYNTAX


def _kept_call(rec: dict, texts: Mapping[str, str], path: Path, number: int) -> KeptCall:
    text = texts.get(rec["doc_id"])
    if text is None:
        raise BadRecord(path, number, f"doc_id {rec['doc_id']!r} is not in {layout.DOCUMENTS}")
    if not 0 <= rec["position"] <= len(text):
        raise BadRecord(path, number, f"position {rec['position']} is outside the document ({len(text)} characters)")
    if rec["result"] is None:
        raise BadRecord(path, number, "a kept call must have a result")
    try:
        name = get_tool(rec["tool"]).name
    except ValueError as err:
        raise BadRecord(path, number, str(err)) from None
    return KeptCall(rec["doc_id"], canonical_position(text, rec["position"]), name, rec["input"].strip(),
                    inline_result(rec["result"]), None if rec["usefulness"] is None else float(rec["usefulness"]),
                    f"{path}:{number}")


def read_kept_calls(run_dir: Path, texts: Mapping[str, str], min_usefulness: float | None = None,
                    skip_bad: bool = False, stats: ReadStats | None = None) -> Iterator[KeptCall]:
    """The one reader of kept calls: every call the run's filter kept, from each tool folder's
    scored.jsonl, checked against its document (`texts`: document id -> text) and with its position
    made canonical. With `min_usefulness`, every call whose usefulness reaches it counts as kept
    instead. A bad record raises BadRecord naming file and line; with skip_bad it is counted in stats."""
    stats = stats if stats is not None else ReadStats()
    for path in sorted(run_dir.glob(f"*/{layout.SCORED}")):
        for number, rec in read_jsonl(path, SCORED, skip_bad=skip_bad, stats=stats):
            if min_usefulness is None:
                chosen = rec["kept"]
            else:
                chosen = rec["usefulness"] is not None and rec["usefulness"] >= min_usefulness
            if not chosen:
                continue
            try:
                call = _kept_call(rec, texts, path, number)
            except BadRecord as err:
                if not skip_bad:
                    raise
                stats.skip(err)
                continue
            yield call


def writable_calls(calls: Iterator[KeptCall], syntax: CallSyntax, texts: Mapping[str, str],
                   counts: Counter) -> list[KeptCall]:
    """The calls `syntax` can write into their documents (`texts`: id -> text): hw3 writes
    Calculator calls only, and only where the text goes on with the result; a result holding the
    end marker would not parse back. The others are counted."""
    out = []
    for call in calls:
        counts[f"kept_{call.tool}"] += 1
        if not syntax.named and call.tool != syntax.default_tool:
            counts["other_tool_dropped"] += 1
        elif not _renders_back(syntax, call):
            counts["unrenderable_dropped"] += 1
        elif place(texts[call.doc_id], call.position, call.call, syntax) is None:
            counts["result_not_in_text_dropped"] += 1
        else:
            out.append(call)
    return out


def select_calls(calls: list[KeptCall], max_per_tool: int, counts: Counter) -> list[KeptCall]:
    """One call per (document, position), the most useful; then the best `max_per_tool` per tool."""
    best: dict[tuple[str, int], KeptCall] = {}
    for call in sorted(calls, key=KeptCall.rank):
        slot = (call.doc_id, call.position)
        if slot in best:
            counts["conflict_dropped"] += 1
        else:
            best[slot] = call
    per_tool: dict[str, list[KeptCall]] = defaultdict(list)
    for call in best.values():  # already in rank order
        per_tool[call.tool].append(call)
    chosen = []
    for tool, tool_calls in per_tool.items():
        chosen += tool_calls[:max_per_tool]
        counts["cap_dropped"] += max(0, len(tool_calls) - max_per_tool)
    return chosen


def augmented_rows(docs: list, by_doc: Mapping[str, list[KeptCall]], syntax: CallSyntax, s: BuildSettings,
                   counts: Counter) -> list[dict]:
    """One row per document with a call (and per drawn plain document); the calls in place, or none
    at all in the control corpus."""
    rng = random.Random(s.seed)
    rows = []
    for doc in docs:
        doc_calls = sorted(by_doc.get(doc.id, []), key=lambda c: c.position)
        # one draw per document, called or not, so the rate does not shift which ones are kept
        keep_plain = rng.random() < s.keep_uncalled_rate
        if not doc_calls and not keep_plain:
            continue
        counts["documents_with_calls" if doc_calls else "documents_without_calls"] += 1
        for c in doc_calls:
            counts[f"calls_{c.tool}"] += 1
        if s.no_calls:  # the same text, written the same way (escaped), with no call in it
            rows.append({"id": doc.id, "text": insert_calls(doc.text, [], syntax), "n_calls": 0, "calls": []})
            continue
        text = insert_calls(doc.text, [(c.position, c.call) for c in doc_calls], syntax)
        rows.append({"id": doc.id, "text": text, "n_calls": len(doc_calls),
                     "calls": [{"tool": c.tool, "input": c.input, "result": c.result,
                                "position": c.position, "usefulness": c.usefulness} for c in doc_calls]})
    return rows


def heldout_split(rows: list[dict], heldout: float, seed: int) -> dict[str, list[dict]]:
    order = list(range(len(rows)))
    random.Random(seed + 1).shuffle(order)
    n_val = round(heldout * len(rows))
    if heldout > 0 and n_val == 0 and len(rows) >= 2:
        n_val = 1  # a held-out perplexity needs at least one document
    val_ids = set(order[:n_val])
    return {"train": [r for i, r in enumerate(rows) if i not in val_ids],
            "validation": [r for i, r in enumerate(rows) if i in val_ids]}


def write_corpus(out_dir: Path, splits: dict[str, list[dict]], figures: dict) -> None:
    """The splits as a datasets folder and JSONL files, plus build.json, swapped in whole.

    The new output is written aside (OUT.tmp) and renamed into place once complete, after the
    old one was renamed away (OUT.old): a build killed at any moment leaves the old output whole,
    or no output, never half a dataset; the next build clears what a killed one left. The caller
    holds the output's lock, so these names are this build's alone.
    """
    from datasets import Dataset, DatasetDict, Features, Value, disable_progress_bars
    disable_progress_bars()
    features = Features({"id": Value("string"), "text": Value("string"), "n_calls": Value("int32"),
                         "calls": [{"tool": Value("string"), "input": Value("string"), "result": Value("string"),
                                    "position": Value("int64"), "usefulness": Value("float64")}]})
    tmp, old = (out_dir.with_name(out_dir.name + suffix) for suffix in (".tmp", ".old"))
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    # columns, not rows: an empty split must still have them; and one (empty) shard, since a split
    # saved with none does not load (`datasets` 5 fails with an IndexError)
    DatasetDict({name: Dataset.from_dict({c: [r[c] for r in split] for c in features}, features=features)
                 for name, split in splits.items()}).save_to_disk(
        str(tmp), num_shards={name: 1 for name, split in splits.items() if not split})
    for name, split in splits.items():
        write_jsonl_atomic(tmp / f"{name}.jsonl", split)
    (tmp / "build.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def unscored_tools(run_dir: Path) -> list[str]:
    """The run's tools (its manifest's stages) that have no scored.jsonl. With none at all, the
    filter never ran: an error, not an empty corpus that finetuning would fail on later."""
    tools = sorted({stage.tool for stage in Run(run_dir.name, run_dir.parent).stages() if stage.tool})
    missing = [tool for tool in tools if not (run_dir / tool / layout.SCORED).exists()]
    if not any(run_dir.glob(f"*/{layout.SCORED}")):
        tool = missing[0] if len(missing) == 1 else "TOOL"
        what = (f"{run_dir / tool / layout.SCORED} does not exist" if len(missing) == 1 else
                f"{run_dir} has no {layout.SCORED} for {', '.join(missing) or 'any tool'}")
        raise UserFileNotFound(f"{what}: run `toolformer filter --run {run_dir.name} --tool {tool}` "
                               f"(or `toolformer curate`) first")
    return missing


def build_augmented(run_dir: str | Path, settings: BuildSettings | None = None, *,
                    out_dir: str | Path | None = None, **options) -> dict:
    """Write the augmented (or, with no_calls, the control) corpus of a run; return its counts and
    where it went. `options` are BuildSettings fields, e.g. build_augmented(run, heldout=0)."""
    s = replace(settings or BuildSettings(), **options)
    run_dir = Path(run_dir)
    own_syntax = recorded_syntax(run_dir)
    syntax_name = s.syntax or own_syntax
    syntax = get_syntax(syntax_name)
    if out_dir is None:
        name = layout.AUGMENTED if syntax_name == own_syntax else f"{layout.AUGMENTED}-{syntax_name}"
        if s.min_usefulness is not None:
            name += "-unfiltered" if s.min_usefulness == float("-inf") else f"-min-usefulness-{s.min_usefulness:g}"
        out_dir = run_dir / (name + NO_CALLS_SUFFIX if s.no_calls else name)
    out_dir = Path(out_dir)
    if not 0 <= s.keep_uncalled_rate <= 1 or not 0 <= s.heldout < 1:
        raise UserValueError("--keep-uncalled-rate must be in [0, 1] and --heldout in [0, 1)")

    unscored = unscored_tools(run_dir)
    stats = ReadStats()
    docs = list(read_documents(run_dir / layout.DOCUMENTS))
    counts: Counter = Counter(documents=len(docs), documents_with_calls=0, documents_without_calls=0,
                              conflict_dropped=0, cap_dropped=0, unrenderable_dropped=0, other_tool_dropped=0,
                              result_not_in_text_dropped=0)
    texts = {d.id: d.text for d in docs}
    kept = read_kept_calls(run_dir, texts, s.min_usefulness, skip_bad=s.skip_bad, stats=stats)
    by_doc: dict[str, list[KeptCall]] = defaultdict(list)
    for call in select_calls(writable_calls(kept, syntax, texts, counts), s.max_per_tool, counts):
        by_doc[call.doc_id].append(call)
    splits = heldout_split(augmented_rows(docs, by_doc, syntax, s, counts), s.heldout, s.seed)
    figures = {"run": str(run_dir), "out": str(out_dir), "syntax": syntax_name,
               "train": len(splits["train"]), "validation": len(splits["validation"]),
               **dict(sorted(counts.items())), "skipped_bad": stats.skipped_bad,
               "skipped_examples": stats.examples, "unscored_tools": unscored,
               "settings": {"max_per_tool": s.max_per_tool, "keep_uncalled_rate": s.keep_uncalled_rate,
                            "heldout": s.heldout, "seed": s.seed, "no_calls": s.no_calls,
                            "min_usefulness": None if s.min_usefulness is None else str(s.min_usefulness)}}
    # one build at a time per output: a second one is refused, naming the first
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out_dir, Run(run_dir.name, run_dir.parent), f"build of {out_dir.name}"):
        write_corpus(out_dir, splits, figures)
    return figures

