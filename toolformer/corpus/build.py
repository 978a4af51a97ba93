"""Stage 4, build: merge the kept calls of every tool into one augmented text per document.

    toolformer build --run NAME [--syntax toolformer|hw3] [--max-per-tool 25000]
                     [--keep-uncalled-rate 0] [--heldout 0.1] [--seed 0]

Reads <run>/documents.jsonl and <run>/<tool>/scored.jsonl; writes a `datasets` DatasetDict
(splits "train" and "validation") plus one JSONL per split and build.json (settings, counts) to
<run>/augmented/ (<run>/augmented-<syntax>/ when --syntax differs from the run's own).

Insertion rule. A call e(c, r) goes in at its character position p with exactly one space beside
it: before the call when the character before p is not whitespace, after it otherwise.

    "... 400 passed| 29%"  ->  "... 400 passed [Calculator(400 / 1400) → 0.29] 29%"
    "Total:\n|29"          ->  "Total:\n[Calculator(13 + 16) → 29] 29"

A position right after "word " renders exactly like the position before that space, so positions
are first made canonical (moved back before the space); two calls at one canonical position
conflict and the more useful one wins. `strip_calls` inverts the rule exactly: it gives back the
original text and each call's canonical position.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from toolformer.tools import get_tool
from toolformer.run.records import SCORED, BadRecord, ReadStats, read_documents, read_jsonl, write_jsonl_atomic
from toolformer.corpus.syntax import Call, CallSyntax, get_syntax


@dataclass(frozen=True)
class KeptCall:
    doc_id: str
    position: int      # canonical character position in the document text
    tool: str          # name as written in calls
    input: str
    result: str
    usefulness: float

    def rank(self) -> tuple:
        """Sort key, best first; ties broken by content so builds are deterministic."""
        return (-self.usefulness, self.tool, self.input, self.result)


def inline_result(result: str) -> str:
    """A tool result as it appears inside a call: one line, no outer whitespace."""
    return " ".join(result.split())


def canonical_position(text: str, p: int) -> int:
    if p >= 2 and text[p - 1] == " " and not text[p - 2].isspace():
        return p - 1
    return p


def insert_calls(text: str, calls: list[tuple[int, str]]) -> str:
    """Insert rendered calls at distinct canonical positions (see the module docstring)."""
    pieces, last = [], 0
    for p, rendered in sorted(calls):
        pieces.append(text[last:p])
        pieces.append(" " + rendered if p > 0 and not text[p - 1].isspace() else rendered + " ")
        last = p
    pieces.append(text[last:])
    return "".join(pieces)


def strip_calls(text: str, syntax: CallSyntax) -> tuple[str, list[tuple[int, Call]]]:
    """(text without its calls, [(position in that text, call)]): the inverse of `insert_calls`.

    On model output (not built here) it removes each call and at most one space beside it.
    """
    pieces, found, last, length = [], [], 0, 0
    for call in syntax.parse(text):
        s, e = call.span
        if s - 2 >= last and text[s - 1] == " " and not text[s - 2].isspace():
            cut_from, cut_to = s - 1, e   # the space was put before the call
        else:
            cut_from, cut_to = s, e + (text[e:e + 1] == " ")
        pieces.append(text[last:cut_from])
        length += cut_from - last
        found.append((length, call))
        last = cut_to
    pieces.append(text[last:])
    return "".join(pieces), found


def _renders_back(syntax: CallSyntax, call: KeptCall) -> bool:
    """The rendered call parses back to exactly this call (a "]" inside a result would not)."""
    rendered = syntax.render(call.tool, call.input, call.result)
    parsed = syntax.parse(rendered)
    return (len(parsed) == 1 and parsed[0].span == (0, len(rendered))
            and (parsed[0].tool, parsed[0].input, parsed[0].result) == (call.tool, call.input, call.result))


def run_syntax(run_dir: Path) -> str:
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} does not exist: curate the run first")
    return json.loads(manifest_path.read_text()).get("config", {}).get("syntax", "toolformer")


def read_kept_calls(run_dir: Path, texts: dict[str, str], syntax: CallSyntax, skip_bad: bool,
                    counts: Counter, stats: ReadStats) -> list[KeptCall]:
    """Kept calls of every tool folder in the run, checked against their documents."""
    kept = []
    for path in sorted(run_dir.glob("*/scored.jsonl")):
        for number, rec in read_jsonl(path, SCORED, skip_bad=skip_bad, stats=stats):
            if not rec["kept"]:
                continue
            try:
                text = texts.get(rec["doc_id"])
                if text is None:
                    raise BadRecord(path, number, f"doc_id {rec['doc_id']!r} is not in documents.jsonl")
                if not 0 <= rec["position"] <= len(text):
                    raise BadRecord(path, number, f"position {rec['position']} is outside the document "
                                                  f"({len(text)} characters)")
                if rec["result"] is None or rec["usefulness"] is None:
                    raise BadRecord(path, number, "a kept call must have a result and a usefulness")
                name = get_tool(rec["tool"]).name
            except (BadRecord, ValueError) as err:
                err = err if isinstance(err, BadRecord) else BadRecord(path, number, str(err))
                if not skip_bad:
                    raise err from None
                stats.skip(err)
                continue
            counts[f"kept_{name}"] += 1
            call = KeptCall(rec["doc_id"], canonical_position(text, rec["position"]), name,
                            rec["input"].strip(), inline_result(rec["result"]), float(rec["usefulness"]))
            if not syntax.named and name != syntax.default_tool:
                counts["other_tool_dropped"] += 1
            elif not _renders_back(syntax, call):
                counts["unrenderable_dropped"] += 1
            else:
                kept.append(call)
    return kept


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


def build_augmented(run_dir: str | Path, syntax: str | None = None, max_per_tool: int = 25000,
                    keep_uncalled_rate: float = 0.0, heldout: float = 0.1, seed: int = 0,
                    skip_bad: bool = False, out_dir: str | Path | None = None) -> dict:
    """Write the augmented corpus of a run; return its counts and where it went."""
    from datasets import Dataset, DatasetDict, Features, Value, disable_progress_bars
    disable_progress_bars()

    run_dir = Path(run_dir)
    own_syntax = run_syntax(run_dir)
    syntax_name = syntax or own_syntax
    call_syntax = get_syntax(syntax_name)
    if out_dir is None:
        out_dir = run_dir / ("augmented" if syntax_name == own_syntax else f"augmented-{syntax_name}")
    out_dir = Path(out_dir)
    if not 0 <= keep_uncalled_rate <= 1 or not 0 <= heldout < 1:
        raise ValueError("--keep-uncalled-rate must be in [0, 1] and --heldout in [0, 1)")

    stats = ReadStats()
    docs = list(read_documents(run_dir / "documents.jsonl"))
    counts: Counter = Counter(documents=len(docs), documents_with_calls=0, documents_without_calls=0,
                              conflict_dropped=0, cap_dropped=0, unrenderable_dropped=0, other_tool_dropped=0)
    calls = read_kept_calls(run_dir, {d.id: d.text for d in docs}, call_syntax, skip_bad, counts, stats)
    by_doc: dict[str, list[KeptCall]] = defaultdict(list)
    for call in select_calls(calls, max_per_tool, counts):
        by_doc[call.doc_id].append(call)

    rng = random.Random(seed)
    rows = []
    for doc in docs:
        doc_calls = sorted(by_doc.get(doc.id, []), key=lambda c: c.position)
        # one draw per document, called or not, so the rate does not shift which ones are kept
        keep_plain = rng.random() < keep_uncalled_rate
        if not doc_calls and not keep_plain:
            continue
        counts["documents_with_calls" if doc_calls else "documents_without_calls"] += 1
        for c in doc_calls:
            counts[f"calls_{c.tool}"] += 1
        rendered = [(c.position, call_syntax.render(c.tool, c.input, c.result)) for c in doc_calls]
        rows.append({"id": doc.id, "text": insert_calls(doc.text, rendered), "n_calls": len(doc_calls),
                     "calls": [{"tool": c.tool, "input": c.input, "result": c.result,
                                "position": c.position, "usefulness": c.usefulness} for c in doc_calls]})

    order = list(range(len(rows)))
    random.Random(seed + 1).shuffle(order)
    n_val = round(heldout * len(rows))
    if heldout > 0 and n_val == 0 and len(rows) >= 2:
        n_val = 1  # a held-out perplexity needs at least one document
    val_ids = set(order[:n_val])
    splits = {"train": [r for i, r in enumerate(rows) if i not in val_ids],
              "validation": [r for i, r in enumerate(rows) if i in val_ids]}

    features = Features({"id": Value("string"), "text": Value("string"), "n_calls": Value("int32"),
                         "calls": [{"tool": Value("string"), "input": Value("string"), "result": Value("string"),
                                    "position": Value("int64"), "usefulness": Value("float64")}]})
    # write aside, then swap in: a killed build never leaves half a dataset behind
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # columns, not rows: an empty split must still have them
    DatasetDict({name: Dataset.from_dict({c: [r[c] for r in split] for c in features}, features=features)
                 for name, split in splits.items()}).save_to_disk(str(tmp))
    for name, split in splits.items():
        write_jsonl_atomic(tmp / f"{name}.jsonl", split)
    figures = {"run": str(run_dir), "out": str(out_dir), "syntax": syntax_name,
               "train": len(splits["train"]), "validation": len(splits["validation"]),
               **dict(sorted(counts.items())), "skipped_bad": stats.skipped_bad,
               "skipped_examples": stats.examples,
               "settings": {"max_per_tool": max_per_tool, "keep_uncalled_rate": keep_uncalled_rate,
                            "heldout": heldout, "seed": seed}}
    (tmp / "build.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return figures


def cmd_build(args) -> dict:
    from toolformer.run.manifest import Run
    figures = build_augmented(Run(args.run, args.runs_dir).path, args.syntax, args.max_per_tool,
                              args.keep_uncalled_rate, args.heldout, args.seed, args.skip_bad)
    print(f"augmented corpus: {figures['train']} train + {figures['validation']} validation documents "
          f"in {figures['out']}")
    return figures


def add_commands(sub, command) -> None:
    p = command(sub, "build", cmd_build, "merge the kept calls into an augmented corpus (a datasets folder + JSONL)")
    p.add_argument("--run", required=True, help="run name: reads and writes RUNS_DIR/NAME/")
    p.add_argument("--runs-dir", default="runs", help="folder holding runs (default: runs)")
    p.add_argument("--syntax", help="call syntax of the output: toolformer or hw3 (Calculator calls only); "
                                    "default: the run's own")
    p.add_argument("--max-per-tool", type=int, default=25000, help="most calls kept per tool, the most useful "
                                                                   "first (paper: 25,000)")
    p.add_argument("--keep-uncalled-rate", type=float, default=0.0,
                   help="share of documents without a kept call to keep as plain text (default 0, the paper)")
    p.add_argument("--heldout", type=float, default=0.1, help="share of documents in the validation split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-bad", action="store_true", help="skip malformed scored records (counted)")
